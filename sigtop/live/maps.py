"""The map drain: the kernel's cumulative counters, read once per interval, turned into deltas.

The maps are never deleted-on-read (an increment racing with the delete
would be lost); the drain keeps what it saw last and reports the difference.
Entries are evicted here only once their counts have been reported.
"""

from __future__ import annotations

import os
from typing import Any

from sigtop.live.config import TraceConfig
from sigtop.live.layout import comm_text
from sigtop.records import FlowDelta, FlowKey, KernelStats, SignalfdState, ThreadDelta

# The per-CPU stats array's slots, in the order of enum stat_id (bpf/sigtop.h).
STAT_NAMES = ("events_lost", "flows_full", "threads_full", "signalfds_full", "events_sent")
STALE_FLOW_S = 60.0


class MapDrain:
    """Reads the flows, threads, signalfds and stats maps of one loaded program."""

    def __init__(self, bpf: Any, config: TraceConfig, mono_to_wall: float) -> None:
        self.bpf = bpf
        self.config = config
        self.mono_to_wall = mono_to_wall
        self._prev_flows: dict[bytes, tuple[int, float]] = {}  # count, when it last moved
        self._prev_threads: dict[int, tuple[int, int, int, int]] = {}
        self._prev_signalfds: dict[tuple[int, int], tuple[int, int]] = {}
        self._prev_stats = [0] * len(STAT_NAMES)

    def wall(self, ktime_ns: int) -> float:
        """The kernel's monotonic ns as wall-clock seconds (0 stays 0: never set)."""
        return self.mono_to_wall + ktime_ns / 1e9 if ktime_ns else 0.0

    def flows(self, now: float, wall_now: float) -> list[FlowDelta]:
        table = self.bpf[b"flows"]
        deltas = []
        seen = set()
        stale: list[Any] = []
        for k, v in table.items_lookup_batch():
            raw = bytes(k)
            seen.add(raw)
            prev, moved = self._prev_flows.get(raw, (0, now))
            if v.count == prev:
                if now - moved > STALE_FLOW_S:
                    stale.append(k)
                continue
            # A count below what we saw means the key was evicted and came back.
            delta = v.count - prev if v.count > prev else v.count
            self._prev_flows[raw] = (v.count, now)
            key = FlowKey(
                sender_pid=k.sender_tgid,
                target_pid=k.target_pid,
                target_tgid=k.target_tgid,
                sig=k.sig,
                code=k.code,
                err=k.err,
                syscall=k.syscall,
                result=k.result,
            )
            deltas.append(
                FlowDelta(
                    key=key,
                    count=delta,
                    first_ts=self.wall(v.first_ts),
                    last_ts=wall_now,
                    sender_comm=comm_text(bytes(v.sender_comm)),
                    target_comm=comm_text(bytes(v.target_comm)),
                )
            )
        for raw in self._prev_flows.keys() - seen:
            del self._prev_flows[raw]
        # Evict idle flows only when the map is filling: their counts were already reported.
        if len(seen) > self.config.flow_entries * 3 // 4:
            for k in stale:
                table.pop(k, None)
                self._prev_flows.pop(bytes(k), None)
        return deltas

    def threads(self, wall_now: float) -> list[ThreadDelta]:
        table = self.bpf[b"threads"]
        deltas = []
        seen = set()
        for k, v in table.items_lookup_batch():
            tid = k if isinstance(k, int) else k.value
            seen.add(tid)
            now = (v.sigreturns, v.handler_deliveries, v.deliveries, v.unmatched)
            prev = self._prev_threads.get(tid, (0, 0, 0, 0))
            if now == prev:
                if len(self._prev_threads) > self.config.thread_entries // 2 and not os.path.exists(f"/proc/{tid}"):
                    table.pop(table.Key(tid), None)  # the thread is gone and its counts reported
                continue
            self._prev_threads[tid] = now
            deltas.append(
                ThreadDelta(
                    tid=tid,
                    tgid=v.tgid,
                    comm=comm_text(bytes(v.comm)),
                    sigreturns=max(0, now[0] - prev[0]),
                    handler_deliveries=max(0, now[1] - prev[1]),
                    deliveries=max(0, now[2] - prev[2]),
                    last_ts=wall_now,
                    unmatched=max(0, now[3] - prev[3]),
                )
            )
        for tid in self._prev_threads.keys() - seen:
            del self._prev_threads[tid]
        return deltas

    def signalfds(self) -> list[SignalfdState]:
        table = self.bpf[b"signalfds"]
        states = []
        for k, v in table.items_lookup_batch():
            ident = (k.tgid, k.fd)
            prev_calls, prev_created = self._prev_signalfds.get(ident, (0, -1))
            if v.calls == prev_calls and v.created_ts == prev_created:
                continue
            fresh = prev_created not in (v.created_ts, -1)
            new_calls = v.calls if fresh or v.calls < prev_calls else v.calls - prev_calls
            self._prev_signalfds[ident] = (v.calls, v.created_ts)
            states.append(
                SignalfdState(
                    pid=k.tgid,
                    fd=k.fd,
                    comm=comm_text(bytes(v.comm)),
                    mask=v.mask,
                    flags=v.flags,
                    calls=new_calls,
                    created_ts=self.wall(v.created_ts),
                    last_ts=self.wall(v.last_ts),
                )
            )
        return states

    def stats(self) -> KernelStats:
        table = self.bpf[b"stats"]
        now = [int(table.sum(table.Key(i)).value) for i in range(len(STAT_NAMES))]
        delta = [n - p for n, p in zip(now, self._prev_stats, strict=True)]
        self._prev_stats = now
        return KernelStats(**dict(zip(STAT_NAMES, delta, strict=True)))
