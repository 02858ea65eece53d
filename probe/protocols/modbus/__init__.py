"""Modbus/TCP: identified by Read Device Identification (function 43/14), never a write."""
