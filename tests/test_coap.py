"""The CoAP checks against real peers on 127.83.x.y: libcoap's servers (plain, DTLS with PSK, with
certificates), `openssl s_server` speaking DTLS 1.0, and aiocoap servers in this event loop.

Each check is seen to pass and to fail on a real peer. aiocoap servers get one address each: two
on the same address and port would silently share it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiocoap
import aiocoap.error
import aiocoap.resource
import pytest
from daemons import certificate, coap_server, scan_context, start, udp_responder
from hypothesis import given
from hypothesis import strategies as st

from probe.api import judge_check
from probe.checks.base import Observations
from probe.context import DeviceContext
from probe.model import Finding, Status
from probe.observe.discovery import udp_services
from probe.protocols.coap import collectors as udp_endpoints
from probe.protocols.coap import wire as coap
from probe.protocols.coap.checks import CleartextParams
from probe.protocols.coap.wire import CoapError, Message, link_targets
from probe.protocols.dtls import collectors as dtls_collectors

TEXT_PLAIN = 0


# --- the codec ------------------------------------------------------------------------------

options_strategy = st.lists(
    st.tuples(st.integers(0, 2000), st.binary(max_size=300)), max_size=6)


@given(kind=st.integers(0, 3), code=st.integers(1, 255), mid=st.integers(0, 0xFFFF),
       token=st.binary(max_size=8), options=options_strategy, payload=st.binary(max_size=64))
def test_messages_survive_encoding(kind: int, code: int, mid: int, token: bytes,
                                   options: list[tuple[int, bytes]], payload: bytes) -> None:
    message = Message(kind, code, mid, token, tuple(options), payload)
    decoded = Message.decode(message.encode())
    assert decoded == Message(kind, code, mid, token,
                              tuple(sorted(options, key=lambda o: o[0])), payload)


@pytest.mark.parametrize("data", [
    b"", b"\x40\x01\x00", b"\x80\x01\x00\x01",  # short, then version 2
    b"\x49\x01\x00\x01",  # token length 9
    b"\x44\x01\x00\x01ab",  # token cut short
    b"\x40\x01\x00\x01\xff",  # payload marker, no payload
    b"\x40\x01\x00\x01\xd1",  # extended delta missing
    b"\x40\x01\x00\x01\xf1\x00",  # delta nibble 15
    b"\x40\x01\x00\x01\xb5ab",  # option longer than the message
    b"\x60\x00\x00\x01\xb1a",  # an empty ACK with an option
])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(CoapError):
        Message.decode(data)


def test_link_format_targets() -> None:
    document = (b'</sensors/temp>;rt="temperature";title="a, b <c>";obs,'
                b'<https://example.org/impl>;rel="impl-info",<//198.51.100.7/x>,'
                b'<relative/path>,</sensors/temp>;ct=0, </q?unit=C&fmt=1>;ct=0,</>,garbage,'
                b'</' + b"x" * 300 + b">")
    local, external = link_targets(document)
    assert local == ["/sensors/temp", "/relative/path", "/q?unit=C&fmt=1", "/"]
    assert external == ["https://example.org/impl", "//198.51.100.7/x"]
    assert coap.uri_options("/q?unit=C&fmt=1") == (
        (coap.URI_PATH, b"q"), (coap.URI_QUERY, b"unit=C"), (coap.URI_QUERY, b"fmt=1"))
    assert coap.uri_options("/a%20b/") == ((coap.URI_PATH, b"a b"), (coap.URI_PATH, b""))


# --- helpers --------------------------------------------------------------------------------

SURVEY = {"max_resources": CleartextParams().max_resources}
"""The survey every CoAP check reads by default."""


async def gather(ctx: DeviceContext, *, intrusive: bool = False) -> Observations:
    values: dict[Any, Any] = {
        udp_services: await ctx.observe(udp_services),
        udp_endpoints.coap_survey: await ctx.observe(udp_endpoints.coap_survey, **SURVEY),
        dtls_collectors.dtls_survey: await ctx.observe(dtls_collectors.dtls_survey),
    }
    if intrusive:
        values[udp_endpoints.coap_writes] = await ctx.observe(udp_endpoints.coap_writes, **SURVEY)
    return Observations(ctx.device, values)


def one(check_id: str, obs: Observations, **params: Any) -> Finding:
    (finding,) = judge_check(check_id, obs, **params)
    return finding


class Value(aiocoap.resource.Resource):
    """A resource with a value; writable when asked, slow to answer when asked."""

    def __init__(self, value: bytes, writable: bool = False, delay: float = 0.0) -> None:
        super().__init__()
        self.value, self.writable, self.delay = value, writable, delay
        self.puts = 0

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        if self.delay:
            await asyncio.sleep(self.delay)
        return aiocoap.Message(payload=self.value, content_format=TEXT_PLAIN)

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        if not self.writable:
            raise aiocoap.error.MethodNotAllowed()
        self.puts += 1
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


class Locked(aiocoap.resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        raise aiocoap.error.Unauthorized()

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        raise aiocoap.error.Unauthorized()


@contextlib.asynccontextmanager
async def aiocoap_server(address: str, resources: dict[str, aiocoap.resource.Resource],
                         discovery: bool = True) -> AsyncIterator[aiocoap.resource.Site]:
    site = aiocoap.resource.Site()
    if discovery:
        site.add_resource([".well-known", "core"],
                          aiocoap.resource.WKCResource(site.get_resources_as_linkheader))
    else:
        site.add_resource([".well-known", "core"], Locked())
    for path, resource in resources.items():
        site.add_resource(path.strip("/").split("/"), resource)
    server = await aiocoap.Context.create_server_context(site, bind=(address, 5683))
    try:
        yield site
    finally:
        await server.shutdown()


# --- libcoap --------------------------------------------------------------------------------


async def test_libcoap_serves_in_clear_and_amplifies(tmp_path: Path) -> None:
    with coap_server(tmp_path, "127.83.1.1"), scan_context("127.83.1.1") as ctx:
        obs = await gather(ctx)
    cleartext = one("coap.cleartext", obs)
    assert (cleartext.status, cleartext.target) == (Status.FAIL, "udp/5683")
    served = {s["resource"]: s for s in cleartext.evidence["served"]}
    assert {"/.well-known/core", "/", "/time", "/example_data"} <= served.keys()
    assert "/async" in cleartext.evidence["not_served"]
    assert served["/example_data"]["bytes"] > 1024  # read block-wise to its end
    assert cleartext.evidence["listed"] == 4

    amplification = one("coap.amplification", obs)
    assert amplification.status is Status.FAIL
    worst = amplification.evidence["worst"][0]
    assert worst["resource"] == "/example_data"
    assert worst["request_bytes"] == len(coap.request(coap.GET, "/example_data").encode())
    assert worst["response_bytes"] > 1024 and worst["ratio"] > 10
    assert one("coap.amplification", obs, max_amplification=100).status is Status.PASS

    no_dtls = one("coap.dtls", obs)
    assert (no_dtls.status, no_dtls.target) == (Status.FAIL, "udp/5683")
    assert "cleartext only" in no_dtls.summary


async def test_libcoap_takes_a_write_back_and_keeps_its_value(tmp_path: Path) -> None:
    with coap_server(tmp_path, "127.83.1.2"), scan_context("127.83.1.2") as ctx:
        obs = await gather(ctx, intrusive=True)
        before = next(r for r in obs[udp_endpoints.coap_survey][0].resources
                      if r.target == "/example_data")
        after = await coap.fetch(ctx, 5683, "/example_data")
    assert after.body == before.body and after.complete and after.blocks == before.blocks == 2
    writes = {w.target: w for w in obs[udp_endpoints.coap_writes][0].writes}
    assert writes["/example_data"].accepted and writes["/example_data"].blocks == 2
    assert writes["/time"].accepted
    assert not writes["/"].accepted and writes["/"].code == "4.05"
    finding = one("coap.unauthenticated-write", obs)
    assert finding.status is Status.FAIL
    assert "/example_data (2.04)" in finding.summary and "/time (2.04)" in finding.summary
    assert "/async" in finding.evidence["not_written"]


@pytest.mark.parametrize(("address", "credentials", "suite", "psk_only"), [
    ("127.83.1.3", "psk", "TLS_PSK_WITH_AES_128_CCM_8", True),
    ("127.83.1.4", "certificate", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", False),
    ("127.83.1.5", "both", "TLS_PSK_WITH_AES_128_CCM_8", False),
])
async def test_libcoap_dtls_1_2_only_passes(tmp_path: Path, address: str, credentials: str,
                                            suite: str, psk_only: bool) -> None:
    cert = certificate(tmp_path)
    argv = ["coap-server-openssl", "-A", address, "-p", "5683"]
    if credentials in ("psk", "both"):
        argv += ["-k", "iotprobe-test-psk"]
    if credentials in ("certificate", "both"):
        argv += ["-c", str(cert.cert), "-j", str(cert.key)]
    with start("coap-server", argv, tmp_path, address, [(5683, "udp"), (5684, "udp")]), \
            scan_context(address) as ctx:
        obs = await gather(ctx)
    finding = one("coap.dtls", obs)
    assert (finding.status, finding.target) == (Status.PASS, "udp/5684")
    assert finding.evidence["suite"] == suite
    assert finding.evidence["psk_only"] is psk_only
    assert finding.evidence["versions"] == {"DTLS 1.2": "accepted",
                                            "DTLS 1.0": "refused (protocol_version)"}
    hellos = {h["hello"]: h for h in finding.evidence["handshakes"]}
    assert all(h["hello_verify_request"] for h in hellos.values())
    assert ("dtls1.2-certificate" in hellos) is (credentials != "certificate")


async def test_dtls_1_0_accepted_fails(tmp_path: Path) -> None:
    address = "127.83.1.6"
    cert = certificate(tmp_path)
    legacy = ["openssl", "s_server", "-dtls", "-accept", f"{address}:5684", "-cert",
              str(cert.cert), "-key", str(cert.key), "-cipher", "ALL:@SECLEVEL=0", "-quiet"]
    with coap_server(tmp_path, address), \
            start("s_server", legacy, tmp_path, address, [(5684, "udp")]), \
            scan_context(address) as ctx:
        obs = await gather(ctx)
    found = {s.port: s for s in obs[udp_services]}
    assert found[5684].protocol == "dtls" and found[5684].evidence["handshake"] == "server_hello"
    finding = one("coap.dtls", obs)
    assert (finding.status, finding.target) == (Status.FAIL, "udp/5684")
    assert finding.summary.startswith("udp/5684 accepts DTLS 1.0")
    assert finding.evidence["versions"]["DTLS 1.0"] == "accepted"
    assert finding.evidence["versions"]["DTLS 1.2"] == "accepted"


@pytest.mark.parametrize(("address", "credentials", "suite", "retried"), [
    ("127.134.1.1", "psk", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", True),
    ("127.134.1.2", "certificate", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", False),
])
async def test_libcoap_gnutls_silent_after_the_cookie_still_shows_dtls_1_0(
        tmp_path: Path, address: str, credentials: str, suite: str, retried: bool) -> None:
    # libcoap over GnuTLS takes the cookie exchange, then drops a hello whose first suite it
    # has no credentials for (with a PSK only: ECDHE-ECDSA, offered first), without an alert;
    # and it accepts DTLS 1.0. Once, nothing was decided and coap.dtls passed.
    cert = certificate(tmp_path)
    argv = ["coap-server-gnutls", "-A", address, "-p", "5683"]
    argv += ["-k", "iotprobe-test-psk"] if credentials == "psk" else \
        ["-c", str(cert.cert), "-j", str(cert.key)]
    with start("coap-server", argv, tmp_path, address, [(5683, "udp"), (5684, "udp")]), \
            scan_context(address) as ctx:
        obs = await gather(ctx)
    finding = one("coap.dtls", obs)
    assert (finding.status, finding.target) == (Status.FAIL, "udp/5684")
    assert finding.summary == f"udp/5684 accepts DTLS 1.0 (chose {suite})"
    assert finding.evidence["versions"] == {"DTLS 1.2": "accepted", "DTLS 1.0": "accepted"}
    hellos = {h["hello"]: h for h in finding.evidence["handshakes"]}
    deciding = "dtls1.0-psk" if retried else "dtls1.0"
    assert (hellos[deciding]["outcome"], hellos[deciding]["version"]) == ("server_hello",
                                                                          "DTLS 1.0")
    undecided = {name for name, h in hellos.items() if h["outcome"] == "hello_verify_request"}
    # With a PSK only, the certificate hello (does it serve more than PSK?) gets silence too.
    assert undecided == ({"dtls1.2", "dtls1.0", "dtls1.2-certificate"} if retried else set())
    assert finding.evidence["psk_only"] is retried


async def test_coaps_on_the_port_after_a_named_coap_port(tmp_path: Path) -> None:
    address = "127.83.1.8"
    argv = ["coap-server-openssl", "-A", address, "-p", "5700", "-k", "iotprobe-test-psk"]
    with start("coap-server", argv, tmp_path, address, [(5700, "udp"), (5701, "udp")]), \
            scan_context(address, services={"coap": (5700,)}) as ctx:
        obs = await gather(ctx)
    assert [(s.port, s.protocol) for s in obs[udp_services]] == [(5700, "coap")]
    assert {f.target: f.status for f in judge_check("coap.dtls", obs)} == {"udp/5701": Status.PASS}
    assert one("coap.cleartext", obs).target == "udp/5700"


async def test_nothing_answering_is_not_applicable() -> None:
    with scan_context("127.83.1.7") as ctx:
        obs = await gather(ctx, intrusive=True)
    for check_id in ("coap.cleartext", "coap.dtls", "coap.unauthenticated-write",
                     "coap.amplification"):
        assert one(check_id, obs).status is Status.NOT_APPLICABLE, check_id


# --- aiocoap --------------------------------------------------------------------------------


async def test_aiocoap_that_wants_authorization_passes() -> None:
    async with aiocoap_server("127.83.2.1", {"/config": Locked(), "/state": Locked()},
                              discovery=False):
        with scan_context("127.83.2.1") as ctx:
            obs = await gather(ctx, intrusive=True)
    cleartext = one("coap.cleartext", obs)
    assert (cleartext.status, cleartext.target) == (Status.PASS, "udp/5683")
    assert cleartext.evidence["not_served"] == {"/.well-known/core": "4.01"}
    assert one("coap.amplification", obs).status is Status.PASS
    assert one("coap.unauthenticated-write", obs).status is Status.NOT_APPLICABLE
    assert one("coap.dtls", obs).status is Status.FAIL


async def test_aiocoap_read_only_refuses_write_back() -> None:
    resources = {"/temp": Value(b"21.5"), "/fw": Value(b"1.0.3")}
    async with aiocoap_server("127.83.2.2", resources):
        with scan_context("127.83.2.2") as ctx:
            obs = await gather(ctx, intrusive=True)
    finding = one("coap.unauthenticated-write", obs)
    assert finding.status is Status.PASS
    assert {w["resource"]: w["code"] for w in finding.evidence["writes"]} == {
        "/temp": "4.05", "/fw": "4.05"}
    cleartext = one("coap.cleartext", obs)
    assert cleartext.status is Status.FAIL
    assert {"/temp", "/fw", "/.well-known/core"} == {
        s["resource"] for s in cleartext.evidence["served"]}
    assert cleartext.evidence["external_links"][0].startswith("https://")
    assert one("coap.amplification", obs).status is Status.PASS


async def test_aiocoap_block_wise_and_separate_responses() -> None:
    big = Value(bytes(range(48, 58)) * 300, writable=True)
    slow = Value(b"slow", writable=True, delay=0.4)
    locked = Locked()
    async with aiocoap_server("127.83.2.3", {"/big": big, "/slow": slow, "/locked": locked}):
        with scan_context("127.83.2.3") as ctx:
            obs = await gather(ctx, intrusive=True)
    reads = {r.target: r for r in obs[udp_endpoints.coap_survey][0].resources}
    assert reads["/big"].blocks == 3 and reads["/big"].complete
    assert reads["/big"].body == bytes(range(48, 58)) * 300
    assert reads["/slow"].first.acknowledged and reads["/slow"].first.datagrams == 2
    assert reads["/slow"].body == b"slow"
    writes = {w.target: w for w in obs[udp_endpoints.coap_writes][0].writes}
    assert writes["/big"].accepted and writes["/big"].blocks == 3
    assert big.value == bytes(range(48, 58)) * 300 and big.puts == 1
    assert writes["/slow"].accepted and slow.value == b"slow"
    assert "/locked" not in writes
    finding = one("coap.unauthenticated-write", obs)
    assert finding.status is Status.FAIL
    assert finding.evidence["not_written"] == {"/locked": "GET: 4.01"}
    amplification = one("coap.amplification", obs)
    ratios = {m["resource"]: m for m in amplification.evidence["worst"]}
    assert ratios["/slow"]["datagrams"] == 2
    assert amplification.status is Status.FAIL  # the first 1024-byte block of /big


async def test_max_resources_caps_the_reads() -> None:
    resources = {f"/r{i}": Value(str(i).encode()) for i in range(6)}
    async with aiocoap_server("127.83.2.4", resources):
        with scan_context("127.83.2.4") as ctx:
            (endpoint,) = await ctx.observe(udp_endpoints.coap_survey, max_resources=2)
            sent = ctx.datagrams
    assert endpoint.listed == 6
    assert [r.target for r in endpoint.resources] == ["/r0", "/r1"]
    assert sent < 20


# --- odd peers ------------------------------------------------------------------------------


async def test_silent_ports_cost_two_datagrams_and_closed_ports_one() -> None:
    async with udp_responder("127.83.3.1", 5683, lambda request: None) as silent:
        with scan_context("127.83.3.1", timeout=0.5) as ctx:
            quiet = await coap.fetch(ctx, 5683, "/x")
            closed = await coap.fetch(ctx, 5699, "/x")
            assert ctx.datagrams == 3  # the silent port's request is sent twice
    assert silent.requests == 2
    assert (quiet.code, quiet.first.describe()) == (None, "no answer")
    assert closed.first.describe() == "refused (ICMP port unreachable)"


def second_only(seen: list[bytes], payload: Callable[[bytes], bytes]
                ) -> Callable[[bytes], bytes | None]:
    """A responder that drops the first request (kept in `seen`, as every request is) and
    answers the next ones with 2.05 and `payload(request)`."""

    def answer(data: bytes) -> bytes | None:
        seen.append(data)
        if len(seen) == 1:
            return None
        asked = Message.decode(data)
        return Message(coap.ACK, coap.CONTENT, asked.mid, asked.token,
                       payload=payload(data)).encode()

    return answer


async def test_a_lost_request_is_retransmitted_unchanged() -> None:
    # A lossy link, scripted: no server on loopback loses a datagram. Once, the first request
    # was the only one, and a lost datagram made the endpoint look absent.
    seen: list[bytes] = []
    async with udp_responder("127.134.3.1", 5683,
                             second_only(seen, lambda request: b"</s>;ct=0")):
        with scan_context("127.134.3.1") as ctx:
            (endpoint,) = await ctx.observe(udp_endpoints.coap_survey, **SURVEY)
    assert seen[0] == seen[1]  # the same message id and token
    first = endpoint.discovery.first
    assert first.code == "2.05" and endpoint.discovery.body == b"</s>;ct=0"
    assert first.request_bytes == 2 * len(seen[0])


async def test_an_answer_to_one_of_two_transmissions_is_not_a_pass_on_amplification() -> None:
    # The first request is lost, the second drawn 15x its size: over both transmissions that
    # is 7.5x, under the limit of 10, but the device answered one. Neither verdict is known.
    seen: list[bytes] = []
    async with udp_responder("127.134.3.2", 5683,
                             second_only(seen, lambda request: b"x" * (15 * len(request) - 6))):
        with scan_context("127.134.3.2") as ctx:
            (finding,) = judge_check("coap.amplification", await gather(ctx))
    assert finding.status is Status.ERROR, finding
    assert finding.evidence["reason"] == "undecided"
    (unsure,) = finding.evidence["undecided"]
    assert unsure["sends"] == 2 and unsure["ratio"] <= 10 < unsure["ratio_if_one_answered"]


class Repeater(asyncio.DatagramProtocol):
    """Answers each GET with its response sent `copies` times, as a reflector would."""

    def __init__(self, copies: int) -> None:
        self.copies = copies
        self.transport: asyncio.DatagramTransport | None = None
        self.sent: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asked = Message.decode(data)
        answer = Message(coap.ACK, coap.CONTENT, asked.mid, asked.token,
                         payload=b"x" * 200).encode()
        assert self.transport is not None
        for _ in range(self.copies):
            self.transport.sendto(answer, addr)
            self.sent.append(answer)


async def test_every_datagram_of_one_request_counts() -> None:
    loop = asyncio.get_running_loop()
    transport, repeater = await loop.create_datagram_endpoint(
        lambda: Repeater(3), local_addr=("127.83.3.2", 5683))
    try:
        with scan_context("127.83.3.2") as ctx:
            (endpoint,) = await ctx.observe(udp_endpoints.coap_survey, **SURVEY)
    finally:
        transport.close()
    first = endpoint.discovery.first
    assert first.datagrams == 3 and first.response_bytes == sum(map(len, repeater.sent))
    assert endpoint.discovery.body == b"x" * 200
    obs = Observations(ctx.device, {udp_endpoints.coap_survey: (endpoint,)})
    finding = one("coap.amplification", obs)
    assert finding.status is Status.FAIL
    assert finding.evidence["worst"][0]["response_bytes"] == 3 * len(repeater.sent[0])
