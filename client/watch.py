"""Watch together, client side: the room's timeline on the big screen, media fetched on demand.

`Watch` is what the app hands the timeline to (from `welcome.timeline` and `timeline` events):
it fetches the scene's media into the client's cache (client/media.py) showing progress on the
screen, then lets the big screen (client/screen.py) show the frame due at the estimated server
time, and keeps the strip under the screen (client/timeline_bar.py) current. The host's keys
come back to the room as `playback` messages.

The timeline also names the scene that follows (`next_media`): once the current media is in the
cache, that one is fetched in the background, so when the host presses N (or a branch point's
choice starts) the screen shows frames from the cache at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.media import MediaCache, MediaDownload
from client.screen import BigScreen, MediaInfo, PlaybackLog
from client.timeline_bar import TimelineBar, TimelineKeys
from neonbar.playback import Timeline

log = logging.getLogger("neonbar.watch")


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "neonbar" / "client"


@dataclass
class WatchOptions:
    """What `neonbar client` says about media and tracing (all optional)."""

    server_url: str | None = None  # ws://H:P: media come from http://H:P/media/<sha256>
    room: str | None = None
    token: str | None = None
    data_dir: Path | None = None  # --data: the media cache lives in DIR/media
    playback_log: Path | None = None  # --playback-log F.jsonl
    texture_size: tuple[int, int] = (640, 360)


class Watch:
    """The big screen's scene, the timeline strip and the host's playback keys."""

    def __init__(
        self,
        base: Any,
        world: Any,
        layout: Any,
        *,
        send: Callable[[dict[str, Any]], None],
        server_time: Callable[[], float],
        clock: Callable[[], float],
        role: Callable[[], str | None],
        toast: Callable[[str], None],
        captured: Callable[[], bool] = lambda: False,
        options: WatchOptions | None = None,
        clock_settling: Callable[[], bool] = lambda: False,
    ) -> None:
        self.options = options or WatchOptions()
        opts = self.options
        s = layout.screen
        self.timeline = Timeline()
        self._server_time = server_time
        self._clock = clock
        self._settling = clock_settling
        self.cache = MediaCache(opts.data_dir or default_data_dir())
        self.download: MediaDownload | None = None
        self.problem: str | None = None
        self.screen = BigScreen(
            base,
            world.screen,
            s.width_m,
            s.height_m,
            idle=getattr(world, "screen_idle", None),
            texture_size=opts.texture_size,
            playback_log=PlaybackLog(opts.playback_log) if opts.playback_log else None,
        )
        self.bar = TimelineBar(base, world.screen, s.width_m)
        self.keys = TimelineKeys(
            send, lambda: self.timeline, self._position, role, toast, captured=captured
        )
        self._wanted: str | None = None  # the media the timeline names
        self._next_wanted: str | None = None  # the media of the scene after it
        self.prefetch: MediaDownload | None = None
        self._next_tried: str | None = None  # look-ahead decided for it (fetched, had, failed)

    # --------------------------------------------------------------------------- inbound

    def on_welcome(self, msg: dict[str, Any]) -> None:
        if "timeline" in msg:
            self._set(msg["timeline"])

    def on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == "timeline":
            self._set(msg)

    def _set(self, wire: Any) -> None:
        try:
            timeline = Timeline.from_wire(wire)
        except ValueError as exc:
            log.warning("ignoring a timeline the client cannot use: %s", exc)
            return
        self.timeline = timeline
        if timeline.media != self._wanted:
            self._want_media(timeline.media)
        if timeline.next_media is not None and timeline.next_media != self._next_wanted:
            # Another scene is next now: the old look-ahead is not worth the bandwidth. (A
            # timeline without `next_media`, e.g. the switch's own "preparing", keeps it.)
            self._next_wanted = timeline.next_media
            if self.prefetch is not None and self.prefetch.sha256 != timeline.next_media:
                self.prefetch.cancel()
                self.prefetch = None

    def _want_media(self, sha256: str | None) -> None:
        self._wanted = sha256
        self.problem = None
        if self.download is not None:
            self.download.cancel()
            self.download = None
        if sha256 is None:
            self.screen.set_media(None, None)
            return
        prefetch, self.prefetch = self.prefetch, None
        if prefetch is not None and prefetch.sha256 == sha256:
            if prefetch.path is not None:
                self.screen.set_media(prefetch.path, sha256, self._info())
                return
            if prefetch.error is None:  # still arriving: it becomes the download on screen
                self.screen.set_media(None, None)
                self.download = prefetch
                return
        elif prefetch is not None:
            self.prefetch = prefetch  # still the next one's
        cached = self.cache.get(sha256)
        if cached is not None:
            self.screen.set_media(cached, sha256, self._info())
            return
        self.screen.set_media(None, None)
        opts = self.options
        if not opts.server_url:
            self.problem = "this scene's media is not in the cache and there is no server"
            return
        self.download = MediaDownload(opts.server_url, sha256, self.cache, opts.token,
                                      room=opts.room)  # fmt: skip

    def _look_ahead(self) -> None:
        """Fetch the next scene's media, once nothing else is downloading."""
        sha256 = self._next_wanted
        opts = self.options
        if (
            sha256 is None
            or sha256 == self._next_tried
            or self.download is not None
            or self.prefetch is not None
            or sha256 == self._wanted
            or not opts.server_url
        ):
            return
        self._next_tried = sha256
        if self.cache.path(sha256).is_file():  # verified when it is shown
            return
        log.info("fetching the next scene's media %s ahead", sha256[:12])
        self.prefetch = MediaDownload(opts.server_url, sha256, self.cache, opts.token,
                                      room=opts.room)  # fmt: skip

    def _info(self) -> MediaInfo | None:
        """The server counted the frames already: the timeline says how many and how fast."""
        t = self.timeline
        return MediaInfo(t.fps, t.frames, 0, 0) if t.frames else None

    # --------------------------------------------------------------------------- frame

    def _position(self) -> float:
        pos = self.screen.playhead.position_s
        return pos if pos is not None else self.timeline.position(self._server_time())

    def update(self) -> int | None:
        """Once per frame: finish a download, show the due frame, refresh the strip."""
        download = self.download
        fraction = None
        if download is not None:
            if download.path is not None:
                self.download = None
                self.screen.set_media(download.path, download.sha256, self._info())
            elif download.error is not None:
                self.download = None
                self.problem = download.error
            else:
                fraction = download.fraction
        prefetch = self.prefetch
        if prefetch is not None and prefetch.done:
            if prefetch.error is not None:
                log.warning("the next scene's media could not be fetched ahead: %s",
                            prefetch.error)  # fmt: skip
            self.prefetch = None  # in the cache now (or fetched again when it plays)
        elif prefetch is None and self._next_wanted is not None:
            self._look_ahead()
        source = self.screen.source
        if source is not None and source.error:
            self.problem = source.error
        server_s = self._server_time()
        message = self._screen_message(fraction)
        self.screen.show_message(message)
        shown = self.screen.update(self.timeline, server_s, self._clock(), self._settling())
        self.bar.update(self.timeline, server_s, fraction, self.problem)
        return shown

    def _screen_message(self, fraction: float | None) -> str | None:
        timeline = self.timeline
        if timeline.scene is None:
            return None
        if timeline.status == "missing":
            return timeline.note or "this scene's media is missing on the server"
        if timeline.status == "preparing":
            return f"{timeline.title or timeline.scene}\n{timeline.note or 'preparing…'}"
        if self.problem:
            return self.problem
        if fraction is not None:
            return f"{timeline.title or timeline.scene}\nfetching {fraction * 100:.0f} %"
        return None

    def destroy(self) -> None:
        if self.download is not None:
            self.download.cancel()
        if self.prefetch is not None:
            self.prefetch.cancel()
        self.keys.destroy()
        self.screen.destroy()
        self.bar.destroy()


__all__ = ["Watch", "WatchOptions", "default_data_dir"]
