"""Reliable events and what each role may do."""

from __future__ import annotations

from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import CloseCode, ErrorCode


def test_events_are_sequenced_and_echoed_to_everyone(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, name="ann")
        bob = await RawClient.join(server.url, name="bob")
        await ann.send({"t": "chat", "text": "hello bar"})
        await ann.send({"t": "emote", "emote": "cheers"})
        drink = {"drink": "martini", "color": "#FF8A1F", "glow": 0.7, "garnish": "neural_olive"}
        await bob.send({"t": "drink", **drink})
        await bob.send({"t": "profile", "name": "Bobby", "color": "#00ff00"})
        kinds = []
        for client in (ann, bob):
            await client.event("profile", avatar=bob.avatar)
            got = [e for e in client.events if e["kind"] != "join"]
            kinds.append([(e["kind"], e["seq"]) for e in got])
            seqs = [e["seq"] for e in client.events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert kinds[0] == kinds[1]
        assert [k for k, _ in kinds[0]] == ["chat", "emote", "drink", "profile"]
        drink_event = next(e for e in ann.events if e["kind"] == "drink")
        assert drink_event["color"] == "#ff8a1f" and drink_event["garnish"] == "neural_olive"
        # A newcomer's roster shows the drink, the tipsiness and the new name.
        cat = await RawClient.join(server.url, name="cat")
        bob_entry = next(a for a in cat.welcome["avatars"] if a["id"] == bob.avatar)
        assert bob_entry["name"] == "Bobby" and bob_entry["drink"]["drink"] == "martini"
        assert 0 < bob_entry["tipsy"] <= 1
        for c in (ann, bob, cat):
            await c.close()

    run(scenario())


def test_roles_are_enforced(make_server):
    server = make_server(open_rooms=False)

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="h", token=server.token(role="host"))
        collab = await RawClient.join(server.url, name="c", token=server.token())
        viewer = await RawClient.join(server.url, name="v", token=server.token(role="viewer"))
        fixed = await RawClient.join(server.url, token=server.token(name="Investor"))

        await viewer.send({"t": "chat", "text": "can I talk?"})
        assert (await viewer.error())["code"] == ErrorCode.NOT_ALLOWED
        await viewer.send({"t": "emote", "emote": "wave"})
        await viewer.event("emote", avatar=viewer.avatar)
        await fixed.send({"t": "profile", "name": "Someone Else"})
        assert (await fixed.error())["code"] == ErrorCode.NOT_ALLOWED

        for msg in (
            {"t": "kick", "avatar": host.avatar},
            {"t": "mute", "avatar": host.avatar, "muted": True},
            {"t": "look", "look": "teal_neon"},
        ):
            await collab.send(msg)
            err = await collab.error()
            assert err["code"] == ErrorCode.NOT_ALLOWED and err["ref"] == msg["t"]

        await host.send({"t": "kick", "avatar": 999})
        assert (await host.error())["code"] == ErrorCode.NO_SUCH_AVATAR

        await host.send({"t": "look", "look": "teal_neon"})
        look = await collab.event("look")
        assert look["look"] == "teal_neon" and look["by"] == host.avatar

        await host.send({"t": "mute", "avatar": collab.avatar, "muted": True})
        await collab.event("mute", avatar=collab.avatar, muted=True)
        await collab.send({"t": "chat", "text": "hello?"})
        assert (await collab.error())["code"] == ErrorCode.MUTED
        await host.send({"t": "mute", "avatar": collab.avatar, "muted": False})
        await collab.event("mute", avatar=collab.avatar, muted=False)
        await collab.send({"t": "chat", "text": "thanks"})
        await collab.event("chat", text="thanks")

        await host.send({"t": "kick", "avatar": collab.avatar})
        await viewer.event("kick", avatar=collab.avatar, by=host.avatar)
        await viewer.event("leave", avatar=collab.avatar, reason="kicked")
        assert await collab.closed() == CloseCode.KICKED
        for c in (host, viewer, fixed):
            await c.close()

    run(scenario())


def test_bye_leaves_at_once_and_ping_gets_pong(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        bob = await RawClient.join(server.url)
        await ann.send({"t": "ping", "ct": 12.5})
        pong = await ann.recv_until(lambda m: m["t"] == "pong")
        assert pong["ct"] == 12.5 and pong["st"] >= ann.welcome["st"]
        await ann.send({"t": "bye"})
        assert await ann.closed() == CloseCode.NORMAL
        await bob.event("leave", avatar=ann.avatar, reason="left")
        await bob.close()

    run(scenario())


def test_moves_are_validated(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        x0, y0, _ = ann.welcome["pos"]
        # A claimed teleport across the bar is clamped to what a sprint can reach.
        await ann.send({"t": "input", "seq": 1, "ack": -1, "x": x0 + 2000, "y": y0, "yaw": 100})
        snap = await ann.recv_until(lambda m: m["t"] == "snap" and m["you"][3] == 1)
        x, _, yaw, _ = snap["you"]
        assert 0 < x - x0 <= 7 * 100 + 25 + 2 and yaw == 100
        # A step through the south wall ends inside the bar (radius 0.3 m from the wall).
        for seq in range(2, 40):
            await ann.send({"t": "input", "seq": seq, "ack": -1, "x": x, "y": -1300, "yaw": 0})
            snap = await ann.recv_until(lambda m, s=seq: m["t"] == "snap" and m["you"][3] == s)
        assert snap["you"][1] >= -1200 + 30 - 1
        await ann.close()

    run(scenario())


def test_snapshots_become_deltas_once_acked(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        bob = await RawClient.join(server.url)
        bases = []
        x, y, _ = ann.welcome["pos"]
        for seq in range(1, 30):
            snap = await ann.snap()
            bases.append(snap["base"])
            x += 10
            await ann.send(
                {"t": "input", "seq": seq, "ack": snap["tick"], "x": x, "y": y, "yaw": 0}
            )
        assert bases[0] == -1
        assert sum(b >= 0 for b in bases) > 20
        # A client that lost its base says ack -1 and gets a full snapshot next.
        await ann.send({"t": "input", "seq": 30, "ack": -1, "x": x, "y": y, "yaw": 0})
        await ann.recv_until(lambda m: m["t"] == "snap" and m["you"][3] == 30)
        snap = await ann.snap()
        assert snap["base"] == -1
        await ann.close()
        await bob.close()

    run(scenario())
