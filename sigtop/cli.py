"""sigtop's command line: the TUI by default, and batch, record, replay, doctor.

Every failure a user can cause (not root, no BCC, no headers, a bad pid or
signal name, a corrupt recording) ends as one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigtop import heap, version
from sigtop.filters import FilterError, FlowFilter
from sigtop.names import UnknownSignalError, parse_signal, printable
from sigtop.sources import Source, SourceError, open_source

if TYPE_CHECKING:
    from sigtop.selection import BatchSelection

EXIT_USAGE = 2
EXIT_PARTIAL = 1  # record: finished, but a full disk kept some batches' counts without their events


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, not argparse's usage dump."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a pid (a positive number): {text!r}")
    return int(text)


def _signal(text: str) -> int:
    try:
        number = parse_signal(text)
    except UnknownSignalError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if number == 0:
        raise argparse.ArgumentTypeError("signal 0 is a probe, not a signal: probes are always shown (PROBES)")
    return number


def _number(
    low: float, high: float, what: str, low_inclusive: bool = False, high_text: str = ""
) -> Callable[[str], float]:
    """An option type: a finite number in a range that makes sense (no nan, no 1e308)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value > high or value < low or (value == low and not low_inclusive):
            bound = f"at least {low:g}" if low_inclusive else f"more than {low:g}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound} and at most {high_text or f'{high:g}'}: {text!r}")
        return value

    return parse


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise argparse.ArgumentTypeError(f"not an ADDR:PORT: {text!r} (e.g. 127.0.0.1:9464)")
    return host.strip("[]"), int(port)


MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0  # below: redrawing or collecting is all sigtop would do
_duration = _number(0, 366 * 86400, "a duration (seconds)", high_text="366 days")
_interval = _number(MIN_INTERVAL_S, MAX_INTERVAL_S, "an interval (seconds)", low_inclusive=True)
_speed = _number(0, 1000, "a speed", low_inclusive=True)
_backlog_mb = _number(0, 4096, "a backlog (MB)", high_text="4096")
SERVE_PORT = 8464
MAX_VISITORS, REPLAY_VISITORS = 64, 8


