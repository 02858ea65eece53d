"""Monitoring (27400-6.5), not a protocol: the sinks an inventory declares (`sinks.py`, the
syslog listener in `syslog.py`), the collectors that provoke and watch (`collectors.py`: the
canary, the burst, the heartbeat), the checks that judge them (`checks.py`) and the checks read
from the web interface (`http_checks.py`: clock, vulnerability disclosure)."""
