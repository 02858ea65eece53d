"""TLS: ClientHellos built and parsed by hand (`codec.py`), sslyze's scan (`sslyze_scan.py`),
the handshake and certificate collectors (`collectors.py`) and the TLS checks (`checks.py`)."""
