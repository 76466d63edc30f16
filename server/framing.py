"""The short way through the most common inbound bytes: complete binary frames from a client.

websockets parses every frame with generator-based coroutines, which costs several microseconds
a frame; at 20 inputs a second from each of 1,000 clients that is a good part of a core. Clients
send almost only small, final, masked binary frames, so `read_client_frames` takes those from
the front of the received bytes in a plain loop and stops at the first frame it does not take
(control frames, text, fragments, anything over the size limit or malformed), which the caller
then hands to websockets from that exact byte, so websockets sees every other frame whole and in
order, and keeps doing all the checking and closing it does.
"""

from __future__ import annotations

from websockets.speedups import apply_mask  # the C extension every websockets wheel ships

_FIN_BINARY = 0x82
_MASKED = 0x80


def read_client_frames(buf: bytes, max_size: int | None) -> tuple[list[bytes], int, bool]:
    """Unmasked payloads of the complete, final, masked binary frames at the start of `buf`.

    Returns (payloads, consumed, other): `consumed` bytes were read. When `other` is true, the
    bytes at `consumed` start a frame this reader leaves to websockets; otherwise any bytes left
    are the beginning of a binary frame still arriving.
    """
    payloads: list[bytes] = []
    pos, end = 0, len(buf)
    limit = max_size if max_size is not None else 1 << 62
    while pos < end:
        if buf[pos] != _FIN_BINARY:
            return payloads, pos, True
        if end - pos < 2:
            break
        second = buf[pos + 1]
        if not second & _MASKED:
            return payloads, pos, True  # a client frame must be masked: websockets refuses it
        length = second & 0x7F
        if length < 126:
            header = 6
        elif length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            header = 8
        else:
            return payloads, pos, True  # 64-bit lengths: far beyond any limit we set
        if length > limit:
            return payloads, pos, True
        stop = pos + header + length
        if stop > end:
            break
        payloads.append(apply_mask(buf[pos + header : stop], buf[pos + header - 4 : pos + header]))
        pos = stop
    return payloads, pos, False
