"""SSH: the server's algorithms, host keys and authentication methods, and credential trials."""
