"""BACnet/IP: identified by a unicast Who-Is and the I-Am it draws, never a write."""
