"""DTLS: ClientHellos built and parsed by hand (`wire.py`, with discovery's probe) and the
survey of every DTLS endpoint (`collectors.py`); `coap.dtls` in `probe.protocols.coap.checks`
judges it."""
