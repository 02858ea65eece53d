"""RTSP: how identification recognises it (`ident.py`); no check judges it yet."""
