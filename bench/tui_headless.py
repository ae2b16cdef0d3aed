"""The live TUI, headless at 160x50, for the benchmark: prints frame times, key latency and event stats at exit.

Frame: the UI's own work per snapshot (drawing it). Key latency: a key sent
the way the terminal driver sends one (I, invert the sort), timed until the
table drawn on screen is sorted the other way: the action, the model's thread
sorting for it, and the drawing. Pilot's own `press` would also wait for the
whole process to go idle, which it never does in a storm.
"""

import asyncio
import json
import signal
import statistics
import sys
import time

from sigtop import heap
from sigtop.live.collector import BpfSource
from sigtop.live.config import TraceConfig


async def main() -> None:
    heap.hand_memory_back()  # as `sigtop` does first
    source = BpfSource(TraceConfig(interval_s=1.0))
    source.attach()  # then the UI, as `sigtop` does
    print("Attached", file=sys.stderr, flush=True)
    from textual import events

    from sigtop.ui.app import SigtopApp

    app = SigtopApp(source, refresh_s=1.0)
    frames: list[float] = []
    draw = app.watch_snapshot
    answered = asyncio.Event()
    wanted: list[bool] = []  # the sort direction a pressed key asked for

    def timed(snapshot) -> None:
        start = time.perf_counter()
        draw(snapshot)
        frames.append(time.perf_counter() - start)
        if snapshot is not None and wanted and snapshot.table.descending == wanted[-1]:
            answered.set()

    app.watch_snapshot = timed
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    key_latency = []
    async with app.run_test(size=(160, 50)) as pilot:
        print("Tracing", file=sys.stderr, flush=True)
        presses = 0
        while not stop.is_set():
            await asyncio.sleep(0.25)
            answered.clear()
            wanted.append(not app.settings.sort(app.active)[1])
            start = time.perf_counter()
            key = events.Key("I", "I")
            key.set_sender(app)
            app._driver.send_message(key)
            await asyncio.wait_for(answered.wait(), 30)
            presses += 1
            if presses > 2:  # not the start-up frames
                key_latency.append(time.perf_counter() - start)
        await pilot.press("q")
    source.detach()
    print(
        json.dumps(
            {
                "frame_ms_median": statistics.median(frames) * 1000 if frames else None,
                "frame_ms_max": max(frames) * 1000 if frames else None,
                "key_ms_max": max(key_latency) * 1000 if key_latency else None,
                "key_ms_median": statistics.median(key_latency) * 1000 if key_latency else None,
                "events_sent": app.model.stats.events_sent,
                "events_lost": app.model.stats.events_lost,
                "events_dropped_in_userspace": app.model.stats.events_dropped,
            }
        )
    )


asyncio.run(main())
