"""What the API's guard keeps between requests: rate limits, the audit summary of refused
requests, and the security headers of every answer. No Ray, no FastAPI routes: plain pieces the
middleware in n1v1/serve/api.py uses, each testable by hand.

Refused requests are summarised, not written one by one: a client without a token could
otherwise make the gateway write an audit row per request (about 90 a second were seen) into the
engine's database. `RefusalLog` counts them per caller (actor and client address) and writes one
row per caller and window (a minute by default) when the window closes, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

# Headers on every answer: nothing is sniffed as another type, no page can frame ours, no URL
# (a dashboard address may hold a token in its fragment) leaves in a Referer.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# An answer that is not a page may load nothing at all.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def page_csp(html: str) -> str:
    """The Content-Security-Policy of one of our pages: scripts from this server and the page's
    own inline scripts and style blocks, pinned by their SHA-256 (an injected script or style
    would not run), fetches to this server only, images from here or data: URIs, no frames, no
    plugins, no inline event handlers or style attributes (Swagger UI sets styles through the
    DOM, which CSP allows)."""
    scripts = " ".join(f"'{_sha256(s)}'" for s in _INLINE_SCRIPT.findall(html))
    styles = " ".join(f"'{_sha256(s)}'" for s in _INLINE_STYLE.findall(html))
    return (
        f"default-src 'none'; script-src 'self' {scripts}; style-src 'self' {styles}; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ).replace(" ;", ";")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`; one bucket per key. A key
    idle long enough to have refilled is forgotten (it is the same as a new one), so many keys
    (client addresses) cannot grow the table without bound: past `max_keys` the oldest go."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> tuple[bool, float]:
        """(allowed, seconds until a request would be allowed)."""
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_keys:
            self._forget(now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)  # re-inserted: the dict stays oldest first
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        refill_s = self.burst / self.rate
        idle = [k for k, (_, last) in self._buckets.items() if now - last >= refill_s]
        for key in idle:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:  # all busy: drop the least recently seen
            del self._buckets[next(iter(self._buckets))]


@dataclass
class _Tally:
    opened: float  # wall-clock time of the window's first refusal
    last: float
    action: str  # the first refusal's "METHOD path"
    status: int
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


AuditRow = tuple[str, str, dict[str, Any]]  # actor, action, details


class RefusalLog:
    """Refused requests, summarised per caller (actor, client address) and window.

    The row of a window: actor, the first refusal's "METHOD path" as the action, and details
    `{status, path, client, refused: count, first, last, window_s, attempts: {"METHOD path
    status code": count}}` (at most `max_kinds` kinds; the rest are counted under "other").
    At most `max_callers` callers are tallied at once; further ones share one tally.
    """

    def __init__(
        self,
        write: Callable[[list[AuditRow]], None],
        window_s: float = 60.0,
        max_callers: int = 10_000,
        max_kinds: int = 20,
    ) -> None:
        self._write, self.window_s = write, window_s
        self.max_callers, self.max_kinds = max_callers, max_kinds
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._flusher: asyncio.Task[None] | None = None

    def add(self, actor: str, client: str, method: str, path: str, status: int, code: str) -> None:
        now = time.time()
        key = (actor, client)
        if key not in self._tallies and len(self._tallies) >= self.max_callers:
            key = (actor, "other")
        tally = self._tallies.get(key)
        action = f"{method} {path}"
        if tally is None:
            tally = self._tallies[key] = _Tally(opened=now, last=now, action=action, status=status)
        tally.count += 1
        tally.last = now
        kind = f"{action} {status} {code}"
        if kind in tally.kinds or len(tally.kinds) < self.max_kinds:
            tally.kinds[kind] += 1
        else:
            tally.kinds["other"] += 1
        self._ensure_flusher()

    def due(self, now: float, everything: bool = False) -> list[AuditRow]:
        """The rows of the windows closed by `now` (all of them with `everything`), forgotten."""
        closed = [
            key
            for key, tally in self._tallies.items()
            if everything or now >= tally.opened + self.window_s
        ]
        return [self._row(key, self._tallies.pop(key)) for key in closed]

    def _row(self, key: tuple[str, str], tally: _Tally) -> AuditRow:
        actor, client = key
        details = {
            "status": tally.status,
            "path": tally.action.partition(" ")[2],
            "client": client,
            "refused": tally.count,
            "first": _iso(tally.opened),
            "last": _iso(tally.last),
            "window_s": self.window_s,
            "attempts": dict(tally.kinds),
        }
        return actor, tally.action, details

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        while self._tallies:
            first = min(t.opened for t in self._tallies.values())
            await asyncio.sleep(max(0.0, first + self.window_s - time.time()))
            await self.flush(self.due(time.time()))

    async def close(self) -> None:
        """Write every open window now (the app is shutting down)."""
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush(self.due(time.time(), everything=True))

    async def flush(self, rows: list[AuditRow]) -> None:
        if not rows:
            return
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception:  # the summary is lost, the service goes on; the log says so
            log.exception("could not write %d audit summaries of refused requests", len(rows))


def _iso(seconds: float) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").floor("ms").isoformat()