def _visitors(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_VISITORS:
        raise argparse.ArgumentTypeError(f"not a number from 1 to {MAX_VISITORS}: {text!r}")
    return int(text)


def _add_from(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read a recording (sigtop record) instead of the kernel: no root, no BPF; -p, -s and "
        "--container then filter what is shown",
    )


def _add_filters(p: argparse.ArgumentParser, top: bool = False) -> None:
    # A subcommand's default would overwrite the value given before it.
    default = [] if top else argparse.SUPPRESS
    p.add_argument(
        "-p",
        "--pid",
        type=_pid,
        action="append",
        default=default,
        metavar="PID",
        help="only signals sent by or to PID (repeatable; applied in the kernel)",
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="with --pid: also the processes PID starts from now on (and theirs), followed as they start",
    )
    p.add_argument(
        "-s",
        "--signal",
        type=_signal,
        action="append",
        default=default,
        metavar="SIG",
        help="only this signal: TERM, SIGUSR1, RTMIN+2 or a number (repeatable; in the kernel)",
    )
    p.add_argument(
        "--no-fates",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="do not follow queued signals to their end (taken, pending, discarded) nor time them: "
        "saves ~0.5 us per handled signal",
    )
    p.add_argument(
        "--light",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="attach no syscall tracepoint, so that no syscall on the machine pays for sigtop: every "
        "successful send is still named with its syscall and counted; failed sends, sig-0 probes, "
        "signalfd, rt_sigaction and rt_sigreturn are not seen (the header and the JSON say so)",
    )
    p.add_argument(
        "--container",
        action="append",
        default=default,
        metavar="TEXT",
        help="only flows whose sender or target container/service label contains TEXT "
        "(docker:4f2a, k8s:, svc:nginx; repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sigtop",
        description="A live, top-like monitor of Linux signals: who sends what to whom, "
        "what is ignored, blocked or lost, counted exactly in the kernel.",
        epilog="With no command, sigtop opens the live view. Run `sigtop doctor` if it does not start.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"sigtop {version()}")
    parser.add_argument(
        "-d",
        "--delay",
        type=_interval,
        default=None,
        metavar="S",
        help=f"refresh interval in seconds, {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g} "
        "(default: the settings file's interval, else 1)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the live view's settings from FILE only (default: /etc/sigtop/config.toml, then "
        "$XDG_CONFIG_HOME/sigtop/config.toml; under sudo the invoking user's)",
    )
    parser.add_argument("--no-config", action="store_true", help="read no settings file: the defaults")
    parser.add_argument(
        "-c", "--comm", action="append", default=[], metavar="TEXT", help="show only processes whose name contains TEXT"
    )
    _add_filters(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser("batch", help="trace headless, then print the tables (or JSON)")
    b.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    b.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="S",
        help="how often the kernel's counters are read (default 1)",
    )
    b.add_argument("--json", action="store_true", help="print one JSON document")
    b.add_argument(
        "--until-exit",
        type=_pid,
        metavar="PID",
        help="trace PID until it ends, then say how and who caused it ('exit' in the JSON); "
        "exit status 0: it exited, 3: a signal killed it, 4: still running at --duration",
    )
    _add_filters(b)
    _add_from(b)

    r = sub.add_parser("record", help="record what the collector produces, as JSON Lines")
    r.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="file to write ('-' for stdout); never through a symlink, never over an existing file without --force",
    )
    r.add_argument("--force", action="store_true", help="replace FILE if it exists (a regular file only)")
    r.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    r.add_argument("--interval", type=_interval, default=1.0, metavar="S", help="batch interval (default 1)")
    _add_filters(r)
    _add_from(r)

    st = sub.add_parser("stream", help="one JSON object per signal event on stdout (NDJSON), for jq and log pipelines")
    st.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    st.add_argument(
        "--interval", type=_interval, default=1.0, metavar="S", help="how often lines are flushed (default 1)"
    )
    st.add_argument(
        "--backlog",
        type=_backlog_mb,
        default=16,
        metavar="MB",
        help="lines kept for a slow reader (default 16 MB); what does not fit is dropped and counted in-band",
    )
    _add_filters(st)
    _add_from(st)

    ex = sub.add_parser("exporter", help="serve the counts as Prometheus metrics on /metrics (headless)")
    ex.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 9464),
        metavar="ADDR:PORT",
        help="where to serve /metrics (default 127.0.0.1:9464: loopback; expose it deliberately)",
    )
    ex.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS and basic auth for /metrics, in Prometheus' exporter-toolkit format (as node_exporter's)",
    )
    ex.add_argument(
        "--interval", type=_interval, default=1.0, metavar="S", help="how often counts are read (default 1)"
    )
    ex.add_argument(
        "--details",
        action="store_true",
        help="also export sigtop_signal_latency_seconds and sigtop_process_deaths_total "
        "(reads every detail event: costs like the live view)",
    )
    ex.add_argument(
        "--label-by",
        choices=("comm", "container"),
        help="also export sigtop_signals_by_<comm|container>_total{signal,sender,target}, bounded by --top",
    )
    ex.add_argument(
        "--top",
        type=int,
        default=20,
        choices=range(1, 201),
        metavar="K",
        help="at most K values get their own series (1..200, default 20); the rest count as 'other'",
    )
    _add_filters(ex)
    _add_from(ex)

    p = sub.add_parser("replay", help="open the live view over a recording (no root, no BPF)")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="playback speed (default 1; 0 loads everything at once)",
    )

    sv = sub.add_parser(
        "serve",
        help="serve the view to web browsers (textual-serve): a recording, or with --live the kernel; "
        "each visitor gets their own sigtop process",
    )
    sv.add_argument("file", nargs="?", metavar="FILE", help="the recording (sigtop record) every visitor replays")
    sv.add_argument(
        "--live",
        action="store_true",
        help="serve the live view instead of a recording (needs root; each visitor runs its own tracer)",
    )
    sv.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", SERVE_PORT),
        metavar="ADDR:PORT",
        help=f"where to serve (default 127.0.0.1:{SERVE_PORT}: loopback; no TLS, no login: expose it deliberately)",
    )
    sv.add_argument(
        "--max-visitors",
        type=_visitors,
        metavar="N",
        help=f"at most N visitors at once, each with their own sigtop process (1..{MAX_VISITORS}; default 1 "
        f"with --live, {REPLAY_VISITORS} for a recording); more are refused with a message",
    )
    sv.add_argument("--speed", type=_speed, default=1.0, metavar="X", help="a recording's playback speed (default 1)")
    sv.add_argument("--session", type=_pid, metavar="PID", help=argparse.SUPPRESS)  # a visitor's process
    _add_filters(sv)

    sub.add_parser("doctor", help="check every prerequisite and say how to fix what fails")
    cf = sub.add_parser("config", help="the live view's settings file: where it is, what is in force")
    cf.add_argument("--show", action="store_true", help="print the settings in force and which file set each")
    cf.add_argument("--path", action="store_true", help="print the file 'Save these settings' writes")
    return parser


