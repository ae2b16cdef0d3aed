"""The source contract: what the app, the runner and every sink need of anything that produces batches.

Live BPF (sigtop.live.collector.BpfSource) and a recording
(sigtop.sources.replay.ReplaySource) both keep it; consumers are typed
against `Source` and never import a source's own module. `BatchQueue` is the
hand-off from a source's thread to the asyncio loop.
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
    scope: str  # what the source traces at all ("" everything; live: --pid/-s, fixed for the run)

    def attach(self) -> None: ...
    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None: ...
    def stop(self) -> None: ...
    def detach(self) -> None: ...
    # The process is about to end at once (os._exit) without stop() or detach(): make that end fast.
    def abandon(self) -> None: ...


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
