"""RTSP (RFC 2326): whether a camera's stream description needs credentials and TLS."""
