"""The CoAP write and read verdicts on servers other than libcoap: aiocoap and node-coap, each
read-only and writable, started as real processes (the interop matrix's peers) on 127.134.2.x.

The matrix scans without --intrusive, so `coap.unauthenticated-write` is seen here: it fails on
the writable servers and passes on the read-only ones, and a write-back leaves the value as it
was read.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from daemons import scan_context
from interop import Setup
from interop.peers_coap import PORT, aiocoap, node_coap

from probe.api import run_check
from probe.model import Status
from probe.protocols.coap import wire as coap

StartPeer = Callable[[Path, str], AbstractContextManager[Setup]]
VALUES = {"/sensors/temperature": b"21.5", "/config/interval": b"60"}


@pytest.mark.parametrize(("address", "server", "writable"), [
    ("127.134.2.1", aiocoap("read-only"), False),
    ("127.134.2.2", aiocoap("writable"), True),
    ("127.134.2.3", node_coap("read-only"), False),
    ("127.134.2.4", node_coap("writable"), True),
], ids=["aiocoap-read-only", "aiocoap-writable", "node-coap-read-only", "node-coap-writable"])
async def test_write_back_verdicts(tmp_path: Path, address: str, server: StartPeer,
                                   writable: bool) -> None:
    with server(tmp_path, address), scan_context(address, intrusive=True) as ctx:
        (write,) = await run_check("coap.unauthenticated-write", ctx.device, context=ctx)
        (cleartext,) = await run_check("coap.cleartext", ctx.device, context=ctx)
        after = {target: (await coap.fetch(ctx, PORT, target)).body for target in VALUES}
    assert write.target == cleartext.target == f"udp/{PORT}"
    codes = {w["resource"]: w["code"] for w in write.evidence["writes"]}
    assert codes == dict.fromkeys(VALUES, "2.04" if writable else "4.05")
    assert write.status is (Status.FAIL if writable else Status.PASS)
    assert after == VALUES  # the write-back put back what was read
    assert cleartext.status is Status.FAIL
    assert {s["resource"] for s in cleartext.evidence["served"]} >= VALUES.keys()
