"""avatex_core.progress: clamping, throttling, cancellation and nested ranges of the one job object."""

from __future__ import annotations

import time

import pytest

from avatex_core.progress import NULL, Cancelled, Progress, format_duration
from backend.errors import CancelledError


def _recorder(**kwargs) -> tuple[Progress, list[tuple[str, float, dict]]]:
    seen: list[tuple[str, float, dict]] = []
    return Progress(lambda s, f, i: seen.append((s, f, i)), **kwargs), seen


def test_fractions_are_clamped_once_and_info_rides_along():
    p, seen = _recorder()
    p.report("a", -0.5)
    p.report("a", 0.25, points=7)
    p.report("a", 3.0)
    p.report("a", float("nan"))
    assert seen == [("a", 0.0, {}), ("a", 0.25, {"points": 7}), ("a", 1.0, {}), ("a", 0.0, {})]


def test_throttle_drops_reports_within_the_interval_but_keeps_new_stages_and_the_final_one():
    p, seen = _recorder(interval_s=60.0)
    for i in range(100):
        p.report("work", i / 100, step=i)
    p.report("work", 1.0, step=100)
    p.report("next", 0.0)
    p.report("next", 0.5)
    assert [(s, f) for s, f, _ in seen] == [("work", 0.0), ("work", 1.0), ("next", 0.0)]
    assert seen[1][2] == {"step": 100}


def test_throttle_lets_a_report_through_once_the_interval_has_passed():
    p, seen = _recorder(interval_s=0.05)
    p.report("work", 0.1)
    p.report("work", 0.2)
    time.sleep(0.06)
    p.report("work", 0.3)
    assert [f for _, f, _ in seen] == [0.1, 0.3]


def test_cancel_is_polled_sticky_and_raises_the_backend_error():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) == 2   # true once only: the object must remember it

    p = Progress(should_stop=stop)
    p.check()
    with pytest.raises(Cancelled, match="stopped at 3"):
        p.check("stopped at 3")
    assert p.cancelled and len(calls) == 2
    with pytest.raises(CancelledError):   # one exception on both sides of the package boundary
        p.sub(0.2, 0.4).check()


def test_nested_ranges_map_into_the_parent_and_can_rename_the_stage():
    p, seen = _recorder()
    outer = p.sub(0.5, 1.0)
    inner = outer.sub(0.5, 1.0, stage="synth")
    inner.report("painting", 0.0, avatar="a")
    inner.report("painting", 0.5)
    inner.report("synth", 1.0)
    outer.report("train", 0.2)
    assert seen == [("synth", 0.75, {"detail": "painting", "avatar": "a"}),
                    ("synth", 0.875, {"detail": "painting"}), ("synth", 1.0, {}), ("train", 0.6, {})]


def test_muted_reports_nothing_but_is_cancelled_with_its_parent():
    stop = {"now": False}
    p, seen = _recorder(should_stop=lambda: stop["now"])
    quiet = p.muted()
    quiet.report("frame", 0.5)
    assert seen == [] and not quiet.cancelled
    stop["now"] = True
    with pytest.raises(Cancelled):
        quiet.check()


def test_the_null_progress_reports_nothing_and_never_stops():
    NULL.report("x", 0.5)
    NULL.sub(0.0, 0.5).report("y", 1.0)
    NULL.check()
    assert not NULL.cancelled


def test_one_duration_format_for_the_cli_the_report_and_the_panels():
    assert [format_duration(s) for s in (0, 4.6, 59.4, 184, 3599.6, 3725, 90_000)] == \
        ["0s", "5s", "59s", "3m04s", "1h00m", "1h02m", "25h00m"]
    assert format_duration(-3) == "0s"   # a clock that stepped back shows zero, not a minus sign
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"
    assert format_duration(float("nan"), "–") == "–"   # the panels' placeholder
