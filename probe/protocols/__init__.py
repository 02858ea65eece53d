"""One package per protocol: how the probe recognises it (`ident.py`), its wire code, its
collectors (`collectors.py`) and its checks (`checks.py`, which ends with its `CHECKS`)."""
