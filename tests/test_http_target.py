"""The request target of an unauthenticated GET is parsed once per path (`_target`), and is
the one httpx makes of the whole URL, whatever the device's address, port and scheme."""

from __future__ import annotations

import httpx
import pytest

from probe.protocols.http.collectors import _target, url_of
from tests.daemons import device_context

PATHS = ["/", "/index.html", "/a/../b/./c", "/%7Euser/a b", "/x?y=1&z=%", "/é/ü?q=ß",
         "//double/slash", "/@host:99/x", "/#fragment", "/a?b#c", "/.well-known/core"]


@pytest.mark.parametrize("address", ["127.187.2.1", "::1"])
@pytest.mark.parametrize(("port", "tls"), [(80, False), (443, True), (8080, False)])
def test_the_cached_target_is_httpx_s_for_the_whole_url(address: str, port: int,
                                                         tls: bool) -> None:
    with device_context(address, (port,)) as ctx:
        for path in PATHS:
            assert _target(tls, path) == httpx.URL(url_of(ctx, port, tls, path)).raw_path, path
