"""Plant protocols (Modbus/TCP, BACnet/IP): unauthenticated control off the allow-list."""
