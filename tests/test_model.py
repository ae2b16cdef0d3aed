"""The model on plain data: no kernel, no terminal."""

from __future__ import annotations

import copy
import signal
from collections import Counter
from dataclasses import replace

import pytest

from sigtop.codec import batch_from_json, batch_json
from sigtop.events import EventBlock, EventLayout, pack_records
from sigtop.export.report import to_json
from sigtop.filters import FilterError, FlowFilter
from sigtop.model import EVENTS_PER_ROW, SignalModel
from sigtop.names import EventKind, Result, Syscall
from sigtop.selection import BatchSelection
from sigtop.tables import TABLES
from sigtop.wire import (
    Batch,
    FlowDelta,
    FlowKey,
    ProcInfo,
    SignalEvent,
    SignalfdState,
    ThreadDelta,
)


def key(sender=100, target=200, sig=15, syscall=Syscall.kill, result=Result.delivered, err=0, code=0, tgid=0):
    return FlowKey(sender, target, tgid, sig, code, err, int(syscall), int(result))


def delta(k, count, ts=1000.0):
    return FlowDelta(k, count, ts, ts, "sender", "target")


def test_deltas_add_up_and_rates_cover_the_interval():
    model = SignalModel()
    model.apply(Batch(ts=1, interval_s=2.0, flows=[delta(key(), 10), delta(key(result=Result.ignored), 4)]))
    (row,) = model.flows.values()
    assert (row.count, row.results[Result.delivered], row.results[Result.ignored]) == (14, 10, 4)
    assert row.rate == 7.0
    assert model.signals_per_sec == 7.0
    model.apply(Batch(ts=2, interval_s=1.0))
    assert row.rate == 0.0  # nothing new: the rate drops, the count stays
    assert row.count == 14
    assert model.total_signals == 14


def test_failed_sends_are_attempts_not_signals():
    model = SignalModel()
    model.apply(Batch(ts=1, interval_s=1, flows=[delta(key(result=Result.failed, err=3), 2)]))
    (row,) = model.flows.values()
    assert (row.count, row.failed, dict(row.errors)) == (0, 2, {3: 2})
    doc = to_json(model)
    assert doc["flows"][0]["errors"] == {"ESRCH": 2}
    assert doc["flows"][0]["count"] == 0


def test_thread_targets_fold_into_their_process():
    model = SignalModel()
    procs = [ProcInfo(pid=201, tgid=200, comm="worker")]
    model.apply(
        Batch(
            ts=1,
            interval_s=1,
            procs=procs,
            flows=[delta(key(target=201, syscall=Syscall.tkill), 3), delta(key(target=200), 2)],
        )
    )
    targets = {(r.key.target_pid, r.key.via): r.count for r in model.flows.values()}
    assert targets == {(200, "tkill"): 3, (200, "kill"): 2}


def test_kernel_signals_are_classified_from_si_code():
    model = SignalModel()
    flows = [
        delta(key(sender=0, sig=signal.SIGSEGV, code=1, syscall=Syscall.kernel), 1),  # SEGV_MAPERR
        delta(key(sender=0, sig=signal.SIGCHLD, code=1, syscall=Syscall.kernel), 1),  # CLD_EXITED
        delta(key(sender=0, sig=signal.SIGALRM, code=0x80, syscall=Syscall.kernel), 1),
        delta(key(sender=0, sig=signal.SIGRTMIN, code=-2, syscall=Syscall.kernel), 1),  # SI_TIMER
    ]
    model.apply(Batch(ts=1, interval_s=1, flows=flows))
    assert sorted(r.key.via for r in model.flows.values()) == ["child", "fault", "timer", "timer"]


def test_sigreturn_balance_and_history():
    model = SignalModel()
    model.apply(
        Batch(
            ts=1,
            interval_s=1,
            threads=[ThreadDelta(11, 10, "app", 5, 6, 6, 1.0), ThreadDelta(12, 10, "app", 3, 3, 3, 1.0)],
        )
    )
    model.apply(Batch(ts=2, interval_s=1, threads=[ThreadDelta(11, 10, "app", 2, 2, 2, 2.0)]))
    row = model.sigreturns[10]
    assert (row.sigreturns, row.handler_deliveries, row.balance) == (10, 11, 1)
    assert list(row.history) == [8, 2]
    assert row.rate == 2.0