def _source(args: argparse.Namespace, details: bool, interval: float) -> Source:
    """The command's source: the kernel, or the recording given with --from (read at once)."""
    if args.follow and not args.pid:
        raise CliError("--follow follows the processes of --pid PID: give a pid")
    if args.light and getattr(args, "from_file", None) is not None:
        raise CliError("--light is how the kernel is traced: a recording (--from) was traced already")
    if getattr(args, "from_file", None) is None:
        from sigtop.live.procfs import is_running

        missing = [pid for pid in args.pid if not is_running(pid)]
        if missing:  # the kernel would trace nothing, silently, for as long as it ran
            raise CliError(
                f"no process {missing[0]} (--pid): nothing to trace; without --pid sigtop traces every process"
            )
    notes: list[str] = []
    source = open_source(
        getattr(args, "from_file", None),
        pids=tuple(args.pid),
        follow=args.follow,
        signals=tuple(args.signal),
        details=details,
        interval_s=interval,
        follow_fates=not args.no_fates,
        light=args.light,
        notes=notes,
    )
    for note in notes:
        print(f"sigtop: {printable(note)}", file=sys.stderr)
    return source


def _filter(args: argparse.Namespace) -> FlowFilter:
    """What the user asked to see, as the one filter every table and sink applies."""
    return FlowFilter(
        frozenset(getattr(args, "pid", [])),
        tuple(getattr(args, "comm", [])),
        frozenset(getattr(args, "signal", [])),
        tuple(getattr(args, "container", [])),
    )


def _batch_selection(args: argparse.Namespace) -> BatchSelection | None:
    """What the sinks that pass batches on (record, stream, exporter) keep of each. Live, the
    kernel has applied -p and -s (and --follow's children, which no pid list names); over a
    recording every filter is applied here, as batch and the live view do."""
    from sigtop.selection import BatchSelection

    live_part = FlowFilter(containers=tuple(getattr(args, "container", [])))
    flt = _filter(args) if args.from_file is not None else live_part
    return BatchSelection(flt) if flt else None


EXIT_KILLED, EXIT_STILL_RUNNING = 3, 4


