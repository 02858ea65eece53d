"""CoAP: messages, GETs and write-backs over UDP (`wire.py`, with discovery's probe), the
surveys of what discovery found (`collectors.py`) and the CoAP checks (`checks.py`, coap.dtls
included: it judges CoAP's DTLS endpoints)."""