def test_unmatched_sigreturn_is_counted():
    model = SignalModel()
    event = SignalEvent(1.0, EventKind.unmatched_sigreturn, 10, 11, 11, 10, 0, 0, 0, 0, 0, comm="exploit")
    model.apply(Batch(ts=1, interval_s=1, events=[event]))
    assert model.sigreturns[10].unmatched == 1


def test_unmatched_counts_come_from_the_kernel_when_it_counts_them():
    model = SignalModel()
    event = SignalEvent(1.0, EventKind.unmatched_sigreturn, 10, 11, 11, 10, 0, 0, 0, 0, 0, comm="exploit")
    delta = ThreadDelta(11, 10, "exploit", 1, 0, 0, 1.0, unmatched=1)
    model.apply(Batch(ts=1, interval_s=1, threads=[delta], events=[event]))
    row = model.sigreturns[10]
    assert row.unmatched == 1  # not once per source
    assert list(row.events) == [event]


def test_delivery_latency_matches_generate_to_deliver():
    model = SignalModel()
    k = key()
    gen = generate(10.0, 100, 100, 200, 0)
    dlv = SignalEvent(10.00025, EventKind.deliver, 200, 200, 200, 200, 15, 0, 0, 0, 0)
    model.apply(Batch(ts=1, interval_s=1, flows=[delta(k, 1)], events=[gen, dlv]))
    (row,) = model.flows.values()
    assert list(row.events) == [gen]
    assert 240_000 <= gen.latency_ns <= 260_000


def test_signalfd_recreated_fd_starts_over():
    model = SignalModel()
    model.apply(Batch(ts=1, interval_s=1, signalfds=[SignalfdState(5, 3, "d", 2, 0o2000000, 2, 1.0, 1.5)]))
    model.apply(Batch(ts=2, interval_s=1, signalfds=[SignalfdState(5, 3, "d", 4, 0, 1, 2.0, 2.0)]))
    row = model.signalfds[(5, 3)]
    assert (row.mask, row.flags, row.calls) == (4, 0, 1)


def test_rows_are_evicted_oldest_first_and_counted():
    model = SignalModel(max_rows=3)
    flows = [delta(key(target=200 + i), 1, ts=float(i)) for i in range(5)]
    model.apply(Batch(ts=1, interval_s=1, flows=flows))
    assert sorted(r.key.target_pid for r in model.flows.values()) == [202, 203, 204]
    assert model.evicted_rows == 2


def test_clear_forgets_counts():
    model = SignalModel()
    model.apply(Batch(ts=1, interval_s=1, flows=[delta(key(), 3)]))
    model.clear()
    assert not model.flows
    assert model.total_signals == 0


def test_batches_round_trip_and_merge():
    gen = generate(10.0, 100, 100, 200, 0, comm="[red]x")
    batch = Batch(
        ts=1,
        interval_s=1,
        flows=[delta(key(), 3)],
        events=[gen],
        procs=[ProcInfo(1, 1, "init", parents=[(0, "")], pidfds={3: 9})],
    )
    again = batch_from_json(batch_json(batch))
    assert again == batch
    later = Batch(ts=2, interval_s=1, flows=[delta(key(), 4)])
    batch.merge(later)
    model = SignalModel()
    model.apply(batch)
    assert next(iter(model.flows.values())).count == 7
    assert batch.interval_s == 2
    assert batch.stats.batches_merged == 1


def test_filter_parse_and_match():
    f = FlowFilter.parse("pid:200 sig:TERM")
    assert f.pids == {200}
    assert f.signals == {15}
    model = SignalModel()
    model.apply(Batch(ts=1, interval_s=1, flows=[delta(key(), 1), delta(key(target=300), 1), delta(key(sig=10), 1)]))
    shown = [row for _key, row in TABLES["flows"].selected(model, f)]
    assert [(r.key.target_pid, r.key.sig) for r in shown] == [(200, 15)]
    assert FlowFilter.parse("nginx").comms == ("nginx",)
    assert FlowFilter.parse("USR1").signals == {10}


