"""Sources: what the app, the runner and every sink need of anything that produces batches.

A source is live BPF (sigtop.live.collector.BpfSource) or a recording
(sigtop.sources.replay.ReplaySource). Consumers are typed against `Source`
and never import a source's own module, so the UI and every sink run without
the live side (and without root or BCC); `open_source` is the one place a
command gets its source from. `BatchQueue` is the hand-off from a source's
thread to the asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sigtop.wire import Batch

QUEUE_BATCHES = 32

Deliver = Callable[[Batch], None]


class SourceError(Exception):
    """A source could not start (or went on no further), with a one-line message for the user."""


@runtime_checkable
class Source(Protocol):
    """Anything that produces batches for the model.

    Lifecycle: attach() (may raise SourceError, with one line), start(loop,
    deliver) (deliver is then called on the loop's thread with each batch,
    the last one marked `final`), stop(), detach(). stop and detach are
    safe to call twice.

    A source that fails after start sets `error` (one line) and delivers a
    final batch: consumers end with that message and a non-zero exit.
    """

    name: str  # what the header shows: a file name for a recording, "" for live
    live: bool  # True: the kernel, now; False: a recording being replayed
    error: str | None  # set when the source failed after start

    def attach(self) -> None: ...
    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None: ...
    def stop(self) -> None: ...
    def detach(self) -> None: ...


@dataclass
class BatchQueue:
    """The hand-off from a source to the event loop: bounded, merging instead of dropping.

    Counts are deltas, so a batch may never be dropped: when the consumer
    falls behind, a new batch is merged into the newest queued one.
    """

    maxsize: int = QUEUE_BATCHES
    queue: asyncio.Queue[Batch] = field(init=False)
    _spill: Batch | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue()

    def put(self, batch: Batch) -> None:
        """Called on the loop's thread (a source posts through loop.call_soon_threadsafe)."""
        if self._spill is not None:
            self._spill.merge(batch)
            batch = self._spill
        if self.queue.qsize() >= self.maxsize and not batch.final:
            self._spill = batch
            return
        self._spill = None
        self.queue.put_nowait(batch)

    async def get(self) -> Batch:
        return await self.queue.get()

    def get_all(self) -> list[Batch]:
        batches = []
        while not self.queue.empty():
            batches.append(self.queue.get_nowait())
        return batches


def open_source(
    recording: str | None,
    *,
    pids: tuple[int, ...] = (),
    signals: tuple[int, ...] = (),
    details: bool = True,
    interval_s: float = 1.0,
    follow_fates: bool = True,
    speed: float = 0.0,
    notes: list[str] | None = None,
) -> Source:
    """The live kernel, or the recording at `recording` (played at `speed`; 0: at once).

    The live side is imported only here and only when asked for, so a
    command over a recording needs neither root nor BCC."""
    if recording is not None:
        from sigtop.sources.replay import ReplaySource

        return ReplaySource.open(recording, speed=speed, notes=notes)
    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig

    return BpfSource(
        TraceConfig(pids=pids, signals=signals, details=details, interval_s=interval_s, follow_fates=follow_fates)
    )