def cmd_batch(args: argparse.Namespace) -> int:
    watched = args.until_exit
    if watched is not None:
        if args.from_file is not None:
            raise CliError("--until-exit watches a live process: it cannot be used with --from")
        from sigtop.live.procfs import is_running

        if not is_running(watched):
            raise CliError(f"no process {watched} to wait for")
        args.pid = [*args.pid, watched]  # its signals, in the kernel; deaths come with detail events
    source = _source(args, details=watched is not None, interval=args.interval)
    attach_while_loading(source, "rich.console", "sigtop.model", "sigtop.export.report", "sigtop.runner")
    from rich.console import Console

    from sigtop.export.report import how_it_ended, print_tables, to_json
    from sigtop.model import SignalModel
    from sigtop.runner import trace_into_model

    model = SignalModel()
    stop_when = None
    if watched is not None:
        from sigtop.live.procfs import is_running

        def stop_when() -> bool:
            return any(d.pid == watched for d in model.deaths) or not is_running(watched)

    trace_into_model(source, args.duration, model, stop_when=stop_when)
    flow_filter = _filter(args)
    doc = to_json(model, flow_filter)
    status = 0
    if watched is not None:
        from sigtop.live.procfs import is_running

        doc["exit"] = how_it_ended(model, watched, is_running(watched))
        status = {"killed": EXIT_KILLED, None: EXIT_STILL_RUNNING}.get(doc["exit"]["ended"], 0)
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        # A terminal's width; piped, wide enough for every column (a file has no right edge).
        print_tables(model, Console() if sys.stdout.isatty() else Console(width=400), flow_filter)
        if watched is not None:
            print(printable(json.dumps(doc["exit"])))
    return status


