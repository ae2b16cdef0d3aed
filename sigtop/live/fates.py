"""The fates of queued signals that the kernel side cannot settle alone: discarded at exit, read, still pending.

The BPF program keeps a record per queued signal (map `pending`, keyed by
the list it is on) and counts it against its flow when a thread takes it
(signal_deliver) or waits for it (sigtimedwait). What is left is settled
here, once per interval:

* an exit record (map `exits`: what the kernel still had on a list when its
  thread, or its process, exited) settles every older record of that list:
  on it at exit means discarded, or taken by the default action when it is
  the signal that killed the process; off it means it had left unseen
  (a signalfd read, a flush) and counts as read;
* a record whose owner is alive but whose signal /proc no longer shows
  pending (SigPnd / ShdPnd) left unseen too: read, once /proc says so twice,
  CONFIRM_S apart, in the same collection or the next (a sigwait between its
  dequeue and its syscall's return must not be mistaken for one: the kernel
  side counts that one, and a record already settled here is not "unqueued"
  to it). A healthy signalfd reader's signals are read at the collection
  after the read, never shown pending;
* whatever else is still pending, and since when, by flow: state, each batch.
"""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sigtop.events import ktime_to_wall
from sigtop.live.bpfsys import lookup_and_delete
from sigtop.live.maps import flow_key
from sigtop.live.procfs import pending_masks, start_ticks
from sigtop.names import EXIT_SIGNAL_MASK, KERNEL_SIGRTMIN
from sigtop.wire import FlowDelta, FlowKey, PendingFlow

# /proc status files read per collection at most; the rest wait for the next (still pending meanwhile).
MAX_STATUS_READS = 2_000
SWEEP_S = 10.0  # how often taken records (kept for reuse) are checked for owners that are gone
CONFIRM_S = 0.002  # a record off its list at one /proc read is read if still so this much later
_GONE = "gone"  # _StatusMasks.pending: the owner has exited (or its id is another task's now)


@dataclass
class Settled:
    """One collection's result."""

    fates: list[FlowDelta]  # taken / read / discarded counts, new since the last
    pending: list[PendingFlow]  # still pending, by flow (state)
    keep: set[bytes]  # flow keys (raw) with signals pending: the drain must not evict them


