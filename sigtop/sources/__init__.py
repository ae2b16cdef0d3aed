"""Sources: what the app, the runner and every sink need of anything that produces batches.

A source is live BPF (sigtop.live.collector.BpfSource) or a recording
(sigtop.sources.replay.ReplaySource). Consumers are typed against `Source`
and never import a source's own module, so the UI and every sink run without
the live side (and without root or BCC); `open_source` is the one place a
command gets its source from. `BatchQueue` is the hand-off from a source's
thread to the asyncio loop.
"""

from __future__ import annotations

from sigtop.contract import BatchQueue, Deliver, Source, SourceError

__all__ = ["BatchQueue", "Deliver", "Source", "SourceError", "open_source"]


def open_source(
    recording: str | None,
    *,
    pids: tuple[int, ...] = (),
    follow: bool = False,
    signals: tuple[int, ...] = (),
    details: bool = True,
    interval_s: float = 1.0,
    follow_fates: bool = True,
    light: bool = False,
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
        TraceConfig(
            pids=pids,
            follow=follow,
            signals=signals,
            details=details,
            interval_s=interval_s,
            follow_fates=follow_fates,
            light=light,
        )
    )
