"""`DeviceContext.shared`: one resource for the users that hold a key at the same time. No
network traffic: the resources are in-process stand-ins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from daemons import device_context

from probe.context import DeviceContext


class Resource:
    """Counts its openings and closings; an opening waits for `ready` and fails when told."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.opened = 0
        self.closed = 0
        self.fail = False

    def opener(self) -> AbstractAsyncContextManager[int]:
        @asynccontextmanager
        async def open_one() -> AsyncIterator[int]:
            await self.ready.wait()
            if self.fail:
                raise ConnectionRefusedError("refused")
            self.opened += 1
            try:
                yield self.opened
            finally:
                self.closed += 1
        return open_one()


async def hold(ctx: DeviceContext, resource: Resource, release: asyncio.Event,
               key: tuple[str, ...] = ("thing",)) -> int:
    async with ctx.shared(key, resource.opener) as value:
        await release.wait()
        return value


async def test_users_entering_while_it_opens_share_it_and_the_last_closes_it() -> None:
    resource, first_out, second_out = Resource(), asyncio.Event(), asyncio.Event()
    with device_context("127.93.2.15", ()) as ctx:
        first = asyncio.ensure_future(hold(ctx, resource, first_out))
        second = asyncio.ensure_future(hold(ctx, resource, second_out))
        other = asyncio.ensure_future(hold(ctx, resource, second_out, ("other",)))
        await asyncio.sleep(0)
        resource.ready.set()
        first_out.set()
        assert await first == 1
        assert (resource.opened, resource.closed) == (2, 0)  # "thing" and "other"
        second_out.set()
        assert (await second, await other) == (1, 2)
        assert resource.closed == 2
        third_out = asyncio.Event()
        third_out.set()
        assert await hold(ctx, resource, third_out) == 3  # opened anew once nobody held it


async def test_a_failed_opening_fails_its_waiters_and_the_next_user_opens_anew() -> None:
    resource, out = Resource(), asyncio.Event()
    out.set()
    with device_context("127.93.2.15", ()) as ctx:
        resource.fail = True
        waiters = [asyncio.ensure_future(hold(ctx, resource, out)) for _ in range(2)]
        await asyncio.sleep(0)
        resource.ready.set()
        for waiter in waiters:
            with pytest.raises(ConnectionRefusedError):
                await waiter
        resource.fail = False
        assert await hold(ctx, resource, out) == 1
    assert (resource.opened, resource.closed) == (1, 1)


async def test_a_user_cancelled_while_it_opens_leaves_it_to_the_others() -> None:
    resource, out = Resource(), asyncio.Event()
    with device_context("127.93.2.15", ()) as ctx:
        first = asyncio.ensure_future(hold(ctx, resource, out))
        second = asyncio.ensure_future(hold(ctx, resource, out))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        resource.ready.set()
        out.set()
        assert await second == 1
    assert (resource.opened, resource.closed) == (1, 1)