class FateSettler:
    def __init__(self, bpf: Any, mono_to_wall: float) -> None:
        self.pending = bpf[b"pending"]
        self.exits = bpf[b"exits"]
        self.rt_queues = bpf[b"rt_queues"]
        self.mono_to_wall = mono_to_wall
        self._value_size = ctypes.sizeof(self.pending.Leaf)
        self._exit_size = ctypes.sizeof(self.exits.Leaf)
        self._suspects: set[tuple[bytes, int]] = set()  # (record key, queued ts) seen not pending once
        self._next_status = 0  # round robin over owners past MAX_STATUS_READS
        self._next_sweep = 0.0  # when taken records are next checked for owners gone

    def settle(self) -> Settled:
        exits = {
            (k.owner, k.shared, k.old_leader): (bytes(k), v.mask, v.ts, v.exit_code)
            for k, v in self.exits.items_lookup_batch()
        }
        masks = _StatusMasks(self._next_status)
        fates: dict[bytes, list[int]] = {}  # raw flow key -> [taken, read, discarded, suppressed]
        suppressed_by: dict[bytes, int] = {}  # raw flow key -> the tracer that suppressed its last
        flow_keys: dict[bytes, FlowKey] = {}
        still: Counter[bytes] = Counter()
        oldest: dict[bytes, int] = {}
        suspects: set[tuple[bytes, int]] = set()
        # This collection's new suspects, to confirm before it ends: (record key, its value, owner).
        fresh: list[tuple[Any, Any]] = []
        live_owners: set[int] = set()
        sweep = time.monotonic() >= self._next_sweep
        if sweep:
            self._next_sweep = time.monotonic() + SWEEP_S
        swept = 0
        # Realtime queues an exec from a thread moved to the leader's id: their records keep the
        # exec'ing thread's id, and are on the leader's list (bpf fate_exec).
        moved_to = {q.records_owner: k.owner for k, q in self.rt_queues.items_lookup_batch() if q.records_owner}
        for k, v in self.pending.items_lookup_batch():
            raw_flow = bytes(v.flow)
            shared, sig = k.shared, k.sig
            ended = exits.get((k.owner, shared, 0))
            if ended is None and sig >= KERNEL_SIGRTMIN and not shared:
                ended = exits.get((k.owner, 0, 1))  # an exec from a thread flushed the old leader's list
            owner = moved_to.get(k.owner, k.owner) if not shared else k.owner
            if not v.ts:
                # Taken, kept for reuse: removed once its owner is gone.
                if ended is not None:
                    self._drop_taken(k)
                elif sweep and swept < MAX_STATUS_READS:
                    swept += 1
                    if start_ticks(owner) is None:
                        self._drop_taken(k)
                continue
            fate = None
            if ended is not None and v.ts <= ended[2]:
                _key, mask, _ts, exit_code = ended
                if not mask >> (sig - 1) & 1:
                    fate = 1  # it had left the list before the exit, unseen
                elif exit_code & EXIT_SIGNAL_MASK == sig:
                    fate = 0  # the signal that killed the process: its default action took it
                else:
                    fate = 2  # discarded with the list
            else:
                pending_now = masks.pending(owner, shared, sig, v.ts)
                ident = (bytes(k), v.ts)
                if pending_now is _GONE and not shared:
                    # A thread ended by its process's group exit: its own list went with it,
                    # unseen by the kernel side. Discarded, unless it had left the list before.
                    fate = 1 if ident in self._suspects else 2
                elif pending_now is False and masks.held_by_tracer(owner):
                    live_owners.add(owner)  # perhaps in the stop for this very signal: its tracer decides
                elif pending_now is False or pending_now is _GONE:
                    if ident in self._suspects:
                        fate = 1
                        tracer = masks.tracer(owner) if pending_now is False else 0
                        if tracer:  # taken in a delivery-stop and never delivered: suppressed
                            fate, suppressed_by[raw_flow] = 3, tracer
                    else:
                        suspects.add(ident)
                        if pending_now is False:
                            fresh.append((k, v))
                else:
                    live_owners.add(owner)
            if fate is not None and not self._remove(k):
                continue  # the kernel took it first (and counted it)
            if raw_flow not in flow_keys:
                flow_keys[raw_flow] = flow_key(v.flow)
            if fate is not None:
                fates.setdefault(raw_flow, [0, 0, 0, 0])[fate] += 1
            else:
                still[raw_flow] += 1
                oldest[raw_flow] = min(oldest.get(raw_flow, v.ts), v.ts)
        for k, v, raw_flow, tracer in self._confirm(fresh):
            suspects.discard((bytes(k), v.ts))
            fates.setdefault(raw_flow, [0, 0, 0, 0])[3 if tracer else 1] += 1
            if tracer:
                suppressed_by[raw_flow] = tracer
            still[raw_flow] -= 1
            if not still[raw_flow]:
                del still[raw_flow]
                oldest.pop(raw_flow, None)
        self._suspects = suspects
        self._next_status = masks.next_start
        for raw_key, _mask, ts, _code in exits.values():
            self._forget_exit(raw_key, ts)
        self._forget_queues(exits, live_owners)
        return Settled(
            fates=[
                FlowDelta(
                    flow_keys[raw],
                    0,
                    0.0,
                    0.0,
                    taken=n[0],
                    read=n[1],
                    discarded=n[2],
                    suppressed=n[3],
                    suppressed_by=suppressed_by.get(raw, 0),
                )
                for raw, n in fates.items()
            ],
            pending=[PendingFlow(flow_keys[raw], n, self._wall(oldest[raw])) for raw, n in still.items()],
            keep=set(still),
        )

    def _confirm(self, fresh: list[tuple[Any, Any]]) -> list[tuple[Any, Any, bytes, int]]:
        """Of the records /proc showed off their list, those still off it CONFIRM_S later and
        still not taken by the kernel: read (a signalfd read, a flush), or, where the owner is
        traced, suppressed by its tracer (with that tracer's pid); taken off the map here. An owner
        in a tracing stop is left for a later collection: its tracer may still pass the signal on."""
        if not fresh:
            return []
        time.sleep(CONFIRM_S)
        again = _StatusMasks(0)
        read = []
        for k, v in fresh:
            if again.pending(k.owner, k.shared, k.sig, v.ts) is not False or again.held_by_tracer(k.owner):
                continue  # back on the list, gone, not known, or in its tracer's hands: decided later
            last = lookup_and_delete(self.pending.map_fd, bytes(k), self._value_size)
            if last is None:
                continue
            value = self.pending.Leaf.from_buffer_copy(last)
            if value.ts == v.ts:
                read.append((k, v, bytes(v.flow), again.tracer(k.owner)))
            elif value.ts:  # a new signal queued under that key meanwhile: it stays
                self.pending[k] = value
            # else the kernel took it meanwhile, and counted it; its kept record goes
        return read

    def _wall(self, ktime_ns: int) -> float:
        return ktime_to_wall(self.mono_to_wall, ktime_ns)

    def _remove(self, k: Any) -> bool:
        """Take a record off, atomically: False when the kernel took it first (then it counted it)."""
        return lookup_and_delete(self.pending.map_fd, bytes(k), self._value_size) is not None

    def _drop_taken(self, k: Any) -> None:
        """Remove a taken record of an owner that is gone, unless the kernel just reused it."""
        last = lookup_and_delete(self.pending.map_fd, bytes(k), self._value_size)
        if last is not None:
            value = self.pending.Leaf.from_buffer_copy(last)
            if value.ts:  # a new signal for a new owner of that id: put it back
                self.pending[k] = value

    def _forget_exit(self, raw_key: bytes, ts: int) -> None:
        """Drop a settled exit record, unless the owner's id exited again meanwhile (a newer record)."""
        last = lookup_and_delete(self.exits.map_fd, raw_key, self._exit_size)
        if last is not None:
            value = self.exits.Leaf.from_buffer_copy(last)
            if value.ts != ts:
                self.exits[self.exits.Key.from_buffer_copy(raw_key)] = value

    def _forget_queues(self, exits: dict, live_owners: set[int]) -> None:
        """Realtime queue counters of lists that are gone (empty, and their owner exited or vanished)."""
        for k, q in self.rt_queues.items_lookup_batch():
            if q.head != q.tail or k.owner in live_owners:
                continue
            if (k.owner, k.shared, 0) in exits or start_ticks(k.owner) is None:
                self.rt_queues.pop(k, None)


