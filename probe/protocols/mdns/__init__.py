"""mDNS: how UDP discovery asks for it (`ident.py`)."""
