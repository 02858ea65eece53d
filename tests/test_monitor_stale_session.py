"""A sender that still holds a session to an earlier scan's sink (issue 15, the syslog matrix).

The probe's syslog sink exists only while it scans. syslog-ng forwarding over TLS does not read
from its session while idle (syslog-ng issue 3026), so it learns that the sink of the previous
scan is gone only by writing the next event into that dead session, and that event is lost;
it reconnects and delivers the one after. The device is the matrix's lighttpd + syslog-ng over
TLS on 127.145.1.1, scanned three times in a row: it reports every failed login, so every
scan must pass, the later ones by making the refused login once more.
"""

from __future__ import annotations

from pathlib import Path

from daemons import monitored_context
from interop.peers_syslog import AUTH, WEB_PORT, syslog_ng_peer

from probe.api import run_check
from probe.model import Status

DEVICE = "127.145.1.1"
EVENTS = {AUTH: {"event_timeout": 10}}
SCANS = 3


async def test_syslog_ng_over_tls_is_heard_in_every_scan(tmp_path: Path) -> None:
    findings = []
    with syslog_ng_peer("tls").start(tmp_path, DEVICE) as setup:
        monitor = setup.inventory["monitor"]
        for _ in range(SCANS):
            with monitored_context(DEVICE, (WEB_PORT,), monitor) as ctx:
                (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=EVENTS)
            findings.append(event)
    assert [f.status for f in findings] == [Status.PASS] * SCANS, [f.summary for f in findings]
    assert "repeated_after_seconds" not in findings[0].evidence  # a fresh session loses nothing
    assert all("repeated_after_seconds" in f.evidence for f in findings[1:])
    for finding in findings[1:]:
        assert "made again" in finding.summary
        assert len(finding.evidence["attempts"]) == 2
