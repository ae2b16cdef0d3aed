"""A recording played back as a source: the same batches, to the same app and sinks, no root, no BPF."""

from __future__ import annotations

import asyncio

from sigtop.contract import Deliver
from sigtop.recording import read_recording
from sigtop.wire import Batch


class ReplaySource:
    """Plays a recording's batches at their recorded pace (times `speed`; 0: all at once): a Source."""

    live = False
    scope = ""  # a recording holds what its recorder traced

    def __init__(self, batches: list[Batch], speed: float = 1.0, name: str = "") -> None:
        self.batches = batches
        self.speed = speed
        self.name = name
        self.attach_s = 0.0
        self.error: str | None = None  # a recording read whole before replay cannot fail later
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, path: str, speed: float = 0.0, notes: list[str] | None = None) -> ReplaySource:
        """A recording's replay; RecordingError (one line, naming the line at fault) if it is not one."""
        _head, batches = read_recording(path, notes)
        return cls(batches, speed=speed, name=path)

    def attach(self) -> None:
        """Nothing to attach: a recording needs no kernel."""

    def abandon(self) -> None:
        """Nothing to release."""

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._task = loop.create_task(self._play(deliver))

    async def _play(self, deliver: Deliver) -> None:
        for batch in self.batches:
            if self.speed > 0:
                await asyncio.sleep(batch.interval_s / self.speed)
            deliver(batch)
        if not self.batches or not self.batches[-1].final:
            # A recording cut short (or of a run killed): its consumers still see it end.
            deliver(Batch(ts=self.batches[-1].ts if self.batches else 0.0, interval_s=0.0, final=True))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def detach(self) -> None:
        self.stop()
