"""Services that greet first (Telnet, SSH, FTP, SMTP) and the r-commands: how identification
recognises them (`ident.py`); net.cleartext-management judges them."""
