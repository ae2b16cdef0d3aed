"""The delivery matcher: pairs each generated signal's event with the delivery that took it.

Where the kernel does not follow fates itself (no BTF, or a recording made
without), this is how a signal's generate-to-deliver latency and the thread
that took it are known: a standard signal is pending once at most per
process, realtime ones queue in order, so deliveries of (process, signal)
take the generated ones first in, first out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from sigtop.lru import BoundedLRU

# Generated signals waiting for their delivery, by (process, signal).
MAX_PENDING_DELIVERIES = 5_000
PENDING_PER_KEY = 64

# A generated event of one batch, as a list for speed: [index in its batch, ts as the
# source gives it, latency in ns or None, the SignalEvent once decoded, the taking thread].
Slot = list
INDEX, TS, LATENCY, EVENT, TAKEN_BY = range(5)


def slot(index: int, ts: float) -> Slot:
    return [index, ts, None, None, 0]


class DeliveryMatcher:
    def __init__(self) -> None:
        self._waiting: BoundedLRU[tuple[int, int], deque[Slot]] = BoundedLRU(MAX_PENDING_DELIVERIES)
        # Called with (signal, latency in ns) for every delivery matched (the exporter's histogram).
        self.on_latency: Callable[[int, int], None] | None = None

    def queued(self, process: int, sig: int, generated: Slot) -> None:
        """A signal was queued for `process`."""
        queue = self._waiting.get((process, sig))
        if queue is None:
            queue = deque(maxlen=PENDING_PER_KEY)
            self._waiting.put((process, sig), queue)
        queue.append(generated)

    def delivered(self, process: int, sig: int, ts: float, tid: int, ns_per_unit: float) -> None:
        """Thread `tid` of `process` took `sig` at `ts`: the oldest waiting one is what it took."""
        queue = self._waiting.get((process, sig))
        if not queue:
            return
        generated = queue.popleft()
        latency = generated[LATENCY] = max(0, round((ts - generated[TS]) * ns_per_unit))
        if self.on_latency is not None:
            self.on_latency(sig, latency)
        generated[TAKEN_BY] = tid  # the thread that took it (a group signal: any of them)
        event = generated[EVENT]
        if event is not None:  # decoded in an earlier batch: its row shows it now
            event.latency_ns = latency
            event.taken_tid = tid

    def clear(self) -> None:
        self._waiting.clear()