def cmd_record(args: argparse.Namespace) -> int:
    from sigtop.recording import RecordingFullError, RecordingWriter, open_output
    from sigtop.runner import trace

    # Opened before attaching: a refused output costs no compile.
    fd = sys.stdout.fileno() if args.output == "-" else open_output(args.output, force=args.force)
    try:
        try:  # the header goes out before attaching: a disk that takes nothing costs no compile
            writer = RecordingWriter(
                fd,
                {"pids": list(args.pid), "signals": list(args.signal), "interval_s": args.interval},
                name=args.output,
            )
        except RecordingFullError:
            if args.output != "-" and os.fstat(fd).st_size == 0:
                os.unlink(args.output)  # ours, just made, and empty: leave no 0-byte "recording"
            raise CliError(f"cannot record to {args.output}: no space (or quota) left; nothing traced") from None
        source = _source(args, details=True, interval=args.interval)
        selection = _batch_selection(args)
        write = writer.write if selection is None else lambda batch: writer.write(selection.select(batch))
        try:
            asyncio.run(trace(source, args.duration, write))
        except RecordingFullError as full:  # not even a batch's counts fit: ended, the file whole
            print(f"sigtop: {printable(str(full))}", file=sys.stderr)
            return EXIT_PARTIAL
    except BrokenPipeError:  # the reader of `-o -` went away: the recording simply ends
        return 0
    finally:
        if args.output != "-":
            os.close(fd)
    print(f"recorded {writer.batches} batches to {printable(args.output)}", file=sys.stderr)
    shortfall = writer.shortfall()
    if shortfall is not None:  # the counts are whole, the events are not: a script must see it
        print(f"sigtop: {printable(shortfall)}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from sigtop.export.stream import StreamSink
    from sigtop.runner import trace

    sys.stdout.flush()  # the sink writes to the descriptor itself, past Python's buffer
    sink = StreamSink(sys.stdout.fileno(), _batch_selection(args), int(args.backlog * (1 << 20)))
    source = _source(args, details=True, interval=args.interval)
    asyncio.run(trace(source, args.duration, sink.write, on_start=sink.start, on_stopping=sink.stopping))
    summary = sink.close()
    print("sigtop: stream: " + json.dumps(summary, separators=(",", ":")), file=sys.stderr)
    if sink.reader_gone:
        # The reader went away (| head): a normal end; keep Python from failing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from sigtop.export.metrics_server import MetricsServer, beyond_loopback
    from sigtop.export.prometheus import SignalMetrics
    from sigtop.export.webconfig import WebConfigError, load
    from sigtop.runner import trace

    try:
        web = load(args.web_config) if args.web_config else None
    except WebConfigError as exc:
        raise CliError(f"--web.config.file: {exc}") from None
    host, port = args.listen
    if beyond_loopback(host):
        guarded = web is not None and web.tls is not None and web.users
        exposed = "" if guarded else "; without TLS and basic auth (--web.config.file) anyone who can connect sees it"
        print(f"sigtop: warning: /metrics on {host}:{port} is reachable from other machines{exposed}", file=sys.stderr)
    metrics = SignalMetrics(label_by=args.label_by or "", top=args.top)
    registry = CollectorRegistry()
    registry.register(metrics)
    source = _source(args, details=args.details, interval=args.interval)
    on_batch = metrics.apply
    if args.details:
        from sigtop.model import SignalModel

        model = SignalModel()
        model.on_latency = metrics.observe_latency
        on_batch = functools.partial(metrics.fold, model)
    selection = _batch_selection(args)
    if selection is not None:
        fold = on_batch
        on_batch = lambda batch: fold(selection.select(batch))  # noqa: E731
    server = MetricsServer(registry, web)

    async def serve() -> None:
        source.attach()  # before listening: a scrape never sees a half-started exporter
        try:
            await server.start(host, port)
        except OSError as exc:
            source.detach()
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        scheme = "https" if web is not None and web.tls is not None else "http"
        print(f"serving /metrics on {scheme}://{host}:{port}/metrics", file=sys.stderr, flush=True)
        try:
            await trace(source, None, on_batch, stop_at_end=False)
        finally:
            await server.close()

    asyncio.run(serve())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    notes: list[str] = []
    source = open_source(args.file, speed=args.speed, notes=notes)
    for note in notes:
        print(f"sigtop: {printable(note)}", file=sys.stderr)
    said = len(notes)
    _need_terminal()
    try:
        return _run_app(source, args)
    finally:
        for note in notes[said:]:  # a streamed recording's, found as it played (a cut last line)
            print(f"sigtop: {printable(note)}", file=sys.stderr)


def cmd_live(args: argparse.Namespace) -> int:
    _need_terminal()  # before a second of compiling
    from sigtop.live import preflight

    preflight.check_all()  # not root, no tracefs, no headers: one line, before the screen is taken over
    interval = _interval_of(args, _settings(args)[0])  # a bad settings file: one line, before attaching
    # The compile runs inside the app, behind its first screen.
    return _run_app(_source(args, details=True, interval=interval), args, interval=interval)


def attach_while_loading(source: Source, *modules: str) -> None:
    """Attach (BCC's compile, about a second) while modules load on the other core.

    The compile runs in C with the GIL released, so light imports (the
    batch report's) cost no time. Errors come from attach, as
    CollectorError, once both are done.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        attached = pool.submit(source.attach)
        for module in modules:
            importlib.import_module(module)
        attached.result()


def _need_terminal() -> None:
    """The live view draws on a terminal; without one it would draw into the void forever."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the live view needs a terminal: use `sigtop batch` or `sigtop record` without one")