def test_is_filters_pick_flows_by_what_happened():
    """is:failed, is:fatal, is:noeffect over the real recording: each row the filter keeps has the
    property, each it drops has not; a bad state says which there are."""
    from sigtop.recording import read_recording
    from sigtop.tables.flows import in_state
    from tests.conftest import RECORDING

    model = SignalModel()
    for batch in read_recording(RECORDING)[1]:
        model.apply(batch)
    flows = TABLES["flows"]
    every = [row for _key, row in flows.selected(model, None)]
    for state, holds in (
        ("failed", lambda r: r.failed > 0),
        ("fatal", lambda r: r.key.sig in {*range(1, 17), 24, 25, 26, 27, 29, 30, 31, *range(34, 65)}),  # signal(7)
        ("noeffect", lambda r: r.count > r.received or r.failed > 0),
    ):
        kept = [row for _key, row in flows.selected(model, FlowFilter.parse(f"is:{state}"))]
        assert kept, state
        assert all(holds(r) for r in kept), state
        assert all(not in_state(r, state) for r in every if r not in kept), state
    assert not any(r.key.sig == 17 for _k, r in flows.selected(model, FlowFilter.parse("is:fatal")))  # SIGCHLD
    both = [row for _key, row in flows.selected(model, FlowFilter.parse("is:noeffect sig:USR2"))]
    assert both
    assert all(r.key.sig == 12 and in_state(r, "noeffect") for r in both)
    with pytest.raises(FilterError, match="is:failed, is:fatal, is:noeffect"):
        FlowFilter.parse("is:broken")


LAYOUT = EventLayout.for_records(8, 136)  # a ring buffer's records: an 8-byte header, then struct event


def generate(ts, sender, sender_tid, target, target_tgid, sig=15, comm="", result=Result.delivered) -> SignalEvent:
    """A kill()'s generate event, with the key the kernel counted it under."""
    flow = FlowKey(sender, target, target_tgid, sig, 0, 0, int(Syscall.kill), int(result))
    return SignalEvent(
        ts, EventKind.generate, sender, sender_tid, target, target_tgid, sig, 0, int(result), 0, int(Syscall.kill),
        comm=comm, flow=flow,
    )  # fmt: skip


def test_packed_events_fold_like_decoded_ones():
    """A live EventBlock (decoded only where kept) and the same events as objects give the same model."""
    layout = LAYOUT
    wall = 1_000.0
    k = key(target=200, tgid=200)
    gens = [generate(wall + i / 1000, 100, 101, 200, 200, comm="s") for i in range(EVENTS_PER_ROW + 50)]
    dlvs = [SignalEvent(g.ts + 0.00025, EventKind.deliver, 200, 200, 200, 200, 15, 0, 0, 0, 0) for g in gens]
    first = [e for pair in zip(gens, dlvs, strict=True) for e in pair][:-1]  # the last delivery comes a batch later
    last = [dlvs[-1]]
    models = []
    for as_block in (False, True):
        model = SignalModel()
        for n, objects in enumerate((first, last)):
            events = EventBlock(pack_records(objects, layout, wall), layout, wall) if as_block else objects
            model.apply(Batch(ts=n, interval_s=1, flows=[delta(k, len(gens) if n == 0 else 0)], events=events))
        models.append(model)
    (plain,), (block,) = (list(m.flows.values()) for m in models)
    assert len(block.events) == EVENTS_PER_ROW
    assert [(e.ts, e.sender_tid, e.comm) for e in block.events] == [(e.ts, e.sender_tid, e.comm) for e in plain.events]
    # kernel ns against float wall-clock seconds: equal to the rounding of the latter
    assert all(abs(a.latency_ns - b.latency_ns) <= 1 for a, b in zip(block.events, plain.events, strict=True))
    assert all(abs(e.latency_ns - 250_000) <= 1 for e in block.events)  # the cross-batch one included
    assert models[1].events_received == len(first) + len(last)


def test_event_blocks_merge_and_serialise():
    layout = LAYOUT
    gen = generate(10.0, 100, 100, 200, 0, comm="[red]x")
    block = EventBlock(pack_records([gen], layout, 0.0), layout, 0.0)
    batch = Batch(ts=1, interval_s=1, events=block)
    batch.merge(Batch(ts=2, interval_s=1, events=EventBlock(pack_records([gen], layout, 0.0), layout, 0.0)))
    assert isinstance(batch.events, EventBlock)
    assert len(batch.events) == 2
    again = batch_from_json(batch_json(batch))
    assert again.events == [gen, gen]


