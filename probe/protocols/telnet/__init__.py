"""Telnet: default-credential trials and logins that need no credentials at all."""
