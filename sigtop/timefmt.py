"""Time as sigtop shows it: ages, clock times, durations. One place, so one screen never shows
the same age two ways.

Wall-clock seconds are for display only; nothing here decides identity or order.
"""

from __future__ import annotations

import math
import time


def age_text(seconds: float) -> str:
    """How long, short: 42s, 5m, 2.5h, 3.2d."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def age(now: float, ts: float) -> str:
    """How long before `now` a timestamp was; '-' for none."""
    return age_text(now - ts) if ts else "-"


def clock(ts: float) -> str:
    """A wall-clock time with milliseconds, 14:03:07.512; '-' for none."""
    if not ts:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def clock_s(ts: float) -> str:
    """A wall-clock time to the second, 14:03:07."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def seek_target(text: str, at_ts: float) -> float:
    """Where a replay seek goes, as wall-clock seconds: HH:MM or HH:MM:SS (on the day of `at_ts`, the
    replay's present, local time as the screens show it), or +N / -N seconds from `at_ts`.
    ValueError with what is wrong."""
    text = text.strip()
    if text[:1] in "+-":
        try:
            offset = float(text.removesuffix("s"))
        except ValueError:
            raise ValueError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(offset) or abs(offset) > 10 * 365 * 86400:  # NaN, or beyond any recording
            raise ValueError(f"not a sensible number of seconds: {text!r}")
        return at_ts + offset
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) <= 2 for p in parts):
        raise ValueError(f"not a time: {text!r} (HH:MM, HH:MM:SS, or +N / -N seconds)")
    hour, minute, second = (int(p) for p in (*parts, "0")[:3])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a time of day: {text!r}")
    day = time.localtime(at_ts)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, hour, minute, second, 0, 0, -1))


def duration(ns: int) -> str:
    """A latency, short: 850ns, 12µs, 3.4ms, 2.1s."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"
