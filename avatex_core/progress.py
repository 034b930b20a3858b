"""One progress-and-cancellation object for every long operation (render, synth, train, evaluate, ...).

A long operation takes one :class:`Progress` instead of a ``progress`` callable plus a ``should_stop``
callable: it calls :meth:`Progress.report` as it goes and :meth:`Progress.check` between steps, and
hands :meth:`Progress.sub` to the steps it delegates to, so a nested step reports in its own 0..1 range
and the caller sees one monotone fraction of the whole. Clamping and throttling happen here, once, so
no operation re-implements them.

Pure standard library: the backend, the server's job runner and the Blender renderer all use it
(docs/api.md, "Progress and cancellation").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


class Cancelled(Exception):
    """A long operation stopped because someone asked it to (``should_stop`` became true)."""

    code = "cancelled"


class _Shared:
    """What a :class:`Progress` and every range nested in it share: the callbacks and the throttle."""

    def __init__(self, on_report: Callable[[str, float, dict], None] | None,
                 should_stop: Callable[[], bool] | None, interval_s: float) -> None:
        self.on_report, self.should_stop, self.interval_s = on_report, should_stop, interval_s
        self.last_time = -float("inf")
        self.last_stage: str | None = None
        self.stopped = False


class Progress:
    """Reports ``(stage, fraction, info)`` and answers "should this stop?" for one long operation.

    ``on_report(stage, fraction, info)`` receives every report that survives the throttle: at most one
    per ``interval_s`` within a stage, but always the first of a stage and a final ``1.0`` (so a
    consumer's bar ends full and never misses a stage). ``should_stop()`` is polled by
    :attr:`cancelled`; once it has said yes the answer stays yes. Both are optional:
    ``Progress()`` (or :data:`NULL`) reports nothing and never stops, so callers may omit it.
    """

    def __init__(self, on_report: Callable[[str, float, dict], None] | None = None, *,
                 should_stop: Callable[[], bool] | None = None, interval_s: float = 0.0) -> None:
        self._shared = _Shared(on_report, should_stop, float(interval_s))
        self._lo, self._hi = 0.0, 1.0
        self._stage: str | None = None

    def sub(self, lo: float, hi: float, stage: str | None = None) -> Progress:
        """The range ``lo..hi`` of this one as a new 0..1 :class:`Progress` (same callbacks, same throttle).

        With ``stage``, the nested operation's reports go out under that stage name and its own stage
        moves to ``info["detail"]``, so a caller can show "synth" while synth reports "avatar".
        """
        lo, hi = _clamp(lo), _clamp(hi)
        child = Progress.__new__(Progress)
        child._shared = self._shared
        span = self._hi - self._lo
        child._lo, child._hi = self._lo + span * lo, self._lo + span * max(lo, hi)
        child._stage = stage if stage is not None else self._stage
        return child

    def muted(self) -> Progress:
        """A :class:`Progress` that reports nothing but is cancelled with this one: for a step whose own
        stages would only clutter the caller's (a reconstruction inside an evaluation)."""
        return Progress(should_stop=lambda: self.cancelled)

    def report(self, stage: str, fraction: float, **info: Any) -> None:
        """Tell the consumer that ``stage`` is ``fraction`` (clamped to 0..1) done; ``info`` rides along."""
        shared = self._shared
        if shared.on_report is None:
            return
        local = _clamp(fraction)
        if self._stage is not None and stage != self._stage:
            info = {"detail": stage, **info}
            stage = self._stage
        now = time.monotonic()
        if stage == shared.last_stage and local < 1.0 and now - shared.last_time < shared.interval_s:
            return
        shared.last_time, shared.last_stage = now, stage
        shared.on_report(stage, self._lo + (self._hi - self._lo) * local, info)

    @property
    def cancelled(self) -> bool:
        """Whether the operation should stop now (polls ``should_stop``; sticky once true)."""
        shared = self._shared
        if not shared.stopped and shared.should_stop is not None and shared.should_stop():
            shared.stopped = True
        return shared.stopped

    def check(self, message: str = "cancelled") -> None:
        """Raise :class:`Cancelled` with ``message`` when the operation should stop."""
        if self.cancelled:
            raise Cancelled(message)


def _clamp(fraction: float) -> float:
    fraction = float(fraction)
    return 0.0 if not fraction >= 0.0 else min(fraction, 1.0)   # NaN counts as "not started"


NULL = Progress()
"""Reports nothing, never stops: the default of every ``progress=`` parameter."""


def format_duration(seconds: float | None, missing: str = "?") -> str:
    """A duration for people: ``1h02m``, ``3m04s`` or ``5s``; ``missing`` when unknown (None, NaN, inf).

    One format for the command line, the experiment report and the add-on's panels, so an ETA reads the
    same everywhere.
    """
    if seconds is None or not math.isfinite(seconds):
        return missing
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