def _settings(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The settings file's view settings (sigtop.config), and where saving writes."""
    from sigtop import config

    paths = config.files(args.config, args.no_config)
    try:
        return config.load(paths, explicit=args.config is not None), Path(args.config) if args.config else None
    except config.ConfigError as exc:
        raise CliError(f"{exc} (--no-config starts with the defaults)") from None


def _interval_of(args: argparse.Namespace, settings: Any) -> float:
    if args.delay is not None:
        return args.delay
    return settings.interval if settings.interval is not None else 1.0


def _run_app(source: Source, args: argparse.Namespace, interval: float | None = None) -> int:
    from sigtop.ui.app import SigtopApp

    settings, settings_path = _settings(args)
    if interval is None:
        interval = _interval_of(args, settings)
    flt = _filter(args)
    if source.live:  # --pid and -s are the kernel's (the header's "traced"); the view filters the rest
        flt = dataclasses.replace(flt, pids=frozenset(), signals=frozenset())
    app = SigtopApp(
        source, flow_filter=flt, refresh_s=interval, watch_exit=True, config=settings, config_file=settings_path
    )
    if settings.theme and settings.theme not in app.available_themes:
        where = settings.sources.get("theme", "the settings file")
        themes = ", ".join(sorted(app.available_themes))
        raise CliError(f"{where}: theme: no theme {settings.theme!r} (one of {themes}; --no-config: the defaults)")
    try:
        app.run()
    finally:
        source.detach()
    if app.failure:
        print(f"sigtop: {printable(app.failure)}", file=sys.stderr)
        return app.return_code or 1
    return app.return_code or 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.live and args.file is not None:
        raise CliError("serve: a recording or --live (the live view), not both")
    if not args.live and args.file is None:
        raise CliError("serve: give a recording (sigtop serve FILE), or --live for the live view")
    try:
        from sigtop import serve
    except ModuleNotFoundError as exc:
        if exc.name not in ("textual_serve", "aiohttp", "aiohttp_jinja2"):
            raise
        raise CliError("serve needs textual-serve: pip install 'sigtop[serve]' (make setup installs it)") from None
    if args.session is not None:  # one visitor's process, started by the server below
        try:
            serve.end_with_server(args.session)
        except serve.ServeError as exc:
            raise CliError(str(exc)) from None
        interval = _interval_of(args, _settings(args)[0])
        source = _source(args, True, interval) if args.live else open_source(args.file, speed=args.speed)
        return _run_app(source, args, interval=interval)

    # What each visitor's process is told: this command's view, options and filters.
    session = [*(["-d", repr(args.delay)] if args.delay is not None else []), *(f"--comm={comm}" for comm in args.comm)]
    session += [f"--config={args.config}"] if args.config else ["--no-config"] if args.no_config else []
    session += ["serve", "--session", str(os.getpid())]
    session += [f"--pid={pid}" for pid in args.pid] + [f"--signal={sig}" for sig in args.signal]
    session += [f"--container={text}" for text in args.container]
    if args.live:
        from sigtop.live import preflight

        preflight.check_all()  # here, once: not in each visitor's browser
        visitors = args.max_visitors or 1
        what, refusal = "the live view", "each visitor runs their own root BPF tracer"
        session += ["--live", *(["--follow"] if args.follow else []), *(["--no-fates"] if args.no_fates else [])]
        session += ["--light"] if args.light else []
    else:
        notes: list[str] = []
        open_source(args.file, notes=notes)  # a file that does not replay fails here, not in each browser
        for note in notes:
            print(f"sigtop: {printable(note)}", file=sys.stderr)
        visitors = args.max_visitors or REPLAY_VISITORS
        what, refusal = f"the replay of {printable(args.file)}", "each visitor runs their own sigtop process"
        session += [f"--speed={args.speed!r}", "--", os.path.abspath(args.file)]
    host, port = args.listen
    if serve.beyond_loopback(host):
        print(
            f"sigtop: warning: serve on {host}:{port} is reachable from other machines, with no TLS and no login: "
            f"anyone who can connect sees {what}",
            file=sys.stderr,
        )
    server = serve.ViewServer(serve.session_command(session), host, port, visitors, what, refusal)
    try:
        server.run()
    except serve.ServeError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from sigtop import config

    if args.path:
        print(args.config or config.user_file())
        return 0
    settings, _path = _settings(args)
    print(config.show(settings, config.files(args.config, args.no_config)))
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    from sigtop.doctor import run_doctor

    return run_doctor()


COMMANDS = {
    "batch": cmd_batch,
    "record": cmd_record,
    "stream": cmd_stream,
    "exporter": cmd_exporter,
    "replay": cmd_replay,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
    "config": cmd_config,
    None: cmd_live,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    heap.hand_memory_back()
    try:
        return COMMANDS[args.command](args)
    except (CliError, SourceError, FilterError) as exc:
        print(f"sigtop: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): it has what it wanted; no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
