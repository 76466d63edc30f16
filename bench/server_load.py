"""Server load: one room, one server process, N bots moving at 20 Hz, vs a naive JSON broadcast.

    .venv/bin/python bench/server_load.py [--counts 100,500,1000] [--runs 3] [--measure-s 10]

For each N it starts `neonbar server --open` on 127.0.0.1 (a fresh data dir; `--server-checkout`
runs another checkout's server), connects N clients (a minimal raw-protocol client, or with
`--clients fleet` client/bots.py's light bots) from 1-2 worker processes at nice 10
(`--load-nice`: the load stands in for clients on other machines),
waits until all are in, then measures over a fixed window from the server's own /metrics:

* tick duration p50/p99: `neonbar_tick_seconds` histogram (difference of two scrapes; quantiles
  interpolated inside the buckets, plus the share of ticks at or under 25 ms, a bucket edge);
  also the ticks' CPU time (`neonbar_tick_cpu_seconds`), how late they started
  (`neonbar_tick_late_seconds`) and how long the sender thread took to write each tick's
  frames (`neonbar_send_done_seconds`);
* server CPU: utime + stime of the server process from /proc/<pid>/stat;
* downstream bytes/s per client: `neonbar_bytes_out` (every frame kind) / clients / window;
* share of snapshots delivered: `neonbar_snapshots_sent` / (ticks x clients).

The naive baseline is a minimal server (below) that broadcasts the full state as JSON every tick
to every client. It is measured for real at --baseline-n clients (100); for larger N its bytes
per client are computed from the size of an actual JSON state frame of N avatars x 20 Hz (a real
run at 1,000 would push 1.6 GB/s through loopback). The ratio is baseline / ours per client, both
per tick x 20 Hz (when the server ticks below 20 Hz, its per-second bytes would flatter it).

Everything runs on 127.0.0.1, is bounded in time, and stops by itself. Prints a table and, with
--json FILE, writes the raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TICK_HZ = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_TICK_P99_MS = 25.0
TARGET_BYTES_PER_CLIENT = 16_000
TARGET_RATIO = 50.0


# ----------------------------------------------------------------------------- measurements


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def scrape(http_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(http_url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric_sum(m: dict, name: str) -> float:
    return sum(v for (n, _), v in m.items() if n == name)


def gc_count(m: dict, kind: str) -> float:
    return m.get(("neonbar_gc_seconds_count", (("kind", kind),)), 0.0)


def histogram_quantiles(m0: dict, m1: dict, name: str, qs: tuple[float, ...]) -> dict[str, Any]:
    """Quantiles of the observations made between two scrapes of a Prometheus histogram."""
    buckets = []
    for (n, labels), v in m1.items():
        if n == f"{name}_bucket":
            le = float(dict(labels)["le"])
            buckets.append((le, v - m0.get((n, labels), 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, Any] = {"count": int(total)}
    if total <= 0:
        return out
    for q in qs:
        rank = q * total
        lo_edge, lo_count = 0.0, 0.0
        value = math.inf
        for le, count in buckets:
            if count >= rank:
                if math.isinf(le):
                    value = lo_edge  # beyond the last finite bucket: report its edge (a floor)
                else:
                    frac = (rank - lo_count) / (count - lo_count) if count > lo_count else 1.0
                    value = lo_edge + (le - lo_edge) * frac
                break
            lo_edge, lo_count = le, count
        out[f"p{round(q * 100)}_ms"] = round(value * 1000, 2)
    le25 = [c for le, c in buckets if abs(le - TARGET_TICK_P99_MS / 1000) < 1e-9]
    out["share_le_25ms"] = round(le25[0] / total, 4) if le25 else None
    return out


# ----------------------------------------------------------------------------- processes


def start_server(data_dir: Path, checkout: Path = REPO) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "neonbar", "server", "--open", "--port", "0",
         "--data", str(data_dir)],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=open(data_dir / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                return proc, line.split()[-1]
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: see {data_dir / 'server.log'}")


def stop(proc: subprocess.Popen[Any], timeout_s: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def protocol_version(checkout: Path) -> int:
    """The protocol version a checkout's server speaks (the load must say hello in it)."""
    text = (checkout / "neonbar" / "protocol.py").read_text()
    match = re.search(r"^PROTOCOL_VERSION = (\d+)$", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no PROTOCOL_VERSION in {checkout}/neonbar/protocol.py")
    return int(match.group(1))


def start_workers(
    url: str,
    n: int,
    processes: int,
    max_s: float,
    clients: str,
    nice: int = 0,
    version: int = 0,
) -> list[subprocess.Popen[str]]:
    counts = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    return [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--server",
                url,
                "--count",
                str(k),
                "--duration",
                str(max_s),
                "--name-prefix",
                f"w{i}",
                "--clients",
                clients,
                "--hello-version",
                str(version or protocol_version(REPO)),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # The load generator stands in for clients on other machines: it takes the cores
            # the server leaves, not the server's.
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        for i, k in enumerate(counts)
    ]


def measure_ours(
    n: int,
    measure_s: float,
    ramp_timeout_s: float,
    clients: str,
    nice: int = 0,
    checkout: Path = REPO,
    settle_s: float = 15.0,
) -> dict[str, Any]:
    # Two cores in all and the server needs one: raw clients fit in one process.
    processes = 1 if n <= 200 or clients == "raw" else 2
    with tempfile.TemporaryDirectory(prefix="neonbar-load-") as tmp:
        server, url = start_server(Path(tmp), checkout)
        http_url = url.replace("ws://", "http://")
        # Workers run until told to stop (SIGTERM below); the duration is only a backstop.
        workers = start_workers(
            url, n, processes, ramp_timeout_s + measure_s + 120, clients, nice,
            protocol_version(checkout),
        )  # fmt: skip
        try:
            ramp_started = time.monotonic()
            connected, best, best_at = 0.0, 0.0, ramp_started
            while time.monotonic() - ramp_started < ramp_timeout_s:
                try:
                    connected = metric_sum(scrape(http_url), "neonbar_connections")
                except OSError:  # a server busy with the join burst answers late
                    continue
                if connected >= n:
                    break
                if connected > best:
                    best, best_at = connected, time.monotonic()
                elif time.monotonic() - best_at > 20:
                    break  # no longer growing: measure what the server holds
                time.sleep(0.5)
            ramp_s = time.monotonic() - ramp_started
            # Every join is an event for everyone already in: a ramp of N is ~N²/2 event frames
            # (1,000: half a million). The server paces them through each connection's bound,
            # so they keep flowing for seconds after the last join; the window measures the
            # room once they are through.
            time.sleep(settle_s)
            load0 = loadavg()
            m0, c0, t0 = scrape(http_url), cpu_s(server.pid), time.monotonic()
            w0 = sum(cpu_s(w.pid) for w in workers)
            time.sleep(measure_s)
            m1, c1, t1 = scrape(http_url), cpu_s(server.pid), time.monotonic()
            w1 = sum(cpu_s(w.pid) for w in workers)
            load1 = loadavg()
        finally:
            reports = []
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                try:
                    out, _ = w.communicate(timeout=60)
                    reports.append(json.loads(out.strip().splitlines()[-1]))
                except Exception:
                    w.kill()
            stop(server)
    window_s = t1 - t0
    clients_connected = (
        metric_sum(m0, "neonbar_connections") + metric_sum(m1, "neonbar_connections")
    ) / 2
    ticks = metric_sum(m1, "neonbar_tick_seconds_count") - metric_sum(
        m0, "neonbar_tick_seconds_count"
    )
    sent = metric_sum(m1, "neonbar_snapshots_sent_total") - metric_sum(
        m0, "neonbar_snapshots_sent_total"
    )
    out_bytes = metric_sum(m1, "neonbar_bytes_out_total") - metric_sum(
        m0, "neonbar_bytes_out_total"
    )
    drops = metric_sum(m1, "neonbar_drops_total") - metric_sum(m0, "neonbar_drops_total")
    drop_reasons = {
        dict(labels).get("reason", "?"): v
        for (name, labels), v in m1.items()
        if name == "neonbar_drops_total" and v
    }
    lat50 = [r["latency_ms"]["p50"] for r in reports if r["latency_ms"]["p50"] is not None]
    lat99 = [r["latency_ms"]["p99"] for r in reports if r["latency_ms"]["p99"] is not None]
    return {
        "avatars": n,
        "connections": clients_connected,
        "connected_at_start": connected,
        "ramp_s": round(ramp_s, 1),
        "window_s": round(window_s, 2),
        "ticks_per_s": round(ticks / window_s, 2),
        "tick": histogram_quantiles(m0, m1, "neonbar_tick_seconds", (0.5, 0.99)),
        "tick_cpu": histogram_quantiles(m0, m1, "neonbar_tick_cpu_seconds", (0.5, 0.99)),
        # How late ticks started (the event loop was busy, or the process waited for a core).
        "tick_late": histogram_quantiles(m0, m1, "neonbar_tick_late_seconds", (0.5, 0.99)),
        # The sender thread: writing a tick's batch, and hand-over to the last frame written.
        "send": histogram_quantiles(m0, m1, "neonbar_send_seconds", (0.5, 0.99)),
        "send_done": histogram_quantiles(m0, m1, "neonbar_send_done_seconds", (0.5, 0.99)),
        "send_partial": metric_sum(m1, "neonbar_send_partial_total")
        - metric_sum(m0, "neonbar_send_partial_total"),
        "gc_young_per_s": round((gc_count(m1, "young") - gc_count(m0, "young")) / window_s, 1),
        "gc_full": gc_count(m1, "full") - gc_count(m0, "full"),
        "server_cpu": round((c1 - c0) / window_s, 3),
        # CPU the server spent per tick, everything included (inputs, events, snapshots): a
        # figure that does not grow when other processes take the cores away.
        "server_cpu_ms_per_tick": round((c1 - c0) / max(ticks, 1) * 1000, 2),
        "loadavg_1min": [load0, load1],
        "bots_cpu": round((w1 - w0) / window_s, 3),
        "bytes_per_s_per_client": round(out_bytes / window_s / max(clients_connected, 1), 1),
        "snapshots_delivered": round(sent / max(ticks * clients_connected, 1), 4),
        # Per client and tick: what a full 20 Hz would cost when the tick rate fell short.
        "bytes_per_tick_per_client": round(
            out_bytes / max(ticks, 1) / max(clients_connected, 1), 1
        ),
        "drops": drops,
        "drop_reasons_whole_run": drop_reasons,
        "bot_latency_ms_p50": max(lat50) if lat50 else None,
        "bot_latency_ms_p99": max(lat99) if lat99 else None,
        "bot_reconnects": sum(r["reconnects"] for r in reports),
        "bot_processes": processes,
        "clients": clients,
        "load_nice": nice,
        "server_checkout": str(checkout),
    }


# ----------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> int:
    """Bots for one share of the load; prints the fleet's JSON report at the end."""
    from client.bots import BotFleet

    fleet: Any
    if args.clients == "raw":
        fleet = RawFleet(args.server, args.count, args.name_prefix, args.hello_version)
    else:
        fleet = BotFleet(
            args.server, "load", args.count, chatty=0.0, light=True, name_prefix=args.name_prefix
        )

    async def main() -> dict[str, Any]:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, fleet.stop)
        return await fleet.run(args.duration)

    try:
        import uvloop

        report = uvloop.run(main())
    except ImportError:
        report = asyncio.run(main())
    print(json.dumps(report), flush=True)
    return 0


