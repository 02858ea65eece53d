"""SNMP: how UDP discovery asks for it (`ident.py`); net.cleartext-management judges it."""
