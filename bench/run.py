"""sigtop's benchmark: overhead and exactness against bare, the BPF floor and bpftrace.

One run, rounds interleaved (every configuration once per round), medians
over rounds. Each traced run of a load is paired with a bare run of it right
after the tracer stops, and ratios are medians of those pairs: this VM's
speed drifts by tens of percent over minutes. Prints a table and writes
bench/results/latest.json.

    make bench                       # default sizes
    make bench ARGS="--rounds 5"
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from soak import render_soak, run_soak, soak_verdicts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
LOADS = {"handled": 200_000, "ignored": 400_000, "getppid": 2_000_000}
# The detail-event target: a sustained storm at this rate, for this long, under the live TUI.
SUSTAINED_RATE, SUSTAINED_S = 100_000, 5

BPFTRACE = """
tracepoint:signal:signal_generate, tracepoint:signal:signal_deliver,
tracepoint:syscalls:sys_enter_kill, tracepoint:syscalls:sys_exit_kill,
tracepoint:syscalls:sys_enter_tkill, tracepoint:syscalls:sys_exit_tkill,
tracepoint:syscalls:sys_enter_tgkill, tracepoint:syscalls:sys_exit_tgkill,
tracepoint:syscalls:sys_enter_rt_sigqueueinfo, tracepoint:syscalls:sys_exit_rt_sigqueueinfo,
tracepoint:syscalls:sys_enter_rt_tgsigqueueinfo, tracepoint:syscalls:sys_exit_rt_tgsigqueueinfo,
tracepoint:syscalls:sys_enter_pidfd_send_signal, tracepoint:syscalls:sys_exit_pidfd_send_signal,
tracepoint:syscalls:sys_enter_signalfd, tracepoint:syscalls:sys_exit_signalfd,
tracepoint:syscalls:sys_enter_signalfd4, tracepoint:syscalls:sys_exit_signalfd4,
tracepoint:syscalls:sys_enter_rt_sigreturn
{ @[probe, pid, comm] = count(); }
"""


RELEASE_WAIT_S = 5.0  # at most this long for a stopped tracer's programs to be freed


def bpf_program_ids() -> set[int]:
    """Every BPF program the kernel holds now (BPF_PROG_GET_NEXT_ID)."""
    import ctypes

    from sigtop.live.bpfsys import ATTR_SIZE, bpf

    ids: set[int] = set()
    at = 0
    while True:
        attr = ctypes.create_string_buffer(at.to_bytes(4, "little"), ATTR_SIZE)
        try:
            bpf(11, attr)  # BPF_PROG_GET_NEXT_ID: {start_id, next_id}
        except OSError:
            return ids  # ENOENT: none after `at`
        at = int.from_bytes(attr.raw[4:8], "little")
        ids.add(at)


def wait_released(before: set[int]) -> float:
    """Wait until the programs a tracer loaded are freed: a tracer that has exited may still hold
    its syscall tracepoints for a second while the kernel releases them (sigtop's holder child,
    RCU grace periods), and every syscall of a "bare" run then would still pay for them."""
    started = time.monotonic()
    while bpf_program_ids() - before and time.monotonic() - started < RELEASE_WAIT_S:
        time.sleep(0.02)
    return time.monotonic() - started


def build_loads() -> Path:
    out = Path(tempfile.gettempdir()) / "sigtop-bench-loads"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "loads.c")], check=True)
    return out


class Tracer:
    """A configuration: a process started before the loads, stopped after."""

    def __init__(
        self,
        name: str,
        argv: list[str] | None,
        ready: str = "Tracing",
        attached: str = "",
        env: dict | None = None,
        per_event: bool = False,
    ) -> None:
        # `attached` marks the probes in place (timed), `ready` the tracer taking load
        self.name, self.argv, self.ready, self.attached = name, argv, ready, attached or ready
        self.env = env
        # A per-event peer prints a line per signal: into a file, never a pipe that would fill while
        # nobody reads it and stall the tracer (its losses would then be the bench's doing).
        self.per_event = per_event
        self.output: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.attach_s = 0.0
        self.cpu_start = 0.0
        self.programs_before: set[int] = set()

    def start(self) -> None:
        if self.argv is None:
            return
        self.programs_before = bpf_program_ids()
        started = time.monotonic()
        self.attach_s = 0.0
        env = {**os.environ, **self.env} if self.env else None
        if self.per_event:
            self._start_per_event(started, env)
            return
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        while True:
            line = self.proc.stderr.readline() if self.name != "bpftrace" else self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{self.name} failed to start: {self.proc.stderr.read()}")
            if self.attached in line and not self.attach_s:
                self.attach_s = time.monotonic() - started
            if self.ready in line:
                break
        time.sleep(0.3)
        self.cpu_start = self.cpu()

    def _start_per_event(self, started: float, env: dict | None) -> None:
        fd, name = tempfile.mkstemp(prefix=f"bench-{self.name}-")
        self.output = Path(name)
        with os.fdopen(fd, "w") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while self.ready not in self.output.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} failed to start: {self.output.read_text(errors='replace')[-500:]}")
            time.sleep(0.005)
        self.attach_s = time.monotonic() - started
        time.sleep(0.3)
        self.cpu_start = self.cpu()

    def reported(self, sender: int) -> int:
        """Lines of a per-event peer's output for signals this process sent itself (PID and TPID columns)."""
        if self.output is None:
            return 0
        n = 0
        with open(self.output, errors="replace") as out:
            for line in out:
                fields = line.split()
                if len(fields) >= 5 and fields[1] == fields[4] == str(sender):
                    n += 1
        return n

    def cpu(self) -> float:
        if not self.proc:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def abandon(self) -> None:
        """End the tracer without reading its results (its probes detach as it exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # our own child
            self.proc.wait()
            wait_released(self.programs_before)
        self.proc = None

    def stop(self) -> tuple[str, dict]:
        if not self.proc:
            return "", {}
        facts = {"cpu_s": self.cpu() - self.cpu_start, "rss_mb": self.rss_mb(), "attach_s": self.attach_s}
        self.proc.send_signal(signal.SIGINT)
        if self.per_event:
            self.proc.wait(timeout=60)
            self.proc = None
            facts["release_s"] = wait_released(self.programs_before)
            return "", facts
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child
            self.proc.communicate()
            raise SystemExit(f"{self.name} did not stop on SIGINT within 60 s") from None
        self.proc = None
        facts["release_s"] = wait_released(self.programs_before)  # before the paired bare run
        return out, facts


# The per-event peers (issue #20.6): libbpf-tools' (Debian's libbpf-tools) and bpftrace's own tool.
# Each prints TIME PID COMM SIG TPID RESULT, a line per signal; line-buffered into a file.
PEERS = [
    ("sigsnoop (libbpf-tools)", ["stdbuf", "-oL", "/usr/sbin/sigsnoop"], "TIME"),
    ("killsnoop (libbpf-tools)", ["stdbuf", "-oL", "/usr/sbin/killsnoop"], "TIME"),
    ("killsnoop.bt (bpftrace)", ["bpftrace", "/usr/sbin/killsnoop.bt"], "TIME"),
]


def configurations(peers: bool = True) -> list[Tracer]:
    sigtop = [PY, "-m", "sigtop.cli"]
    others = (
        [Tracer(n, argv, ready=r, per_event=True) for n, argv, r in PEERS if Path(argv[-1]).exists()] if peers else []
    )
    return [
        Tracer("bare", None),
        Tracer("floor", [PY, str(HERE / "floor.py")]),
        Tracer("floor-one-syscall-tp", [PY, str(HERE / "floor.py"), "--one"]),
        Tracer("bpftrace", ["bpftrace", "-e", BPFTRACE], ready="Attaching"),
        Tracer("sigtop-batch", [*sigtop, "batch", "--json"]),
        # Every start compiles (nothing kept): the first start on a kernel and configuration.
        Tracer("sigtop-batch-cold", [*sigtop, "batch", "--json"], env={"SIGTOP_CACHE_DIR": ""}),
        Tracer("sigtop-batch-nofates", [*sigtop, "batch", "--json", "--no-fates"]),
        # No syscall tracepoint: the getppid tax should be bare's (issue #20.3).
        Tracer("sigtop-batch-light", [*sigtop, "batch", "--json", "--light"]),
        tui_tracer(),
        *others,
    ]


def tui_tracer() -> Tracer:
    return Tracer("sigtop-tui", [PY, str(HERE / "tui_headless.py")], attached="Attached")


def tui_facts(out: str) -> dict:
    """What tui_headless printed at exit: its last line, a JSON object."""
    return json.loads(out.strip().splitlines()[-1])


def run_load(binary: Path, mode: str, n: int, *extra: str) -> tuple[float, int, float]:
    started = time.monotonic()
    argv = [str(binary), mode, str(n), *extra]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    return float(out[2]), int(out[3]), time.monotonic() - started


def run_sustained(binary: Path, rate: int, seconds: float) -> dict:
    """The live TUI under a paced storm of ignored kill()s: one detail event each."""
    tui = tui_tracer()
    tui.start()
    per_op, _pid, took = run_load(binary, "paced", int(rate * seconds), str(rate))
    out, facts = tui.stop()
    facts.update(tui_facts(out))
    facts["cpu_per_s"] = facts["cpu_s"] / took
    facts["rate_per_s"] = 1e9 / per_op
    return facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the loads' sizes")
    parser.add_argument("--show", action="store_true", help="print the table of the last run")
    parser.add_argument("--configs", help="comma-separated subset of configurations (bare is always run)")
    parser.add_argument("--loads", help="comma-separated subset of loads")
    parser.add_argument(
        "--soak-s",
        type=float,
        default=300.0,
        help="seconds of the churn soak (RSS curves of the TUI and record; past the 20,000-row caps); 0 skips it",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a before/after check in under 3 minutes: 3 rounds of half-size loads, no peers, no soak, no "
        "sustained-rate TUI run",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.scale, args.soak_s = 3, 0.5, 0.0
    if args.show:
        print(render(json.loads((HERE / "results" / "latest.json").read_text())))
        return
    binary = build_loads()
    # The compiled programs the warm starts load: the bench's own, made by its first round
    # (never the machine's /var/cache/sigtop, whatever state that is in).
    compiled = tempfile.mkdtemp(prefix="sigtop-bench-compiled-")
    atexit.register(shutil.rmtree, compiled, ignore_errors=True)  # however the bench ends
    os.environ["SIGTOP_CACHE_DIR"] = compiled
    loads = {m: int(n * args.scale) for m, n in LOADS.items() if not args.loads or m in args.loads.split(",")}
    configs = [
        c
        for c in configurations(peers=not args.quick)
        if c.name == "bare" or not args.configs or c.name in args.configs.split(",")
    ]
    # A tracer that is not installed is one line before any round, not a traceback in the first
    # (make bench installs bpftrace and libbpf-tools).
    missing = sorted({c.argv[0] for c in configs if c.argv and shutil.which(c.argv[0]) is None})
    missing += sorted(
        {a for c in configs if c.argv for a in c.argv[1:] if a.startswith("/usr/sbin/") and not Path(a).exists()}
    )
    if missing:
        raise SystemExit(f"bench: not installed: {', '.join(missing)} (make bench installs bpftrace and libbpf-tools)")
    ns: dict[str, dict[str, list[float]]] = {c.name: {m: [] for m in loads} for c in configs}
    # each traced run's ns/op over that of a bare run of the same load right after it
    paired: dict[str, dict[str, list[float]]] = {c.name: {m: [] for m in loads} for c in configs}
    facts: dict[str, list[dict]] = {c.name: [] for c in configs}
    exact: list[tuple[int, int]] = []
    # Warm starts are what the rounds time: each sigtop configuration starts once first, unmeasured,
    # and compiles its program (sigtop-batch-cold keeps nothing and compiles in every round).
    for config in configs:
        if config.name.startswith("sigtop") and not config.name.endswith("cold"):
            config.start()
            config.stop()
    for round_no in range(args.rounds):
        for config in configs:
            config.start()
            pids = {}
            wall = 0.0
            try:
                for mode, n in loads.items():
                    per_op, pid, took = run_load(binary, mode, n)
                    ns[config.name][mode].append(per_op)
                    pids[mode] = pid
                    wall += took
            except BaseException:
                # Interrupted (Ctrl-C) or failed: never leave a tracer attached behind us,
                # where it would slow every "bare" run after it.
                config.abandon()
                raise
            out, f = config.stop()
            if config.per_event and f:
                for mode in [m for m in ("handled", "ignored") if m in loads]:
                    f[f"reported_{mode}"] = config.reported(pids[mode]) / loads[mode]
                config.output.unlink(missing_ok=True)
            if f:
                f["cpu_per_s"] = f["cpu_s"] / wall if wall else 0.0
                facts[config.name].append(f)
            if config.argv is not None:
                # This VM's speed drifts over minutes: a ratio to a bare run
                # seconds later cancels the drift that one to a bare run a
                # round earlier would keep.
                for mode, n in loads.items():
                    bare_op, _pid, _took = run_load(binary, mode, n)
                    ns["bare"][mode].append(bare_op)
                    paired[config.name][mode].append(ns[config.name][mode][-1] / bare_op)
            if config.name in ("sigtop-batch", "sigtop-batch-light"):  # light counts every send too
                doc = json.loads(out)
                for mode in [m for m in ("handled", "ignored") if m in loads]:
                    counted = sum(
                        x["count"]
                        for x in doc["flows"]
                        if x["sender_pid"] == pids[mode] and x["target_pid"] == pids[mode]
                    )
                    exact.append((loads[mode], counted))
            if config.name == "sigtop-tui":
                facts[config.name][-1].update(tui_facts(out))
                if not args.quick:  # the detail-event target is the full bench's; --quick checks cost
                    name = f"sigtop-tui @{SUSTAINED_RATE // 1000}k/s"
                    facts.setdefault(name, []).append(run_sustained(binary, SUSTAINED_RATE, SUSTAINED_S))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    med = {c: {m: statistics.median(v) for m, v in per.items()} for c, per in ns.items()}
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {os.uname().release} {os.cpu_count()} cpus",
        "rounds": args.rounds,
        "loads": loads,
        "ns_per_op": med,
        # medians of paired ratios (bare: 1 by definition)
        "ratio_to_bare": {c: {m: statistics.median(paired[c][m]) if paired[c][m] else 1.0 for m in loads} for c in med},
        # how much a config's paired ratio moved between rounds: (max - min) / median
        "spread": {
            c: {m: (max(v) - min(v)) / statistics.median(v) for m, v in per.items() if v}
            for c, per in paired.items()
            if c != "bare"
        },
        "exact": [{"sent": s, "counted": c, "equal": s == c} for s, c in exact],
        "tracers": {
            c: {
                k: statistics.median(f[k] for f in fs)
                for k in fs[0]
                if all(isinstance(f.get(k), (int, float)) for f in fs)
            }
            for c, fs in facts.items()
            if fs
        },
    }
    if args.soak_s > 0:
        print(f"soak: {args.soak_s:.0f} s of churn...", file=sys.stderr)
        result["soak"] = run_soak(args.soak_s)
    outdir = HERE / "results"
    outdir.mkdir(exist_ok=True)
    (outdir / "latest.json").write_text(json.dumps(result, indent=1))
    print(render(result))


def render(r: dict) -> str:
    lines = [f"sigtop bench {r['date']} on {r['machine']}, {r['rounds']} rounds interleaved, medians", ""]
    lines.append(f"| config | {' | '.join(f'{m} ns/op (x bare)' for m in r['loads'])} |")
    lines.append("|---" * (len(r["loads"]) + 1) + "|")
    for c, per in r["ns_per_op"].items():
        cells = [f"{per[m]:.0f} ({r['ratio_to_bare'][c][m]:.2f}x)" for m in r["loads"]]
        lines.append(f"| {c} | {' | '.join(cells)} |")
    lines.append("")
    lines.append("| tracer | attach s | CPU s per s of load | peak RSS MB | extra |")
    lines.append("|---|---|---|---|---|")
    for c, f in r["tracers"].items():
        extra = ""
        if "frame_ms_median" in f:
            key = f"key {f['key_ms_max']:.0f} ms max; " if f.get("key_ms_max") is not None else ""
            rate = f"paced at {f['rate_per_s']:,.0f}/s: " if "rate_per_s" in f else ""
            extra = (
                f"{rate}frame {f['frame_ms_median']:.1f} ms median, {f['frame_ms_max']:.1f} max; {key}"
                f"detail events sent {f['events_sent']:.0f}, lost in kernel {f['events_lost']:.0f}, "
                f"not decoded {f.get('events_dropped_in_userspace', 0):.0f}"
            )
        reported = [f"{m} {f[f'reported_{m}']:.0%}" for m in ("handled", "ignored") if f"reported_{m}" in f]
        if reported:  # a per-event peer: of the signals each load sent, the share it printed
            extra = "signals reported: " + ", ".join(reported)
        lines.append(f"| {c} | {f['attach_s']:.2f} | {f['cpu_per_s']:.2f} | {f['rss_mb']:.0f} | {extra} |")
    ok = all(e["equal"] for e in r["exact"])
    lines.append("")
    lines.append(
        f"exactness: {sum(e['equal'] for e in r['exact'])}/{len(r['exact'])} runs counted every signal sent"
        + ("" if ok else f" MISMATCH {r['exact']}")
    )
    if r.get("soak"):
        lines.extend(["", *render_soak(r["soak"])])
    lines.extend(["", *verdicts(r)])
    return "\n".join(lines)


def verdicts(r: dict) -> list[str]:
    """Each target of issue #4 against this run: met or missed, with its numbers."""
    ratio, tracers = r["ratio_to_bare"], r["tracers"]
    out = []

    def say(met: bool, text: str) -> None:
        out.append(f"- {'met' if met else 'MISSED':6} {text}")

    if {"floor", "sigtop-batch"} <= ratio.keys():
        for load in ("handled", "getppid"):
            if load in r["loads"]:
                over = (ratio["sigtop-batch"][load] - 1) / (ratio["floor"][load] - 1) - 1
                ref = ratio["sigtop-batch"][load] / ratio["floor"][load] - 1
                limit = 0.10 if load == "handled" else 0.0
                spread = max(r.get("spread", {}).get(c, {}).get(load, 0.0) for c in ("floor", "sigtop-batch"))
                noise = f"; rounds spread +-{spread / 2:.1%}" if spread else ""
                say(
                    ref <= limit,
                    f"{load}: sigtop-batch {ratio['sigtop-batch'][load]:.2f}x vs floor {ratio['floor'][load]:.2f}x "
                    f"({ref:+.1%} in ratio, {over:+.0%} in added cost; target <= {limit:+.0%} in ratio{noise})",
                )
    if {"bpftrace", "sigtop-batch"} <= ratio.keys() and "handled" in r["loads"]:
        b, s = ratio["bpftrace"]["handled"], ratio["sigtop-batch"]["handled"]
        say(s < b, f"handled: sigtop-batch {s:.2f}x below bpftrace {b:.2f}x")
    for peer, _argv, _ready in PEERS:  # the per-event peers: sigtop cheaper under signal load, and complete
        if peer in ratio and "sigtop-batch" in ratio:
            for load in [m for m in ("handled", "ignored") if m in r["loads"]]:
                p, s = ratio[peer][load], ratio["sigtop-batch"][load]
                seen = tracers.get(peer, {}).get(f"reported_{load}", 1.0)
                if seen < 0.99:  # it does not trace this load's syscall: nothing to compare
                    out.append(f"- n/a    {load}: {peer} reported {seen:.0%} of it (it does not trace that syscall)")
                    continue
                say(s < p, f"{load}: sigtop-batch {s:.2f}x below {peer} {p:.2f}x")
    if {"sigtop-batch", "sigtop-batch-light"} <= ratio.keys():  # issue #20.3: light pays no syscall tax
        light, full = ratio["sigtop-batch-light"], ratio["sigtop-batch"]
        spread = r.get("spread", {}).get("sigtop-batch-light", {})
        if "getppid" in r["loads"]:
            noise = spread.get("getppid", 0.0) / 2
            say(
                abs(light["getppid"] - 1) <= max(noise, 0.02),
                f"getppid: sigtop-batch-light {light['getppid']:.2f}x bare (1.00x within the rounds' +-{noise:.1%})",
            )
        for load in [m for m in ("handled", "ignored") if m in r["loads"]]:
            noise = max(spread.get(load, 0.0), r.get("spread", {}).get("sigtop-batch", {}).get(load, 0.0)) / 2
            say(
                light[load] <= full[load] * (1 + noise),
                f"{load}: sigtop-batch-light {light[load]:.2f}x, full mode {full[load]:.2f}x (no worse, +-{noise:.1%})",
            )
    if r["exact"]:
        say(all(e["equal"] for e in r["exact"]), "counts exact in every run")
    for name, f in tracers.items():
        if "rate_per_s" in f:
            lost = f["events_lost"] + f.get("events_dropped_in_userspace", 0)
            say(lost == 0, f"{name}: {lost:.0f} detail events dropped at a sustained {f['rate_per_s']:,.0f}/s")
        if f.get("key_ms_max") is not None:
            say(f["key_ms_max"] <= 100, f"{name}: key press answered in {f['key_ms_max']:.0f} ms at worst (<= 100)")
    if "sigtop-batch" in tracers:
        cpu = tracers["sigtop-batch"]["cpu_per_s"]
        say(cpu < 0.5, f"sigtop-batch own CPU {cpu:.2f} core under the loads (< 0.5)")
    # Issue #20's targets: warm start <= 0.3 s (launch to attached, the interpreter included), cold no
    # slower than before (1.5 s), peak RSS <= 60 MB headless and <= 100 MB for the TUI.
    for name, start_limit, rss_limit in (
        ("sigtop-batch", 0.3, 60),
        ("sigtop-batch-cold", 1.5, 60),
        ("sigtop-tui", 0.3, 100),
    ):
        if name in tracers:
            f = tracers[name]
            how = "cold: compiles" if name.endswith("cold") else "warm: loads the kept program"
            start = f"{name}: start to attached {f['attach_s']:.2f} s, {how} (<= {start_limit})"
            say(f["attach_s"] <= start_limit, start)
            say(f["rss_mb"] <= rss_limit, f"{name}: peak RSS {f['rss_mb']:.0f} MB (<= {rss_limit})")
    if r.get("soak"):
        for met, text in soak_verdicts(r["soak"]):
            say(met, text)
    return out


if __name__ == "__main__":
    main()
