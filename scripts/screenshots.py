"""Make the README's screenshots from the real app over a real capture.

1. Capture (root): `sigtop record` around scripts/workload.py, saved as
   screenshots/capture.jsonl and tests/data/recording.jsonl (the UI tests
   and snapshot tests replay it).
2. Screenshots (no root): the app replays the capture headlessly and saves
   SVGs of the main tables, a sorted view, a filtered view and a drill-down.

    python scripts/screenshots.py            # capture, then screenshots
    python scripts/screenshots.py --replay   # screenshots from the existing capture
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "screenshots" / "capture.jsonl"
TEST_DATA = ROOT / "tests" / "data" / "recording.jsonl"
SIZE = (160, 42)


def capture(seconds: float = 4.0) -> None:
    recorder = subprocess.Popen(
        [sys.executable, "-m", "sigtop.cli", "record", "-o", str(CAPTURE), "--force", "--interval", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = recorder.stderr.readline()
        if "Tracing" not in line:
            raise SystemExit(f"recorder did not start: {line.strip()}")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "workload.py"), str(seconds)], check=True)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    TEST_DATA.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(CAPTURE, TEST_DATA)
    print(f"captured {CAPTURE} ({CAPTURE.stat().st_size // 1024} KiB)")


CHILDREN_DATA = ROOT / "tests" / "data" / "children.jsonl"
SPAWNER = """
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(15, b"supervisor")
sys.stdin.readline()
for _ in range(30):  # one-off children of one name: 30 SIGCHLD rows, folded into one by the view
    subprocess.run(["/bin/true"], check=True)
subprocess.run(["/bin/sleep", "0.2"], check=True)
os.kill(os.getpid(), 0)
print("done", flush=True)
"""


def capture_children() -> None:
    """A supervisor that starts 30 short-lived children of one name, recorded (root): the UI tests'
    tests/data/children.jsonl."""
    spawner = subprocess.Popen(
        [sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    recorder = subprocess.Popen(
        [sys.executable, "-m", "sigtop.cli", "record", "-o", str(CHILDREN_DATA), "--force", "--interval", "0.5",
         "-p", str(spawner.pid), "--follow"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = recorder.stderr.readline()
        if "Tracing" not in line:
            raise SystemExit(f"recorder did not start: {line.strip()}")
        spawner.stdin.write("go\n")
        spawner.stdin.flush()
        spawner.stdout.readline()
        spawner.wait(timeout=30)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)
    finally:
        for child in (spawner, recorder):
            if child.poll() is None:
                child.kill()
                child.wait()
    print(f"captured {CHILDREN_DATA} ({CHILDREN_DATA.stat().st_size // 1024} KiB)")


async def shoot() -> None:
    from sigtop.recording import read_recording
    from sigtop.sources.replay import ReplaySource
    from sigtop.ui.app import SigtopApp

    _, batches = read_recording(CAPTURE)
    views = [
        ("flows", []),
        ("sorted-by-signal", ["ctrl+p", *"sort by SIGNAL", "pause", "enter"]),  # the palette
        ("filtered-by-pid", None),
        ("flow-detail", ["enter"]),
        ("signalfd", ["2"]),
        ("sigreturn", ["3"]),
        ("sigreturn-detail", ["3", "enter"]),
        ("help", ["question_mark"]),
        # The README's questions, answered by the app (the first two while the workload still
        # runs: the last batch has its processes' ends).
        ("why-no-sigterm", ["slash", *"sig:TERM", "enter"], -1),
        ("why-no-sigterm-detail", ["slash", *"sig:TERM comm:stuck", "enter", "enter"], -1),
        ("deaths", ["4"]),
        ("alerts", ["a"]),
    ]
    out = ROOT / "screenshots"
    for name, keys, *upto in views:
        shown = batches[: upto[0]] if upto else batches
        app = SigtopApp(ReplaySource(shown, speed=0, name=str(CAPTURE)))
        async with app.run_test(size=SIZE) as pilot:
            await app.settled()
            if keys is None:  # filter by the busiest flow's target pid
                top = max(app.model.flows.values(), key=lambda r: r.count)
                await pilot.press("slash", *f"pid:{top.key.target_pid}", "enter")
            else:
                for key in keys:
                    if key == "pause":  # the palette's search runs on its own
                        await pilot.pause(0.5)
                        continue
                    await pilot.press(key)
                    await app.settled()
                    if key == "enter":  # a drill-down: built on the model's thread
                        for _ in range(200):
                            if app.screen is not app._main:
                                break
                            await pilot.pause(0.01)
            await app.settled()
            await pilot.pause()
            app.save_screenshot(f"{name}.svg", str(out))
        print(f"screenshots/{name}.svg")


CONTAINER_ID = "4f2a9c1b7e3d" + "0" * 52


async def shoot_containers() -> None:
    """The live app (real BPF, headless) over real cgroups named as Docker and systemd name them:
    a 'health checker' service probing and signalling an 'nginx' container. Needs root."""
    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig
    from sigtop.ui.app import SigtopApp

    mounts = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
    root = next(p for p in mounts if (p / "cgroup.procs").exists())
    made = []
    demo = "sigtop-demo.slice"
    cgroups = (
        demo,
        f"{demo}/docker-{CONTAINER_ID}.scope",
        f"{demo}/system.slice",
        f"{demo}/system.slice/healthcheck.service",
    )
    for relative in cgroups:
        (root / relative).mkdir(exist_ok=True)
        made.append(root / relative)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import ctypes, signal, time\nctypes.CDLL(None).prctl(15, b'nginx')\n"
         "signal.signal(signal.SIGHUP, lambda *a: None)\n"
         "signal.signal(signal.SIGUSR2, signal.SIG_IGN)\ntime.sleep(30)"],
    )  # fmt: skip
    checker_code = (
        "import ctypes, os, sys, time\nctypes.CDLL(None).prctl(15, b'healthcheck')\nsys.stdin.readline()\n"
        "pid = int(sys.argv[1])\nfor i in range(40):\n    os.kill(pid, 0)\n    os.kill(pid, 12)\n"
        "    if i % 10 == 0: os.kill(pid, 1)\n    time.sleep(0.02)\n"
    )
    checker = subprocess.Popen([sys.executable, "-c", checker_code, str(worker.pid)], stdin=subprocess.PIPE)
    try:
        (made[1] / "cgroup.procs").write_text(str(worker.pid))
        (made[3] / "cgroup.procs").write_text(str(checker.pid))
        source = BpfSource(TraceConfig(pids=(worker.pid,), interval_s=0.5))
        source.attach()
        app = SigtopApp(source, refresh_s=0.5)
        async with app.run_test(size=(200, 16)) as pilot:
            checker.stdin.write(b"go\n")
            checker.stdin.flush()
            await pilot.pause(2.5)
            await app.settled()
            await pilot.pause()
            app.save_screenshot("containers.svg", str(ROOT / "screenshots"))
        print("screenshots/containers.svg")
    finally:
        for proc in (checker, worker):
            proc.kill()
            proc.wait()
        for path in reversed(made):
            path.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replay", action="store_true", help="reuse the existing capture")
    args = parser.parse_args()
    if not args.replay:
        capture()
        capture_children()
        asyncio.run(shoot_containers())
    asyncio.run(shoot())


if __name__ == "__main__":
    main()
