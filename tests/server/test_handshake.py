"""hello -> welcome, and every way a hello is refused (close codes)."""

from __future__ import annotations

import time

from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import PROTOCOL_VERSION, CloseCode, decode_server, validate_server
from neonbar.tokens import mint


def hello(room: str = "bar", **fields: object) -> dict[str, object]:
    return {"t": "hello", "v": PROTOCOL_VERSION, "room": room, "name": "ann", **fields}


async def refused(url: str, msg: dict[str, object] | bytes) -> tuple[int | None, str | None]:
    client = await RawClient.open(url)
    if isinstance(msg, bytes):
        await client.send_raw(msg)
    else:
        await client.send(msg)
    code = await client.closed()
    return code, client.ws.close_reason


def test_welcome_describes_the_room_and_join_is_announced(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, name="ann", color="#123456")
        w = validate_server(ann.welcome)
        assert w["room"] == "bar" and w["role"] == "collaborator" and w["name"] == "ann"
        assert w["resumed"] is False and len(w["resume"]) >= 16
        assert w["layout"] == "The Orange Haze" and w["look"] == "orange_haze"
        assert len(w["pos"]) == 3 and isinstance(w["st"], float)
        limits = w["limits"]
        for key in ("max_frame_bytes", "msgs_per_s", "burst", "input_hz", "speed_mps"):
            assert limits[key] > 0
        assert limits["resume_window_s"] > 0 and limits["max_chat_chars"] == 500
        (me,) = w["avatars"]
        assert me == {
            "id": ann.avatar,
            "name": "ann",
            "color": "#123456",
            "role": "collaborator",
            "muted": False,
            "drink": None,
            "tipsy": 0.0,
        }
        join = await ann.event("join", avatar=ann.avatar)
        assert join["seq"] == w["seq"] + 1 and join["name"] == "ann"

        bob = await RawClient.join(server.url, name="bob")
        assert {a["id"] for a in bob.welcome["avatars"]} == {ann.avatar, bob.avatar}
        assert bob.avatar != ann.avatar
        await ann.event("join", avatar=bob.avatar, name="bob")
        # Both receive snapshots that include each other.
        snap = await ann.recv_until(lambda m: m["t"] == "snap" and m["base"] == -1)
        assert snap["you"][3] == 0 and len(snap["a"]) == 2 * 8
        await ann.close()
        await bob.close()

    run(scenario())


def test_hello_problems_close_with_4400(make_server):
    server = make_server(hello_timeout_s=0.5)

    async def scenario() -> None:
        assert (await refused(server.url, hello(v=PROTOCOL_VERSION + 1)))[0] == 4400
        assert (await refused(server.url, {"t": "ping", "ct": 1.0}))[0] == 4400
        assert (await refused(server.url, b"\xc1garbage"))[0] == 4400
        assert (await refused(server.url, hello(room="no spaces allowed")))[0] == 4400
        silent = await RawClient.open(server.url)
        started = time.monotonic()
        assert await silent.closed() == CloseCode.PROTOCOL
        # The room's 0.5 s hello timeout closed it, not the 10 s default (bounds wide enough for
        # a busy CI box).
        assert 0.45 <= time.monotonic() - started < 9

    run(scenario())


def test_tokens_are_checked(make_server):
    server = make_server(open_rooms=False)

    async def scenario() -> None:
        assert (await refused(server.url, hello()))[0] == CloseCode.AUTH_FAILED
        good = server.token("bar", "viewer")
        forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
        assert (await refused(server.url, hello(token=forged)))[0] == CloseCode.AUTH_FAILED
        assert (await refused(server.url, hello(token="nonsense")))[0] == CloseCode.AUTH_FAILED
        other_secret = mint(b"another-secret-of-some-length", "bar", "host")
        assert (await refused(server.url, hello(token=other_secret)))[0] == 4401
        expired = server.token("bar", "host", ttl_s=-5)
        assert (await refused(server.url, hello(token=expired)))[0] == CloseCode.TOKEN_EXPIRED
        wrong_room = server.token("cellar", "host")
        assert (await refused(server.url, hello(token=wrong_room)))[0] == CloseCode.WRONG_ROOM
        assert server.call(lambda: list(server.server.rooms)) == []  # refusals create no room

        viewer = await RawClient.join(server.url, token=good)
        assert viewer.welcome["role"] == "viewer" and viewer.welcome["name"] == "tester"
        named = await RawClient.join(server.url, token=server.token(role="host", name="Dir"))
        assert named.welcome["role"] == "host" and named.welcome["name"] == "Dir"
        await viewer.close()
        await named.close()

    run(scenario())


def test_room_full_closes_with_4413(make_server):
    server = make_server(max_avatars=2)

    async def scenario() -> None:
        a = await RawClient.join(server.url)
        b = await RawClient.join(server.url)
        assert (await refused(server.url, hello()))[0] == CloseCode.ROOM_FULL
        other_room = await RawClient.join(server.url, room="lounge")
        for c in (a, b, other_room):
            await c.close()

    run(scenario())


def test_health_and_metrics_on_the_same_port(server: ServerThread):
    import urllib.request

    async def scenario() -> None:
        client = await RawClient.join(server.url)
        await client.snap()
        await client.close()

    run(scenario())
    http_url = server.url.replace("ws://", "http://")
    with urllib.request.urlopen(f"{http_url}/healthz", timeout=5) as resp:
        assert resp.status == 200 and resp.read().startswith(b"ok")
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
    for name in (
        "neonbar_connections",
        "neonbar_rooms",
        "neonbar_avatars",
        "neonbar_tick_seconds_bucket",
        "neonbar_snapshots_sent_total",
        'neonbar_events_total{kind="join"}',
        'neonbar_bytes_out_total{kind="snap"}',
    ):
        assert name in text, name
    assert decode_server  # the decoder used by RawClient validates every server frame