# ----------------------------------------------------------------------------- raw clients
#
# The full client (client/net.py on the websockets library) costs ~25 us of Python per frame; at
# 1,000 bots x (20 snapshots + 20 inputs) per second that is more than a core, on a machine whose
# two cores must also run the server being measured. So the load is generated by a minimal
# client speaking the same protocol over a hand-rolled RFC 6455 framing: hello, welcome, then
# every tick an input carrying its move and the ack of the latest snapshot (the server does the
# same delta work as for a real client), answering the server's keepalive pings. It does not
# reconstruct snapshots; `--clients fleet` uses the real bots instead.


class RawBot(asyncio.Protocol):
    """One minimal protocol client; the `RawFleet` drives its moves and inputs."""

    def __init__(
        self, fleet: RawFleet, index: int, name: str, resume: str | None = None, since: int = 0
    ) -> None:
        self.fleet, self.index, self.name = fleet, index, name
        self.resume, self.last_event_seq = resume, since
        self.closed_at_s: float | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.welcomed = False
        self.closed = False
        self.ack = -1
        self.seq = 0
        self.snapshots = 0
        self.bytes_in = 0
        self.welcome_at_s: float | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        host, port = self.fleet.host, self.fleet.port
        transport.write(  # type: ignore[attr-defined]
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: bmVvbmJhci1iZW5jaC0xMg==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send(self, msg: dict[str, Any]) -> None:
        import msgpack

        if self.transport is None or self.closed:
            return
        payload = msgpack.packb(msg, use_bin_type=True)
        n = len(payload)
        # FIN + binary; client frames must be masked: a zero key leaves the payload as is
        # (the key protects proxies from cache poisoning, irrelevant on loopback).
        if n < 126:
            header = bytes((0x82, 0x80 | n)) + b"\0\0\0\0"
        else:
            header = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big") + b"\0\0\0\0"
        self.transport.write(header + payload)

    def data_received(self, data: bytes) -> None:
        import msgpack

        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.connection_lost(None)
                return
            del self.buf[: end + 4]
            self.upgraded = True
            hello: dict[str, Any] = {
                "t": "hello", "v": self.fleet.version, "room": "load", "name": self.name
            }  # fmt: skip
            if self.resume:  # dropped (e.g. as too slow): resume like a real client
                hello.update(resume=self.resume, since=self.last_event_seq)
            self.send(hello)
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if len(buf) - pos < 4:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif b1 == 127:
                if len(buf) - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if len(buf) - pos < head + b1:
                break
            payload = bytes(buf[pos + head : pos + head + b1])
            pos += head + b1
            opcode = b0 & 0x0F
            if opcode == 2:
                self.bytes_in += b1
                msg = msgpack.unpackb(payload, raw=False)
                kind = msg.get("t")
                if kind == "snap":
                    self.ack = msg["tick"]
                    self.snapshots += 1
                    you = msg["you"]
                    self.fleet.server_pos(self.index, you[0] / 100.0, you[1] / 100.0)
                elif kind == "event":
                    self.last_event_seq = max(self.last_event_seq, msg["seq"])
                elif kind == "welcome":
                    self.resume = msg["resume"]
                    self.welcomed = True
                    self.welcome_at_s = time.monotonic()
                    self.fleet.server_pos(self.index, msg["pos"][0] / 100.0, msg["pos"][1] / 100.0)
            elif opcode == 9 and self.transport is not None:  # ping: answer pong (masked)
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.connection_lost(None)
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.closed_at_s = time.monotonic()
        if self.transport is not None:
            self.transport.abort()


class RawFleet:
    """N RawBots wandering toward random targets at walking speed, one 20 Hz timer for all."""

    def __init__(self, url: str, count: int, prefix: str, version: int) -> None:
        import numpy as np

        self.version = version
        hostport = url.split("://", 1)[1].strip("/")
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.rng = np.random.default_rng(abs(hash(prefix)) % 2**32)
        self.bots = [RawBot(self, i, f"{prefix}-{i:04d}") for i in range(count)]
        self.pos = np.zeros((count, 2))
        self.target = self.rng.uniform((-14, -10), (14, 10), (count, 2))
        self.speed = self.rng.uniform(0.9, 1.8, count)
        self._stop = False
        self.reconnects = 0

    def server_pos(self, i: int, x_m: float, y_m: float) -> None:
        """Follow the server when it disagrees (a wall, a table): it has the last word."""
        if abs(self.pos[i, 0] - x_m) + abs(self.pos[i, 1] - y_m) > 0.5 or not self.bots[i].seq:
            self.pos[i] = (x_m, y_m)
            self.target[i] = self.rng.uniform((-14, -10), (14, 10))

    def stop(self) -> None:
        self._stop = True

    async def run(self, duration_s: float) -> dict[str, Any]:
        import numpy as np

        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + duration_s
        gate = asyncio.Semaphore(32)

        async def connect(bot: RawBot) -> None:
            async with gate:
                try:
                    await loop.create_connection(lambda: bot, self.host, self.port)
                except OSError:
                    bot.closed = True
                    return
                while not bot.welcomed and not bot.closed and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)

        connecting = asyncio.gather(*(connect(b) for b in self.bots))
        reconnecting: set[asyncio.Task[None]] = set()
        next_s = time.monotonic()
        while not self._stop and time.monotonic() < deadline:
            for i, old in enumerate(self.bots):
                gone_s = time.monotonic() - (old.closed_at_s or math.inf)
                if old.welcomed and old.closed and gone_s > 1.0:
                    bot = RawBot(self, i, old.name, old.resume, old.last_event_seq)
                    bot.snapshots, bot.welcome_at_s = old.snapshots, old.welcome_at_s
                    self.bots[i] = bot
                    self.reconnects += 1
                    task = asyncio.create_task(connect(bot))
                    reconnecting.add(task)
                    task.add_done_callback(reconnecting.discard)
            live = np.array([b.welcomed and not b.closed for b in self.bots])
            rows = np.flatnonzero(live)
            if len(rows):
                to = self.target[rows] - self.pos[rows]
                dist = np.hypot(to[:, 0], to[:, 1])
                step = np.minimum(dist, self.speed[rows] * 0.05)
                self.pos[rows] += to / np.maximum(dist, 1e-9)[:, None] * step[:, None]
                yaw = (np.arctan2(-to[:, 0], to[:, 1]) % (2 * math.pi)) * (65536 / (2 * math.pi))
                arrived = rows[dist < 0.4]
                self.target[arrived] = self.rng.uniform((-14, -10), (14, 10), (len(arrived), 2))
                xs = np.rint(self.pos[rows] * 100).astype(int).tolist()
                for k, i in enumerate(rows.tolist()):
                    bot = self.bots[i]
                    bot.seq += 1
                    bot.send(
                        {"t": "input", "seq": bot.seq, "ack": bot.ack, "x": xs[k][0],
                         "y": xs[k][1], "yaw": int(yaw[k]) % 65536}
                    )  # fmt: skip
            next_s += 0.05
            await asyncio.sleep(max(0.0, next_s - time.monotonic()))
        ended = time.monotonic()
        for bot in self.bots:
            if bot.transport is not None and not bot.closed:
                bot.send({"t": "bye"})
        await asyncio.sleep(0.5)
        connecting.cancel()
        for bot in self.bots:
            if bot.transport is not None:
                bot.transport.close()
        live_bots = [b for b in self.bots if b.welcome_at_s is not None]
        rates = [b.snapshots / max(1e-3, ended - (b.welcome_at_s or ended)) for b in live_bots]
        return {
            "connected": len(live_bots),
            "reconnects": self.reconnects,
            "closed_by_server": sorted({b.close_code for b in self.bots if b.close_code}),
            "snapshots_per_s": {"mean": statistics.fmean(rates) if rates else None},
            "latency_ms": {"p50": None, "p99": None},
        }


