"""The one clock the live source stamps everything with: the wall clock as it read at start,
carried forward by CLOCK_MONOTONIC (the kernel's event times are that clock too).

A later step of the system clock (NTP's first sync, a VM resumed, `date -s`) moves nothing
sigtop keeps: no pid is taken for reused, no row's order changes, a start time stays put. The
times shown are then off the system clock by that step until sigtop restarts: wall time is for
display only, identity comes from boot-time ticks (ProcInfo.start_ticks).
"""

from __future__ import annotations

import os
import time

from sigtop.events import ktime_to_wall

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/PID/stat's start time unit


class SourceClock:
    def __init__(self) -> None:
        self.mono_to_wall = time.time() - time.monotonic()

    def now(self) -> float:
        return self.mono_to_wall + time.monotonic()

    def of_ktime(self, ktime_ns: int) -> float:
        """A kernel time (bpf_ktime_get_ns: CLOCK_MONOTONIC) as this clock's wall time."""
        return ktime_to_wall(self.mono_to_wall, ktime_ns)

    def of_start_ticks(self, ticks: int) -> float:
        """A start time in clock ticks since boot (CLOCK_BOOTTIME, suspends included) as wall time."""
        suspended = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
        return self.mono_to_wall + ticks / CLOCK_TICKS - suspended


# For callers with no source of their own (a one-off /proc read).
DEFAULT = SourceClock()
