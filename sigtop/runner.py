"""Run a source into a sink until a duration passes, the source ends, or the user interrupts.

Headless: every command but the live view is a source composed with a sink
(a model for the report, a recording, a stream, the exporter's counters) run here.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from sigtop.contract import BatchQueue, Source, SourceError
from sigtop.model import SignalModel
from sigtop.wire import Batch


async def trace(
    source: Source,
    duration_s: float | None,
    on_batch: Callable[[Batch], None],
    announce: bool = True,
    stop_when: Callable[[], bool] | None = None,
    stop_at_end: bool = True,
    on_start: Callable[[Callable[[], None]], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Attach, announce, feed every batch to on_batch until done (or stop_when() says so); always detach.

    stop_at_end=False keeps going after a recording's last batch (an exporter serving its
    counts) until the duration, or a signal, ends it. on_start is handed a stop() that any
    thread may call (a stream whose reader went away); on_stopping is told when the run ends,
    before the last batches come (a sink with a backlog then stops writing within its ending budget)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    if on_start is not None:
        on_start(lambda: loop.call_soon_threadsafe(done.set))
    # SIGHUP too: a batch whose terminal closed prints its results like on Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, done.set)
    queue = BatchQueue()
    try:
        source.attach()
        source.start(loop, queue.put)
        if announce and source.live:
            print("Tracing signals... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        deadline = None if duration_s is None else loop.time() + duration_s
        waiter = asyncio.ensure_future(done.wait())
        while not done.is_set():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            getter = asyncio.ensure_future(queue.get())
            finished, _ = await asyncio.wait({getter, waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if getter not in finished:
                getter.cancel()
                continue
            batch = getter.result()
            on_batch(batch)
            if batch.final and (stop_at_end or source.error):  # a replay ran out, or the collector failed
                break
            if stop_when is not None and stop_when():
                break
        waiter.cancel()
        if on_stopping is not None:
            on_stopping()
        # The poller posts its last collection before it exits, so once stop()
        # has joined it, that batch is queued.
        await asyncio.to_thread(source.stop)
        await asyncio.sleep(0)
        for batch in queue.get_all():
            on_batch(batch)
        if source.error:
            raise SourceError(source.error)
    finally:
        source.stop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def trace_into_model(
    source: Source,
    duration_s: float | None,
    model: SignalModel,
    announce: bool = True,
    stop_when: Callable[[], bool] | None = None,
) -> None:
    asyncio.run(trace(source, duration_s, model.apply, announce, stop_when))
