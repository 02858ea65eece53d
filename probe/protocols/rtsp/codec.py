"""The RTSP messages the probe sends and reads (RFC 2326): a DESCRIBE without credentials.

DESCRIBE asks for a stream's session description (SDP), which tells a client how to play it;
a server that requires authentication answers 401 with a challenge instead. The reply's
headers and body are read up to `MAX_REPLY` bytes; its status line, the challenge's schemes and
a bounded excerpt of the body are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probe.observe.tcp import excerpt

MAX_REPLY = 8192
EXCERPT_CHARS = 120
_STATUS = re.compile(rb"RTSP/1\.\d (\d{3})[^\r\n]*")


@dataclass(frozen=True)
class Reply:
    """An RTSP answer: status code (None when the bytes are not RTSP), its status line or
    first bytes, the content type, the authentication schemes offered and a body excerpt."""

    status: int | None
    line: str
    content_type: str = ""
    schemes: tuple[str, ...] = ()
    body: str = ""

    @property
    def sdp(self) -> bool:
        """A session description was served."""
        return self.status == 200 and (self.content_type == "application/sdp"
                                       or self.body.startswith("v=0"))


def describe(url: str, cseq: int = 1) -> bytes:
    return (f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\n"
            "User-Agent: iotprobe\r\n\r\n").encode()


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    for mark in (b"\r\n\r\n", b"\n\n"):
        if mark in data:
            head, _, body = data.partition(mark)
            return head, body
    return None


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").splitlines()[1:]
    return [(k.strip().lower(), v.strip()) for k, sep, v in (ln.partition(":") for ln in lines)
            if sep]


def _length(head: bytes) -> int:
    for name, value in _headers(head):
        if name == "content-length" and value.isdigit():
            return int(value)
    return 0


def complete(data: bytes) -> bool:
    """Whether the headers and the body their Content-Length announces have arrived."""
    parts = _split(data)
    if parts is None:
        return False
    head, body = parts
    return len(body) >= min(_length(head), MAX_REPLY)


def parse(data: bytes) -> Reply:
    """The reply in `data` (status None when it does not start with an RTSP status line)."""
    status = _STATUS.match(data)
    if status is None:
        return Reply(None, excerpt(data, EXCERPT_CHARS))
    head, body = _split(data) or (data, b"")
    headers = _headers(head)
    kind = next((v.split(";")[0].strip().lower() for k, v in headers if k == "content-type"), "")
    schemes = tuple(excerpt(v.split(" ", 1)[0].encode("latin-1"), 16)
                    for k, v in headers if k == "www-authenticate")
    return Reply(int(status.group(1)), excerpt(status.group(0), EXCERPT_CHARS),
                 excerpt(kind.encode("latin-1"), 64), schemes,
                 excerpt(body[:_length(head)] if _length(head) else body, EXCERPT_CHARS))
