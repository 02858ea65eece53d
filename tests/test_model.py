"""Verdict rules, waivers, secrets and the rate limiter: pure logic on recorded values."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import time
from pathlib import Path

import pytest

from probe.engine import fails_at
from probe.model import (
    Device,
    Finding,
    Result,
    Severity,
    Status,
    Verdict,
    Waiver,
    verdict_of,
    worst_failure,
)
from probe.ratelimit import RateLimiter
from probe.record.files import write_atomic
from probe.secrets import Secret


def result(status: Status, severity: Severity = Severity.HIGH,
           waived: Waiver | None = None) -> Result:
    return Result(check="net.open-ports", control="27400-6.2", severity=severity,
                  finding=Finding(status, "s"), remediation="r", references={},
                  duration_ms=1, waived=waived)


WAIVER = Waiver(check="net.open-ports", justification="vendor fix due", expires="2099-01-01",
                device="cam-1")


@pytest.mark.parametrize(("statuses", "verdict"), [
    ([Status.PASS, Status.NOT_APPLICABLE, Status.SKIPPED], Verdict.CONFORMANT),
    ([Status.PASS, Status.ERROR], Verdict.INCONCLUSIVE),
    ([Status.ERROR, Status.FAIL], Verdict.NONCONFORMANT),
    ([Status.FAIL], Verdict.NONCONFORMANT),
    ([], Verdict.CONFORMANT),
])
def test_verdict_rules(statuses: list[Status], verdict: Verdict) -> None:
    assert verdict_of([result(s) for s in statuses]) is verdict


def test_waived_failure_does_not_count() -> None:
    results = [result(Status.PASS), result(Status.FAIL, waived=WAIVER)]
    assert verdict_of(results) is Verdict.CONFORMANT
    assert worst_failure(results) is None
    assert results[1].status is Status.FAIL and not results[1].counts_as_failure


def test_fail_on_threshold() -> None:
    results = [result(Status.FAIL, Severity.MEDIUM)]
    assert fails_at(results, Severity.LOW)
    assert fails_at(results, Severity.MEDIUM)
    assert not fails_at(results, Severity.HIGH)
    assert worst_failure(results) is Severity.MEDIUM


def test_waiver_scope() -> None:
    cam = Device(id="cam-1", address="127.0.0.1", device_class="camera")
    other = Device(id="cam-2", address="127.0.0.2", device_class="camera")
    assert WAIVER.covers("net.open-ports", cam)
    assert not WAIVER.covers("net.open-ports", other)
    assert not WAIVER.covers("net.cleartext-management", cam)
    by_class = Waiver(check="net.open-ports", justification="j", expires="2099-01-01",
                      device_class="camera")
    assert by_class.covers("net.open-ports", other)
    assert not by_class.covers("net.open-ports", Device(id="s", address="127.0.0.3"))


def test_secret_never_shows() -> None:
    secret = Secret("hunter2-very-secret", origin="env:FLEET_PW")
    device = Device(id="d", address="127.0.0.1",
                    credentials={"mqtt": {"username": "probe", "password": secret}})
    shown = [str(secret), repr(secret), f"{secret}", f"{secret!r}", repr(device),
             str(device.public())]
    assert all("hunter2" not in text for text in shown)
    assert "env:FLEET_PW" in repr(secret)
    assert device.secret("mqtt", "password") is secret
    assert secret.reveal() == "hunter2-very-secret"
    with pytest.raises(TypeError):
        json.dumps({"p": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    try:
        raise ValueError(f"login failed for {secret}")
    except ValueError as exc:
        assert "hunter2" not in str(exc)


async def test_rate_limiter_caps_the_rate() -> None:
    limiter = RateLimiter(rate=200, burst=5)
    start = time.monotonic()
    for _ in range(45):
        await limiter.acquire()
    elapsed = time.monotonic() - start
    # 45 tokens with a burst of 5 at 200/s need at least 40/200 s: the cap is a lower bound on
    # time, which noise can only lengthen.
    assert elapsed >= 40 / 200 * 0.95
    assert limiter.granted == 45


async def test_rate_limiter_is_shared_fairly() -> None:
    limiter = RateLimiter(rate=500, burst=1)
    got: list[int] = []

    async def take(n: int) -> None:
        for _ in range(10):
            await limiter.acquire()
            got.append(n)

    await asyncio.gather(take(1), take(2))
    assert sorted(got) == [1] * 10 + [2] * 10


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """Records and reports are written aside and renamed, yet not left private (0600) the way a
    temporary file is: the umask decides, as for any file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "r" / "x.record.json"
    write_atomic(path, "{}\n")
    assert path.read_text() == "{}\n"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["x.record.json"]
