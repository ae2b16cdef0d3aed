"""A recording played back as a source: the same batches, to the same app and sinks, no root, no BPF."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from sigtop.contract import Deliver
from sigtop.recording import RecordingError, RecordingReader, read_recording
from sigtop.wire import Batch

# A recording larger than this is read as it is played (its first screen within a second, memory
# bounded by the view); a smaller one is read whole first, so a bad line fails before the screen.
STREAM_FROM_BYTES = 8 << 20
CHUNK_BATCHES = 32  # read per step off the loop's thread ...
CHUNK_CHARS = 4 << 20  # ... or fewer, once this much is read (a storm's batch line is 50 MB)


class ReplaySource:
    """Plays a recording's batches at their recorded pace (times `speed`; 0: all at once): a Source."""

    live = False
    scope = ""  # a recording holds what its recorder traced

    def __init__(self, batches: list[Batch], speed: float = 1.0, name: str = "") -> None:
        self.batches = batches
        self.speed = speed
        self.name = name
        self.attach_s = 0.0
        self.error: str | None = None  # a streamed recording's bad line, found as it is played
        self._task: asyncio.Task[None] | None = None
        self._reader: RecordingReader | None = None  # streaming: batches come from here as played
        self._notes: list[str] | None = None
        # Whether the consumer can take another batch now (the app's model thread sets it): a
        # streamed recording never runs ahead of the fold by more than a few batches.
        self.room: Callable[[], bool] = lambda: True

    @classmethod
    def open(cls, path: str, speed: float = 0.0, notes: list[str] | None = None) -> ReplaySource:
        """A recording's replay; RecordingError (one line, naming the line at fault) if it is not one.
        A large one is streamed: its header is checked now, each line as it is played."""
        try:
            large = os.path.getsize(path) > STREAM_FROM_BYTES
        except OSError:
            large = False  # read_recording says what is wrong
        if not large:
            _head, batches = read_recording(path, notes)
            return cls(batches, speed=speed, name=path)
        return cls.stream(path, speed=speed, notes=notes)

    @classmethod
    def stream(cls, path: str, speed: float = 0.0, notes: list[str] | None = None) -> ReplaySource:
        """A recording read as it is played: the header now (RecordingError if it is none), each
        line as it comes (a bad one ends the replay with `error`, after what came before it)."""
        source = cls([], speed=speed, name=path)
        source._reader = RecordingReader(path)
        source._notes = notes
        return source

    def attach(self) -> None:
        """Nothing to attach: a recording needs no kernel."""

    def abandon(self) -> None:
        """Nothing to release."""

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._task = loop.create_task(self._play(deliver))

    async def _play(self, deliver: Deliver) -> None:
        if self._reader is not None:
            await self._stream(self._reader, deliver)
            return
        for batch in self.batches:
            if self.speed > 0:
                await asyncio.sleep(batch.interval_s / self.speed)
            deliver(batch)
        if not self.batches or not self.batches[-1].final:
            # A recording cut short (or of a run killed): its consumers still see it end.
            deliver(Batch(ts=self.batches[-1].ts if self.batches else 0.0, interval_s=0.0, final=True))

    async def _stream(self, reader: RecordingReader, deliver: Deliver) -> None:
        last: Batch | None = None

        def read() -> tuple[list[Batch], str | None]:
            chunk: list[Batch] = []
            try:
                for batch in reader.batches(self._notes, CHUNK_BATCHES, CHUNK_CHARS):
                    chunk.append(batch)
            except RecordingError as exc:
                return chunk, str(exc)
            return chunk, None

        try:
            while self.error is None:
                while not self.room():  # the fold is behind: read no further ahead
                    await asyncio.sleep(0.005)
                chunk, self.error = await asyncio.to_thread(read)
                for batch in chunk:
                    if self.speed > 0:
                        await asyncio.sleep(batch.interval_s / self.speed)
                    deliver(batch)
                    last = batch
                if not chunk:
                    break
        finally:
            reader.close()
        if last is None or not last.final:
            deliver(Batch(ts=last.ts if last else 0.0, interval_s=0.0, final=True))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def detach(self) -> None:
        self.stop()
        if self._reader is not None:
            self._reader.close()
