"""A recording played back as a source: the same batches, to the same app and sinks, no root, no BPF."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

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
        self._reader_used = False
        # Whether the consumer can take another batch now (the app's model thread sets it): a
        # streamed recording never runs ahead of the fold by more than a few batches.
        self.room: Callable[[], bool] = lambda: True
        # The transport (the live view's space, [ and ], and a seek to a time): a replay that is
        # `seekable` stays ready for a step back or a seek after its end.
        self.seekable = False
        self.paused = False
        self.position = 0  # batches delivered since the start (or the last move back)
        self.at_ts = 0.0  # the recorded time of the last one delivered
        self.total: int | None = len(batches) if batches else None  # known once read whole (or played to the end)
        self.on_reset: Callable[[], None] = lambda: None  # the consumer forgets what it folded (a move back)
        self.on_moved: Callable[[], None] = lambda: None  # a step or a seek has delivered all it will
        self._step_to: int | None = None  # while paused: deliver until this many are delivered
        self._move: tuple[str, float] | None = None  # ("batch", n) or ("time", ts): replay from the start to it

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

    # ---- the transport ------------------------------------------------------------------

    def pause(self, paused: bool) -> None:
        """Hold the replay where it is (the recorded pace resumes from there), or go on."""
        self.paused = paused
        if not paused:
            self._step_to = None

    def step(self, n: int) -> None:
        """n batches on (n > 0) or back (n < 0), paused there. Back means replaying from the start up to
        there, at once (counts are cumulative: nothing else can undo a batch)."""
        self.paused = True
        if n > 0:
            self._step_to = max(self._step_to or 0, self.position) + n
        elif n < 0:
            self._move = ("batch", max(0, self.position + n))

    def seek(self, ts: float) -> None:
        """Paused after the last batch recorded at or before `ts` (wall-clock seconds)."""
        self.paused = True
        self._move = ("time", ts)

    async def _play(self, deliver: Deliver) -> None:
        move: tuple[str, float] | None = None
        while True:
            ended = await self._play_from_start(deliver, move)
            if ended is None:
                return  # a bad line ended it, or the replay is not seekable
            move = ended

    async def _play_from_start(self, deliver: Deliver, move: tuple[str, float] | None) -> tuple[str, float] | None:
        """Deliver from the first batch: at once up to `move`, then paced, paused and stepped as told.
        The next move, once one is asked for (also after the end); None when the replay is over."""
        if move is not None:
            self.on_reset()
        self.position, self.at_ts = 0, 0.0
        last: Batch | None = None
        catching_up = move is not None
        async for batch in self._from_start():
            if catching_up and (self.position < move[1] if move[0] == "batch" else batch.ts <= move[1]):
                deliver(batch)
                self.position, self.at_ts, last = self.position + 1, batch.ts, batch
                continue
            if catching_up:
                catching_up = False
                self._step_to = None
                self.on_moved()
            while self.paused and not (self._step_to is not None and self.position < self._step_to):
                if self._move is not None:
                    return self._take_move()
                await asyncio.sleep(0.02)
            if self._move is not None:
                return self._take_move()
            if self.speed > 0 and not self.paused:
                await asyncio.sleep(batch.interval_s / self.speed)
            deliver(batch)
            self.position, self.at_ts, last = self.position + 1, batch.ts, batch
            if self.paused:
                self.on_moved()  # one step: shown at once
        if catching_up:
            self.on_moved()  # the move went past the end: it stops there
        self.total = self.position
        if last is None or not last.final:
            # A recording cut short (or of a run killed): its consumers still see it end.
            deliver(Batch(ts=last.ts if last else 0.0, interval_s=0.0, final=True))
        if not self.seekable or self.error is not None:
            return None
        while self._move is None:  # at the end: a step back or a seek may still come
            await asyncio.sleep(0.05)
        return self._take_move()

    def _take_move(self) -> tuple[str, float]:
        move, self._move = self._move, None
        assert move is not None
        return move

    async def _from_start(self) -> AsyncIterator[Batch]:
        if self._reader is None:  # read whole: the batches are here
            for batch in self.batches:
                yield batch
            return
        first = not self._reader_used
        if not first:  # a move back reads the file again (its notes were said the first time)
            self._reader.close()
            self._reader = RecordingReader(self.name)
        self._reader_used = True
        reader, notes = self._reader, self._notes if first else None

        def read() -> tuple[list[Batch], str | None]:
            chunk: list[Batch] = []
            try:
                for batch in reader.batches(notes, CHUNK_BATCHES, CHUNK_CHARS):
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
                    yield batch
                if not chunk:
                    break
        finally:
            reader.close()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def detach(self) -> None:
        self.stop()
        if self._reader is not None:
            self._reader.close()