class _StatusMasks:
    """Pending signal masks from /proc, read once per owner per collection, at most
    MAX_STATUS_READS; past it, the next collection starts where this one stopped."""

    def __init__(self, start: int) -> None:
        self._masks: dict[int, tuple[int, int, int] | None] = {}
        self._unknown: set[int] = set()
        self._reads = 0
        self._start = start
        self._skip = start  # owners passed over first (the round robin's position)
        self.next_start = 0  # where the next collection starts: 0 unless the budget ran out
        # /proc's start times count from boot (suspends included); the records' from CLOCK_MONOTONIC.
        self._boot_to_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def pending(self, owner: int, shared: int, sig: int, queued_ns: int) -> bool | str | None:
        """Whether the signal is on that list now; _GONE when the owner has exited (or the id
        is another task's now); None when not known this time (over budget)."""
        if owner in self._unknown:
            return None
        if owner not in self._masks:
            if self._skip > 0 or self._reads >= MAX_STATUS_READS:
                self._skip -= 1
                if self._reads >= MAX_STATUS_READS:
                    self.next_start = self._start + self._reads
                self._unknown.add(owner)
                return None
            self._reads += 1
            self._masks[owner] = pending_masks(owner)
        masks = self._masks[owner]
        if masks is None:
            return _GONE
        own, shared_mask, started_ns, _tracer, _stopped = masks
        if started_ns - self._boot_to_mono > queued_ns + 20_000_000:  # another task has this id now
            return _GONE
        return bool((shared_mask if shared else own) >> (sig - 1) & 1)

    def tracer(self, owner: int) -> int:
        """The pid tracing the owner when its status was read (0: none, or not read)."""
        masks = self._masks.get(owner)
        return masks[3] if masks else 0

    def held_by_tracer(self, owner: int) -> bool:
        """Traced and in a tracing stop: a signal off its list may be in its tracer's hands."""
        masks = self._masks.get(owner)
        return bool(masks and masks[3] and masks[4])