def test_batch_table_renders_from_the_live_columns():
    from rich.console import Console

    from sigtop.export.report import print_tables

    model = SignalModel()
    model.apply(
        Batch(
            ts=1,
            interval_s=1,
            flows=[delta(key(sig=0, result=Result.no_signal), 2), delta(key(sig=10), 1_234)],
        )
    )
    console = Console(record=True, width=200)
    print_tables(model, console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "SENDER" in line)
    shown = [c.label for c in TABLES["flows"].columns if not c.live_only]
    assert header.replace("┃", " ").split() == shown
    assert "RATE/s" not in header  # the last interval's rate means nothing once the run is over
    rows = [line.replace("│", " ").split() for line in text.splitlines() if "sender" in line]
    probe = next(r for r in rows if r[4] == "0")
    assert probe[-1] == "2"  # PROBES: the sig-0 count the JSON has as no_signal
    assert next(r for r in rows if r[4] == "SIGUSR1")[6] == "1,234"


def test_a_new_start_time_under_an_old_pid_is_a_new_process():
    model = SignalModel()
    old = ProcInfo(100, 100, "sshd", cmdline="/usr/sbin/sshd", user="root", started=1000.0)
    model.apply(Batch(ts=1001, interval_s=1, procs=[old], flows=[delta(key(sender=100), 2, ts=1000.5)]))
    new = ProcInfo(100, 100, "evil", cmdline="./evil", user="nobody", started=1500.0)
    # The kernel's flow entry outlived its first owner: its comm and first_ts are the old ones.
    model.apply(Batch(ts=1501, interval_s=1, procs=[new], flows=[delta(key(sender=100), 3, ts=1000.5)]))
    rows = sorted(model.flows.values(), key=lambda r: r.key.sender_gen)
    assert [(r.key.sender_gen, r.count, r.sender_comm) for r in rows] == [(0, 2, "sender"), (1, 3, "evil")]
    assert model.proc_of(100, 0).user == "root"
    assert model.proc_of(100, 1).user == "nobody"
    doc = to_json(model)
    assert {(f["sender_started"], f["count"]) for f in doc["flows"]} == {(1000.0, 2), (1500.0, 3)}
    # The same process read again (a refresh) is not a new one.
    model.apply(Batch(ts=1502, interval_s=1, procs=[ProcInfo(100, 100, "evil", started=1500.004)]))
    assert model.registry.generation[100] == 1


def test_kept_details_are_bounded_in_all_and_counts_are_not():
    from sigtop import model as model_module

    model = SignalModel()
    events, flows = [], []
    for target in range(2_000):  # 2,000 rows x 200 events: twice the budget
        flows.append(delta(key(target=target + 1000, sig=10), 200, ts=1000.0 + target))
        events += [generate(1000.0 + target, 100, 100, target + 1000, target + 1000, sig=10)] * 200
    model.apply(Batch(ts=5000, interval_s=1, flows=flows, events=events))
    kept = sum(len(r.events) for r in model.flows.values())
    assert kept <= model_module.MAX_KEPT_EVENTS
    assert kept + model.events_trimmed == 400_000
    assert sum(r.count for r in model.flows.values()) == 400_000
    newest = max(model.flows.values(), key=lambda r: r.last_ts)
    assert len(newest.events) == 200  # the most recently seen keep theirs


def test_a_reused_pid_starts_a_new_sigreturn_row():
    model = SignalModel()
    old = ProcInfo(300, 300, "old", started=100.0)
    model.apply(Batch(ts=101, interval_s=1, procs=[old], threads=[ThreadDelta(300, 300, "old", 4, 4, 4, 101, 0)]))
    new = ProcInfo(300, 300, "new", started=500.0)
    model.apply(Batch(ts=501, interval_s=1, procs=[new], threads=[ThreadDelta(300, 300, "new", 1, 0, 0, 501, 1)]))
    assert (model.sigreturns[300].comm, model.sigreturns[300].sigreturns, model.sigreturns[300].unmatched) == (
        "new",
        1,
        1,
    )
    assert (model.sigreturns[(300, 0)].comm, model.sigreturns[(300, 0)].sigreturns) == ("old", 4)
    assert len(to_json(model)["sigreturn"]) == 2


