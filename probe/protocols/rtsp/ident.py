"""RTSP's ports. Identification (`probe.observe.identify`) asks OPTIONS on them, in clear on
554 and 8554 and inside TLS on 322 (RTSPS), and names an answering port `rtsp`."""

from __future__ import annotations

PORTS = frozenset({554, 8554})
TLS_PORTS = frozenset({322})
SERVICE = "rtsp"
