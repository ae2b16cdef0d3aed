"""Recordings: what a source produced, one JSON document per line, and their replay.

Line 1 is a header; each further line is one `Batch`. A replay feeds the
same batches to the same app, with no root and no BPF.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import IO, Any

from sigtop.records import Batch
from sigtop.source import Deliver, SourceError

FORMAT = "sigtop-recording"
VERSION = 1


class RecordingError(SourceError, ValueError):
    """A recording that cannot be read, with the line at fault."""


def header(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "started": time.time(),
        "host": platform.node(),
        "kernel": os.uname().release,
        "config": config,
    }


class RecordingWriter:
    def __init__(self, out: IO[str], config: dict[str, Any]) -> None:
        self.out = out
        self.batches = 0
        self._write(header(config))

    def _write(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self.out.flush()

    def write(self, batch: Batch) -> None:
        self._write(batch.to_json())
        self.batches += 1


def read_recording(path: str | Path) -> tuple[dict[str, Any], list[Batch]]:
    """Parse a whole recording, or raise RecordingError naming the bad line."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"cannot read recording {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines:
        raise RecordingError(f"{path}: empty file, not a sigtop recording")
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError:
        raise RecordingError(f"{path}:1: not a sigtop recording (no header)") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise RecordingError(f"{path}:1: not a sigtop recording (no header)")
    if head.get("version") != VERSION:
        raise RecordingError(f"{path}:1: recording version {head.get('version')} is not supported")
    batches = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if not line.endswith("\n"):
            raise RecordingError(f"{path}:{number}: truncated line (the recording was cut off)")
        try:
            batches.append(Batch.from_json(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise RecordingError(f"{path}:{number}: corrupt line ({exc.msg} at column {exc.colno})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordingError(f"{path}:{number}: corrupt batch ({type(exc).__name__}: {exc})") from None
    return head, batches


class ReplaySource:
    """Plays a recording's batches at their recorded pace (times `speed`): a `sigtop.source.Source`."""

    live = False

    def __init__(self, batches: list[Batch], speed: float = 1.0, name: str = "") -> None:
        self.batches = batches
        self.speed = speed
        self.name = name
        self.attach_s = 0.0
        self.error: str | None = None  # a recording read whole before replay cannot fail later
        self._task: asyncio.Task[None] | None = None

    def attach(self) -> None:
        """Nothing to attach: a recording needs no kernel."""

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._task = loop.create_task(self._play(deliver))

    async def _play(self, deliver: Deliver) -> None:
        for batch in self.batches:
            if self.speed > 0:
                await asyncio.sleep(batch.interval_s / self.speed)
            deliver(batch)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def detach(self) -> None:
        self.stop()