def test_alerts_for_srop_forged_siginfo_and_probing_once_a_minute():
    model = SignalModel()
    procs = [ProcInfo(300, 300, "evil", cgroup="/docker/x", parents=[(1, "init")])]
    spoofed = FlowDelta(FlowKey(300, 400, 400, 10, -1, 0, int(Syscall.rt_sigqueueinfo), 0, spoofed=1), 2, 1.0, 1.0)
    spoofed.claimed = (1, 0)
    probes = [delta(key(sender=301, target=0, sig=15, result=Result.failed, err=3), 25)]
    batch = Batch(
        ts=1000, interval_s=1, procs=procs, flows=[spoofed, *probes],
        threads=[ThreadDelta(300, 300, "evil", 1, 0, 0, 1000, 1)],
    )  # fmt: skip
    model.apply(batch)
    kinds = sorted((a.kind, a.pid) for a in model.alerts)
    assert kinds == [("probing", 301), ("spoofed", 300), ("srop", 300)]
    srop = next(a for a in model.alerts if a.kind == "srop")
    assert (srop.cgroup, srop.parents) == ("/docker/x", ((1, "init"),))
    assert "claims si_pid 1" in next(a for a in model.alerts if a.kind == "spoofed").detail
    model.apply(copy.deepcopy(batch))  # the same, seconds later: no new alerts
    assert len(model.alerts) == 3
    doc = to_json(model)["alerts"]
    assert {a["kind"] for a in doc} == {"srop", "spoofed", "probing"}


def test_one_filter_selects_alike_in_every_table_and_every_sink():
    """`--container`, `ctr:` in the TUI and the report's JSON all use each table's one selection
    function: a filter by container keeps that container's signalfds, sigreturns and deaths too
    (the report once returned them unfiltered-out: empty)."""
    docker = "/system.slice/docker-" + "4f2a9c1b7e3d" * 5 + "4f2a.scope"
    proc = ProcInfo(300, 300, "nginx", cgroup=docker, started=100.0)
    host = ProcInfo(400, 400, "cron", cgroup="/system.slice/cron.service", started=100.0)
    death = SignalEvent(1001.0, int(EventKind.death), 300, 300, 1, 1, 9, 2, 0, 0, 0, comm="nginx")
    batch = Batch(
        ts=1001,
        interval_s=1,
        procs=[proc, host],
        flows=[delta(key(sender=400, target=300, tgid=300), 2), delta(key(sender=400, target=400, tgid=400), 1)],
        signalfds=[SignalfdState(300, 5, "nginx", 1 << 14, 0, 1, 1000.0, 1000.0)],
        threads=[
            ThreadDelta(300, 300, "nginx", 3, 3, 3, 1000.0, unmatched=1),
            ThreadDelta(400, 400, "cron", 1, 1, 1, 1000.0),
        ],
        events=[death],
    )
    model = SignalModel()
    model.apply(batch)
    assert [a.pid for a in model.alerts] == [300]
    label = "docker:4f2a9c1b7e3d"
    # (filter, targets of the flows it keeps (either end in the container), pids it keeps elsewhere)
    cases = ((label, {300}, {300}), ("svc:cron", {300, 400}, {400}), ("nothing-like-it", set(), set()))
    for text, targets, wanted in cases:
        flt = FlowFilter.parse(f"ctr:{text}")
        doc = to_json(model, flt)
        assert {f["target_pid"] for f in doc["flows"]} == targets, text
        assert {r["pid"] for r in doc["signalfd"]} == wanted & {300}, text
        assert {r["pid"] for r in doc["sigreturn"]} == wanted, text
        assert {d["pid"] for d in doc["deaths"]} == wanted & {300}, text
        assert {a["pid"] for a in doc["alerts"]} == wanted & {300}, text  # by label, not cgroup path
        for name, spec in TABLES.items():  # the TUI's rows are the JSON's rows
            assert len(spec.selected(model, flt)) == len(doc[name]), (name, text)
        # record, stream and the exporter pass batches on: what they keep of the batch folds
        # into exactly the rows the filter keeps of the whole.
        kept = SignalModel()
        kept.apply(BatchSelection(flt).select(batch))
        kept_doc = to_json(kept)
        for name in ("flows", "signalfd", "sigreturn", "deaths", "alerts"):
            assert _pids(kept_doc[name]) == _pids(doc[name]), (name, text)


def _pids(rows: list[dict]) -> list[tuple]:
    return sorted((r.get("sender_pid"), r.get("target_pid"), r.get("pid")) for r in rows)