# ----------------------------------------------------------------------------- baseline


def json_state(n: int, tick: int, rng: random.Random) -> str:
    """The naive frame: every avatar, every tick, as JSON objects with float fields."""
    return json.dumps(
        {
            "type": "state",
            "tick": tick,
            "avatars": [
                {
                    "id": i,
                    "name": f"bot-{i:04d}",
                    "x": round(rng.uniform(-16, 16), 3),
                    "y": round(rng.uniform(-12, 12), 3),
                    "yaw": round(rng.uniform(0, 6.283), 3),
                }
                for i in range(n)
            ],
        }
    )


async def baseline_run(n: int, measure_s: float) -> dict[str, Any]:
    """A minimal full-state JSON broadcaster and n clients that count what they receive."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import broadcast, serve

    rng = random.Random(1)
    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    received = [0] * n
    frames = [0] * n

    async def client(i: int, url: str, stop_evt: asyncio.Event) -> None:
        async with connect(url, max_size=None, compression=None) as ws:
            while not stop_evt.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                received[i] += len(msg)
                frames[i] += 1

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        stop_evt = asyncio.Event()
        tasks = [asyncio.create_task(client(i, url, stop_evt)) for i in range(n)]
        while len(clients) < n:
            await asyncio.sleep(0.05)
        tick = 0
        started = time.monotonic()
        counted_from = None
        snapshot_bytes = 0
        while time.monotonic() - started < measure_s + 1.0:
            tick += 1
            frame = json_state(n, tick, rng)
            snapshot_bytes = len(frame)
            broadcast(clients, frame)
            if counted_from is None and time.monotonic() - started >= 1.0:
                counted_from = (time.monotonic(), sum(received), sum(frames))
            await asyncio.sleep(1 / TICK_HZ)
        t1, r1, f1 = time.monotonic(), sum(received), sum(frames)
        stop_evt.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert counted_from is not None
    t0, r0, f0 = counted_from
    return {
        "avatars": n,
        "frame_bytes": snapshot_bytes,
        "bytes_per_s_per_client": round((r1 - r0) / (t1 - t0) / n, 1),
        "frames_per_s_per_client": round((f1 - f0) / (t1 - t0) / n, 2),
    }


def baseline_analytic(n: int) -> dict[str, Any]:
    frame = json_state(n, 123456, random.Random(2))
    return {
        "avatars": n,
        "frame_bytes": len(frame),
        "bytes_per_avatar": round(len(frame) / n, 1),
        "bytes_per_s_per_client": len(frame) * TICK_HZ,
    }


# ----------------------------------------------------------------------------- report


def median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def median_of(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarize(runs: list[dict[str, Any]], baseline_bps: float) -> dict[str, Any]:
    ours = median([r["bytes_per_s_per_client"] for r in runs])
    return {
        "avatars": runs[0]["avatars"],
        "runs": len(runs),
        "tick_p50_ms": median([r["tick"].get("p50_ms") for r in runs]),
        "tick_p99_ms": median([r["tick"].get("p99_ms") for r in runs]),
        "tick_share_le_25ms": median([r["tick"].get("share_le_25ms") for r in runs]),
        "tick_cpu_p99_ms": median([r.get("tick_cpu", {}).get("p99_ms") for r in runs]),
        "tick_late_p99_ms": median([r.get("tick_late", {}).get("p99_ms") for r in runs]),
        "send_done_p99_ms": median([r.get("send_done", {}).get("p99_ms") for r in runs]),
        "server_cpu": median([r["server_cpu"] for r in runs]),
        "server_cpu_ms_per_tick": median([r["server_cpu_ms_per_tick"] for r in runs]),
        "loadavg": median([max(r["loadavg_1min"]) for r in runs]),
        "bots_cpu": median([r["bots_cpu"] for r in runs]),
        "bytes_per_s_per_client": ours,
        "bytes_per_s_per_client_at_20hz": round(
            median_of([r["bytes_per_tick_per_client"] for r in runs]) * TICK_HZ, 1
        ),
        "snapshots_delivered": median([r["snapshots_delivered"] for r in runs]),
        "ticks_per_s": median([r["ticks_per_s"] for r in runs]),
        "bot_latency_ms_p99": median([r["bot_latency_ms_p99"] for r in runs]),
        "drops": median([r["drops"] for r in runs]),
        "baseline_bytes_per_s_per_client": baseline_bps,
        # Both sides at a full 20 Hz: when the server fell behind, per-second bytes flatter it.
        "traffic_ratio": round(
            baseline_bps / (median_of([r["bytes_per_tick_per_client"] for r in runs]) * TICK_HZ),
            1,
        )
        if ours
        else None,
    }


def print_table(rows: list[dict[str, Any]], measured_baseline: dict[str, Any]) -> None:
    print(
        "| avatars | tick p50 ms | tick p99 ms | ticks <= 25 ms | tick CPU p99 ms "
        "| late p99 ms | send done p99 ms | ticks/s | server CPU "
        "| server CPU ms/tick | bot CPU | load avg | B/s per client | same at 20 Hz "
        "| snapshots delivered | JSON baseline B/s | ratio at 20 Hz |"
    )
    print("|---:" * 17 + "|")
    for r in rows:
        print(
            f"| {r['avatars']} | {r['tick_p50_ms']} | {r['tick_p99_ms']} "
            f"| {r['tick_share_le_25ms']} | {r['tick_cpu_p99_ms']} | {r['tick_late_p99_ms']} "
            f"| {r['send_done_p99_ms']} | {r['ticks_per_s']} | {r['server_cpu']} "
            f"| {r['server_cpu_ms_per_tick']} | {r['bots_cpu']} | {r['loadavg']} "
            f"| {r['bytes_per_s_per_client']} | {r['bytes_per_s_per_client_at_20hz']} "
            f"| {r['snapshots_delivered']} "
            f"| {r['baseline_bytes_per_s_per_client']} | {r['traffic_ratio']}x |"
        )
    print(
        f"\nmeasured JSON baseline at {measured_baseline['avatars']} clients: "
        f"{measured_baseline['bytes_per_s_per_client']} B/s per client "
        f"({measured_baseline['frames_per_s_per_client']} frames/s, "
        f"{measured_baseline['frame_bytes']} B per frame)"
    )
    for r in rows:
        verdicts = []
        if r["avatars"] == 1000:
            p99 = r["tick_p99_ms"]
            verdicts.append(f"tick p99 {'OK' if p99 and p99 <= TARGET_TICK_P99_MS else 'MISSED'}")
            bps = r["bytes_per_s_per_client_at_20hz"]
            verdicts.append(
                f"per-client {'OK' if bps and bps <= TARGET_BYTES_PER_CLIENT else 'MISSED'}"
            )
            ratio = r["traffic_ratio"]
            verdicts.append(f"ratio {'OK' if ratio and ratio >= TARGET_RATIO else 'MISSED'}")
            print(f"targets at 1,000 avatars: {', '.join(verdicts)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,500,1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure-s", type=float, default=10.0)
    parser.add_argument("--ramp-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--settle-s",
        type=float,
        default=15.0,
        help="seconds between the last join and the window (the join events drain meanwhile)",
    )
    parser.add_argument("--baseline-n", type=int, default=100)
    parser.add_argument(
        "--load-nice",
        type=int,
        default=10,
        help="niceness of the load generator's processes (0: same priority as the server)",
    )
    parser.add_argument(
        "--clients",
        choices=["raw", "fleet"],
        default="raw",
        help="load generator: minimal protocol clients (default) or client/bots.py light bots",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="write raw figures here")
    parser.add_argument(
        "--server-checkout",
        default=str(REPO),
        metavar="DIR",
        help="run the server from this checkout (e.g. `git worktree add` of an older commit) "
        "to compare servers under the same load",
    )
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--name-prefix", default="bot", help=argparse.SUPPRESS)
    parser.add_argument("--hello-version", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    counts = [int(c) for c in args.counts.split(",")]
    raw: dict[str, Any] = {"runs": {}, "baseline": {}}
    measured = asyncio.run(baseline_run(args.baseline_n, min(args.measure_s, 5.0)))
    raw["baseline"]["measured"] = measured
    rows = []
    for n in counts:
        analytic = baseline_analytic(n)
        raw["baseline"][str(n)] = analytic
        # Frame size x 20 Hz at every N (the real run at --baseline-n checks this; its own
        # loop ticks a little under 20 Hz, so its per-second figure is a bit lower).
        base_bps = analytic["bytes_per_s_per_client"]
        runs = []
        for k in range(args.runs):
            result = measure_ours(
                n,
                args.measure_s,
                args.ramp_timeout_s,
                args.clients,
                args.load_nice,
                Path(args.server_checkout).resolve(),
                args.settle_s,
            )
            print(f"# {n} avatars, run {k + 1}: {json.dumps(result)}", flush=True)
            runs.append(result)
        raw["runs"][str(n)] = runs
        rows.append(summarize(runs, base_bps))
    raw["summary"] = rows
    print()
    print_table(rows, measured)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