def test_eviction_takes_from_the_user_holding_most_rows():
    """One user's 30 rows against another's 2, capped at 10: the first gives up all 22."""
    model = SignalModel(max_rows=10)
    root = [replace(delta(key(sender=100, target=200 + i), 1, ts=float(i)), sender_uid=0) for i in range(2)]
    churn = [
        replace(delta(key(sender=1000 + i, target=1000 + i), 2, ts=10.0 + i), sender_uid=65534, sender_comm="sh")
        for i in range(30)
    ]
    model.apply(Batch(ts=50, interval_s=1, flows=root + churn))
    owners = Counter(r.owner_uid for r in model.flows.values())
    assert owners == {0: 2, 65534: 8}
    assert model.evicted_rows == 22
    (entry,) = model.flows_table.evicted.items()
    assert entry[0] == (65534, "sh")
    assert (entry[1].rows, entry[1].signals) == (22, 44)
    kept = sorted(r.key.sender_pid for r in model.flows.values() if r.owner_uid == 65534)
    assert kept == list(range(1022, 1030))  # least recently moved first


def test_one_users_churn_evicts_its_own_sigreturn_and_signalfd_rows_not_roots():
    """The same fairness in the other capped tables: root's SROP evidence and signalfd outlive a
    churn of another user's processes that each return from a handler and open a signalfd."""
    model = SignalModel(max_rows=10)
    root = [ProcInfo(100, 100, "victim", uid=0, started=1.0), ProcInfo(101, 101, "sfd", uid=0, started=1.0)]
    churn = [ProcInfo(1000 + i, 1000 + i, "sh", uid=65534, started=2.0) for i in range(30)]
    model.apply(
        Batch(
            ts=5,
            interval_s=1,
            procs=root,
            threads=[ThreadDelta(100, 100, "victim", 1, 0, 0, 1.0, unmatched=1)],
            signalfds=[SignalfdState(101, 3, "sfd", 1 << 14, 0, 1, 1.0, 1.0)],
        )
    )
    model.apply(
        Batch(
            ts=50,
            interval_s=1,
            procs=churn,
            threads=[ThreadDelta(p.pid, p.pid, "sh", 1, 1, 1, 10.0 + i) for i, p in enumerate(churn)],
            signalfds=[SignalfdState(p.pid, 3, "sh", 1 << 9, 0, 1, 10.0 + i, 10.0 + i) for i, p in enumerate(churn)],
        )
    )
    assert 100 in model.sigreturns
    assert Counter(r.owner_uid for r in model.sigreturns.values()) == {0: 1, 65534: 9}
    assert (101, 3) in model.signalfds
    assert Counter(r.owner_uid for r in model.signalfds.values()) == {0: 1, 65534: 9}


def test_fair_shares_level_the_largest_holders():
    from sigtop.tables.base import fair_shares

    assert fair_shares({1: 10, 2: 10, 3: 3}, 5) == {1: 3, 2: 2}
    assert fair_shares({1: 3, 2: 3}, 6) == {1: 3, 2: 3}
    assert fair_shares({1: 5}, 0) == {}
    for held, excess in (({1: 7, 2: 4, 3: 4, 4: 1}, 9), ({i: i for i in range(1, 40)}, 300)):
        shares = fair_shares(held, excess)
        assert sum(shares.values()) == excess
        after = {u: n - shares.get(u, 0) for u, n in held.items()}
        touched = [after[u] for u in shares]
        assert max(touched) - min(touched) <= 1
        assert all(after[u] <= min(touched) for u in held if u not in shares)


def test_evicted_totals_stay_bounded_however_many_names_churn():
    from sigtop.tables.flows import MAX_EVICTED_NAMES, MAX_EVICTED_USERS, OTHER_NAMES, OTHER_USERS

    model = SignalModel(max_rows=1)
    churn = [
        replace(
            delta(key(sender=10 + i, target=10 + i), 1, ts=float(i)), sender_uid=1000 + i % 150, sender_comm=f"n{i}"
        )
        for i in range(3000)
    ]
    model.apply(Batch(ts=5000, interval_s=1, flows=churn))
    evicted = model.flows_table.evicted
    assert len({u for u, _ in evicted}) <= MAX_EVICTED_USERS + 1
    assert all(sum(1 for u2, _ in evicted if u2 == u) <= MAX_EVICTED_NAMES + 1 for u, _ in evicted)
    assert OTHER_USERS in {u for u, _ in evicted}
    assert any(n == OTHER_NAMES for _, n in evicted)
    assert sum(e.rows for e in evicted.values()) == model.evicted_rows == 2999
