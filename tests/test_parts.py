"""The model's parts, each alone: the bounded mapping, the delivery matcher, the death ledger, the
process registry and the model's own thread (issue #17: "small parts, each tested alone").

No part under test is mocked: each is given real wire records, and where a part reads another's
rows (the ledger reads flow rows) they come from folding a Batch into a real SignalModel.
"""

from __future__ import annotations

import dataclasses
import queue
import signal

import pytest

from sigtop.lru import BoundedLRU
from sigtop.model import EVENTS_PER_ROW, EVENTS_PER_STEP, SignalModel
from sigtop.model.ledger import ESCALATION_S, OOM_TO_DEATH_S, DeathLedger
from sigtop.model.matcher import (
    EVENT,
    LATENCY,
    MAX_PENDING_DELIVERIES,
    PENDING_PER_KEY,
    TAKEN_BY,
    DeliveryMatcher,
    slot,
)
from sigtop.names import CLD_DUMPED, CLD_KILLED, EventKind, Result, Syscall
from sigtop.registry import MAX_CMDLINE, START_SLACK_S, ProcessRegistry
from sigtop.tables.deaths import Death
from sigtop.ui.feed import ModelFeed, Snapshot, ViewSettings
from sigtop.wire import Batch, Disposition, KernelStats, ProcInfo, SignalEvent
from tests.test_model import delta, key

NS = 1e9  # ns per unit of a SignalEvent's ts (seconds)
VICTIM = 500
SIGRT = 34


# ---- sigtop.lru.BoundedLRU -------------------------------------------------------------------


def test_lru_holds_at_most_maxlen_and_hands_the_oldest_put_to_on_evict():
    evicted = []
    lru = BoundedLRU(3, on_evict=lambda k, v: evicted.append((k, v)))
    for i in range(5):
        lru.put(i, f"v{i}")
    assert list(lru.items()) == [(2, "v2"), (3, "v3"), (4, "v4")]
    assert evicted == [(0, "v0"), (1, "v1")]


def test_lru_put_makes_an_entry_most_recent_and_a_lookup_does_not():
    lru = BoundedLRU(3)
    for k in "abc":
        lru.put(k, k)
    lru.put("a", "A")  # a put is a use: b is now the oldest
    assert lru.get("b") == "b"  # a lookup is not a use: b stays the oldest
    assert lru["b"] == "b"
    assert "b" in lru
    lru.put("d", "d")
    assert list(lru.items()) == [("c", "c"), ("a", "A"), ("d", "d")]


def test_lru_weighs_its_entries_and_evicts_past_the_budget():
    evicted = []
    lru = BoundedLRU(100, weigh=len, budget=10, on_evict=lambda k, v: evicted.append(k))
    lru.put("a", "xxxx")
    lru.put("b", "yyyy")
    assert lru.weight == 8
    lru.put("a", "x")  # a value replaced: its old weight goes, the new one comes
    assert lru.weight == 5
    lru.put("c", "zzzzzzz")  # 12 > 10: the least recently put (b) goes
    assert (list(lru), lru.weight, evicted) == (["a", "c"], 8, ["b"])


def test_lru_keeps_one_entry_heavier_than_the_budget_until_another_comes():
    lru = BoundedLRU(100, weigh=len, budget=3)
    lru.put("big", "xxxxx")
    assert (list(lru), lru.weight) == (["big"], 5)
    lru.put("small", "y")
    assert (list(lru), lru.weight) == (["small"], 1)


def test_lru_discard_and_clear_keep_the_weight_and_evict_nothing():
    evicted = []
    lru = BoundedLRU(10, weigh=len, budget=100, on_evict=lambda k, v: evicted.append(k))
    lru.put("a", "xxx")
    lru.put("b", "yy")
    assert lru.discard("a") == "xxx"
    assert lru.discard("missing") is None
    assert (list(lru), lru.weight) == (["b"], 2)
    lru.clear()
    assert (len(lru), lru.weight, evicted) == (0, 0, [])


# ---- sigtop.model.matcher.DeliveryMatcher ----------------------------------------------------


def test_matcher_pairs_deliveries_with_generated_signals_first_in_first_out():
    matcher, seen = DeliveryMatcher(), []
    matcher.on_latency = lambda sig, ns: seen.append((sig, ns))
    first, second = slot(0, 1.0), slot(1, 2.0)
    matcher.queued(VICTIM, SIGRT, first)
    matcher.queued(VICTIM, SIGRT, second)
    matcher.delivered(VICTIM, SIGRT, 3.0, 501, NS)
    assert (first[LATENCY], first[TAKEN_BY]) == (2_000_000_000, 501)
    assert (second[LATENCY], second[TAKEN_BY]) == (None, 0)
    matcher.delivered(VICTIM, SIGRT, 3.5, 502, NS)
    assert (second[LATENCY], second[TAKEN_BY]) == (1_500_000_000, 502)
    assert seen == [(SIGRT, 2_000_000_000), (SIGRT, 1_500_000_000)]
    matcher.delivered(VICTIM, SIGRT, 4.0, 503, NS)  # nothing waits: nothing is matched
    assert len(seen) == 2


def test_matcher_keys_by_process_and_signal():
    matcher = DeliveryMatcher()
    other_sig, other_proc, mine = slot(0, 1.0), slot(1, 1.0), slot(2, 1.0)
    matcher.queued(VICTIM, SIGRT + 1, other_sig)
    matcher.queued(VICTIM + 1, SIGRT, other_proc)
    matcher.queued(VICTIM, SIGRT, mine)
    matcher.delivered(VICTIM, SIGRT, 1.25, VICTIM, NS)
    assert (mine[LATENCY], mine[TAKEN_BY]) == (250_000_000, VICTIM)
    assert other_sig[LATENCY] is None
    assert other_proc[LATENCY] is None


def test_matcher_latency_is_never_negative():
    matcher, seen = DeliveryMatcher(), []
    matcher.on_latency = lambda sig, ns: seen.append(ns)
    generated = slot(0, 5.0)
    matcher.queued(VICTIM, SIGRT, generated)
    matcher.delivered(VICTIM, SIGRT, 4.0, VICTIM, NS)  # clocks of two CPUs: taken "before" queued
    assert (generated[LATENCY], seen) == (0, [0])


def test_matcher_keeps_the_newest_pending_per_key_up_to_its_cap():
    matcher = DeliveryMatcher()
    slots = [slot(i, float(i)) for i in range(PENDING_PER_KEY + 1)]
    for s in slots:
        matcher.queued(VICTIM, SIGRT, s)
    matcher.delivered(VICTIM, SIGRT, 100.0, VICTIM, NS)
    assert slots[0][LATENCY] is None  # pushed out by the 65th
    assert slots[1][LATENCY] == 99_000_000_000


def test_matcher_forgets_the_oldest_key_past_its_bound():
    matcher = DeliveryMatcher()
    oldest = slot(0, 1.0)
    matcher.queued(1, SIGRT, oldest)
    for pid in range(2, MAX_PENDING_DELIVERIES + 2):
        matcher.queued(pid, SIGRT, slot(pid, 1.0))
    matcher.delivered(1, SIGRT, 2.0, 1, NS)
    assert oldest[LATENCY] is None
    newest = slot(0, 1.0)
    matcher.queued(1, SIGRT, newest)
    matcher.delivered(1, SIGRT, 2.0, 1, NS)
    assert newest[LATENCY] == 1_000_000_000


def test_matcher_fills_in_an_event_decoded_before_its_delivery():
    matcher = DeliveryMatcher()
    generated = slot(0, 1.0)
    event = SignalEvent(1.0, EventKind.generate, 100, 100, VICTIM, VICTIM, SIGRT, -1, Result.delivered, 0, 0)
    generated[EVENT] = event
    matcher.queued(VICTIM, SIGRT, generated)
    matcher.delivered(VICTIM, SIGRT, 1.5, 503, NS)
    assert (event.latency_ns, event.taken_tid) == (500_000_000, 503)


def test_matcher_clear_forgets_what_waits():
    matcher, seen = DeliveryMatcher(), []
    matcher.on_latency = lambda sig, ns: seen.append(ns)
    generated = slot(0, 1.0)
    matcher.queued(VICTIM, SIGRT, generated)
    matcher.clear()
    matcher.delivered(VICTIM, SIGRT, 2.0, VICTIM, NS)
    assert (generated[LATENCY], generated[TAKEN_BY], seen) == (None, 0, [])


# ---- sigtop.model.ledger.DeathLedger ----------------------------------------------------------


def folded(*flows, procs=(), ts=1000.0) -> SignalModel:
    model = SignalModel()
    model.apply(Batch(ts=ts, interval_s=1.0, flows=list(flows), procs=list(procs)))
    return model


def sent(sender, sig, ts, syscall=Syscall.kill, code=0, count=1, target=VICTIM, comm="sender"):
    d = delta(key(sender=sender, target=target, sig=sig, syscall=syscall, code=code), count, ts)
    d.sender_comm = comm
    return d


def died(sig, ts=1000.0, pid=VICTIM, core=False, lifetime_ns=0, threads=0, cgroup_id=0, comm="victim"):
    code = CLD_DUMPED if core else CLD_KILLED
    return SignalEvent(
        ts, EventKind.death, pid, pid, 0, 1, sig, code, 0, 0, 0,
        info_value=lifetime_ns, handler=cgroup_id, threads=threads, comm=comm,
    )  # fmt: skip


def death(e: SignalEvent, model: SignalModel, ledger: DeathLedger | None = None) -> Death:
    return (ledger or DeathLedger()).death(e, model.flows.values(), model.registry)


def test_a_death_is_blamed_on_the_newest_sender_of_its_signal():
    model = folded(sent(100, signal.SIGKILL, 990.0), sent(101, signal.SIGKILL, 995.0), sent(102, signal.SIGTERM, 999))
    d = death(died(signal.SIGKILL, 1000.0), model)
    assert (d.cause, d.cause_kind, d.sender_pid) == ("101 sender via kill", "sender", 101)
    assert (d.pid, d.comm, d.sig, d.core, d.parent, d.ts) == (VICTIM, "victim", signal.SIGKILL, False, 1, 1000.0)


def test_sigterm_then_sigkill_from_one_sender_within_the_window_is_a_stop_timeout():
    model = folded(sent(100, signal.SIGTERM, 1000.0), sent(100, signal.SIGKILL, 1000.0 + ESCALATION_S - 1))
    d = death(died(signal.SIGKILL, 1000.0 + ESCALATION_S - 0.5), model)
    assert (d.cause, d.cause_kind, d.sender_pid) == (
        "100 sender via kill, after SIGTERM (stop timeout)",
        "stop-timeout",
        100,
    )


def test_a_sigterm_older_than_the_window_or_from_an_unrelated_sender_is_no_stop_timeout():
    older = folded(sent(100, signal.SIGTERM, 1000.0), sent(100, signal.SIGKILL, 1000.0 + ESCALATION_S))
    d = death(died(signal.SIGKILL, 1000.0 + ESCALATION_S), older)
    assert (d.cause, d.cause_kind) == ("100 sender via kill", "sender")
    # An unrelated process (another program, not of the killer's tree) asked it to stop.
    another = folded(sent(101, signal.SIGTERM, 1000.0, comm="other"), sent(100, signal.SIGKILL, 1001.0))
    d = death(died(signal.SIGKILL, 1002.0), another)
    assert (d.cause, d.cause_kind) == ("100 sender via kill", "sender")


def test_a_sigterm_death_is_never_a_stop_timeout():
    model = folded(sent(100, signal.SIGTERM, 1000.0))
    assert death(died(signal.SIGTERM, 1001.0), model).cause_kind == "sender"


def test_a_recent_sigterm_on_a_long_lived_row_still_makes_a_stop_timeout():
    model = folded(sent(100, signal.SIGTERM, 1000.0))
    model.apply(Batch(ts=2000.0, interval_s=1.0, flows=[sent(100, signal.SIGTERM, 2000.0), sent(100, 9, 2010.0)]))
    assert death(died(signal.SIGKILL, 2011.0), model).cause_kind == "stop-timeout"


def test_a_process_that_signals_itself_killed_itself():
    model = folded(sent(VICTIM, signal.SIGABRT, 999.0, syscall=Syscall.tgkill), sent(VICTIM, 11, 999, Syscall.tgkill))
    d = death(died(signal.SIGABRT, core=True), model)
    assert (d.cause, d.cause_kind, d.sender_pid, d.core) == ("itself (abort)", "self", VICTIM, True)
    d = death(died(signal.SIGSEGV, core=True), model)
    assert (d.cause, d.cause_kind) == ("itself (SIGSEGV)", "self")


def test_a_fault_is_named_by_its_most_frequent_si_code():
    maperr = sent(0, signal.SIGSEGV, 999.0, syscall=Syscall.kernel, code=1)
    accerr = sent(0, signal.SIGSEGV, 999.0, syscall=Syscall.kernel, code=2, count=3)
    d = death(died(signal.SIGSEGV, core=True), folded(maperr, accerr))
    assert (d.cause, d.cause_kind, d.sender_pid) == ("fault (SEGV_ACCERR)", "fault", 0)


def test_an_oom_victim_that_dies_of_sigkill_within_the_window_was_the_oom_killer():
    ledger = DeathLedger()
    chosen_kb = 2048 * 1024
    ledger.oom(SignalEvent(1000.0, EventKind.oom, VICTIM, VICTIM, 0, 0, 0, 0, 0, 0, 0, info_value=chosen_kb))
    model = folded(sent(0, signal.SIGKILL, 1000.0, syscall=Syscall.kernel, code=0x80))
    d = death(died(signal.SIGKILL, 1000.0 + OOM_TO_DEATH_S - 0.1), model, ledger)
    assert (d.cause, d.cause_kind, d.sender_pid) == ("the OOM killer (anon-rss 2048 MiB when chosen)", "oom", 0)
    # Not after the window, not before the choice, not for another signal.
    for late in (died(signal.SIGKILL, 1000.0 + OOM_TO_DEATH_S), died(signal.SIGKILL, 999.0)):
        assert death(late, model, ledger).cause_kind == "kernel"
    assert death(died(signal.SIGTERM, 1001.0), model, ledger).cause_kind == "unknown"


def test_a_sigkill_raised_by_the_kernel_and_other_kernel_signals():
    model = folded(
        sent(0, signal.SIGKILL, 999.0, syscall=Syscall.kernel, code=0x80),
        sent(0, signal.SIGPIPE, 999.0, syscall=Syscall.kernel),
    )
    d = death(died(signal.SIGKILL), model)
    assert (d.cause, d.cause_kind, d.sender_pid) == (
        "the kernel (SI_KERNEL: the OOM killer, or another kernel kill)",
        "kernel",
        0,
    )
    assert death(died(signal.SIGPIPE), model).cause == "the kernel (pipe)"


def test_cgroup_kill_names_its_writer_and_pdeathsig_the_parent():
    model = folded(sent(300, signal.SIGKILL, 999.0, syscall=Syscall.cgroup_kill))
    d = death(died(signal.SIGKILL), model)
    assert (d.cause, d.cause_kind, d.sender_pid) == (
        "300 sender wrote 1 to its cgroup's cgroup.kill",
        "cgroup-kill",
        300,
    )
    model = folded(sent(1, signal.SIGTERM, 999.0, syscall=Syscall.pdeathsig))
    d = death(died(signal.SIGTERM), model)
    assert (d.cause, d.cause_kind, d.sender_pid) == ("its parent 1 sender exited (PR_SET_PDEATHSIG)", "parent-death", 1)


def test_a_death_with_no_flow_of_its_signal_is_not_seen():
    model = folded(sent(100, signal.SIGTERM, 999.0), sent(100, signal.SIGKILL, 999.0, target=VICTIM + 1))
    d = death(died(signal.SIGKILL), model)
    assert d.cause.startswith("not seen (")
    assert (d.cause_kind, d.sender_pid) == ("unknown", 0)


def test_a_death_is_never_blamed_on_a_sender_to_an_earlier_owner_of_its_pid():
    model = folded(sent(100, signal.SIGKILL, 990.0), procs=[ProcInfo(VICTIM, VICTIM, "old", start_ticks=10)])
    model.apply(Batch(ts=1000.0, interval_s=1.0, procs=[ProcInfo(VICTIM, VICTIM, "new", start_ticks=20)]))
    assert model.registry.gen(VICTIM) == 1
    assert death(died(signal.SIGKILL, 1000.0), model).cause_kind == "unknown"


def test_lifetime_is_the_kernels_else_from_the_start_proc_read():
    started = ProcInfo(VICTIM, VICTIM, "proc-comm", started=990.0, cgroup="/proc/cgroup")
    model = folded(procs=[started])
    assert death(died(9, 1000.0, lifetime_ns=2_500_000_000), model).lifetime_s == 2.5
    assert death(died(9, 1000.0), model).lifetime_s == 10.0
    assert death(died(9, 1000.0), folded()).lifetime_s is None


def test_name_and_cgroup_are_the_kernels_else_procs_and_escaped():
    model = folded(procs=[ProcInfo(VICTIM, VICTIM, "proc-comm", cgroup="/proc/cgroup")])
    model.apply(Batch(ts=1000.0, interval_s=1.0, cgroups={7: "/kernel/\x1bcgroup"}))
    d = death(died(9, comm="\x1b[2Jevil", cgroup_id=7), model)
    assert (d.comm, d.cgroup) == ("\\x1b[2Jevil", "/kernel/\\x1bcgroup")
    d = death(died(9, comm="", cgroup_id=8), model)
    assert (d.comm, d.cgroup) == ("proc-comm", "/proc/cgroup")


def test_threads_ended_counts_the_core_dumping_thread_too():
    model = folded()
    assert death(died(signal.SIGKILL, threads=3), model).threads == 3
    assert death(died(signal.SIGTERM, threads=1), model).threads == 1
    assert death(died(signal.SIGSEGV, threads=3, core=True), model).threads == 4
    assert death(died(signal.SIGQUIT, threads=1), model).threads == 2  # a core signal, core written or not
    assert death(died(signal.SIGKILL, threads=0), model).threads is None


# ---- sigtop.registry.ProcessRegistry ---------------------------------------------------------


def proc(pid=VICTIM, comm="first", ticks=0, started=0.0, **kw) -> ProcInfo:
    return ProcInfo(pid, kw.pop("tgid", pid), comm, start_ticks=ticks, started=started, **kw)


def test_a_pid_read_again_for_the_same_process_keeps_its_generation():
    registry = ProcessRegistry()
    assert registry.remember(proc(ticks=100)) is None
    assert registry.remember(proc(comm="renamed", ticks=100)) is None
    assert registry.gen(VICTIM) == 0
    assert registry.proc_of(VICTIM, 0).comm == "renamed"


def test_a_reused_pid_is_a_new_generation_and_the_old_identity_stays_with_its_own():
    registry = ProcessRegistry()
    first = proc(comm="first", ticks=100)
    registry.remember(first)
    assert registry.remember(proc(comm="second", ticks=200)) == 0
    assert registry.remember(proc(comm="third", ticks=300)) == 1
    assert registry.gen(VICTIM) == 2
    assert [registry.proc_of(VICTIM, g).comm for g in (0, 1, 2)] == ["first", "second", "third"]
    assert registry.proc_of(VICTIM, 0) is first
    assert registry.proc_of(VICTIM, 3) is None
    assert registry.procs[VICTIM].comm == "third"


def test_without_start_ticks_start_times_differ_by_more_than_a_tick():
    registry = ProcessRegistry()
    registry.remember(proc(started=1000.0))
    assert registry.remember(proc(started=1000.0 + START_SLACK_S / 2)) is None  # one tick's rounding
    assert registry.remember(proc(started=1001.0)) == 0
    assert registry.gen(VICTIM) == 1


def test_a_pid_whose_owner_exited_unread_is_a_new_generation_after_its_rows():
    registry = ProcessRegistry()
    registry.first_row(VICTIM, 1000.0)
    registry.first_row(VICTIM, 2000.0)  # the current generation's first row stays
    assert registry.remember(proc(started=1000.0 + START_SLACK_S / 2)) is None
    other = ProcessRegistry()
    other.first_row(VICTIM, 1000.0)
    assert other.remember(proc(started=1500.0)) == 0
    assert (other.gen(VICTIM), other.proc_of(VICTIM, 0), other.proc_of(VICTIM, 1).comm) == (1, None, "first")


def test_apply_takes_procs_cgroups_and_dispositions_and_says_which_pids_were_reused():
    registry = ProcessRegistry()
    registry.apply(Batch(ts=1, interval_s=1, procs=[proc(ticks=1), proc(pid=7, ticks=1)]))
    disposition = Disposition(VICTIM, caught=1 << 14, ignored=0, pending=0)
    batch = Batch(
        ts=2,
        interval_s=1,
        procs=[proc(ticks=2), proc(pid=7, ticks=1)],
        cgroups={42: "/sys\x07/" + "x" * (2 * MAX_CMDLINE)},
        dispositions=[disposition],
    )
    assert registry.apply(batch) == [(VICTIM, 0)]
    assert registry.cgroup_paths[42] == "/sys\\x07/" + "x" * (MAX_CMDLINE - 6)
    assert registry.dispositions[VICTIM] is disposition
    registry.set_disposition(VICTIM, 15, 3.0, 1)
    assert registry.disposition_changes[(VICTIM, 15)] == (3.0, 1)


def test_what_a_process_controls_is_escaped_and_capped_where_it_is_kept():
    registry = ProcessRegistry()
    parents = [(i, "p\x1b" + "n" * 100) for i in range(40)]
    cmdline = "\x1b]0;x\x07" + "a" * MAX_CMDLINE
    registry.remember(proc(comm="\x1b[31mred", cmdline=cmdline, user="u\x1b", cgroup="/c\x1b", parents=parents))
    info = registry.procs[VICTIM]
    assert (info.comm, info.user, info.cgroup) == ("\\x1b[31mred", "u\\x1b", "/c\\x1b")
    assert info.cmdline.startswith("\\x1b]0;x\\x07aaa")
    assert info.cmdline.endswith(f"a …[cut at {MAX_CMDLINE} characters]")
    assert len(info.parents) == 32
    assert info.parents[0] == (0, "p\\x1b" + "n" * 62)
    assert registry.proc_text == len(info.cmdline) + len(info.cgroup)


def test_fresh_comm_is_procs_name_for_a_flow_older_than_the_pids_process():
    registry = ProcessRegistry()
    registry.remember(proc(comm="now", started=1000.0))
    assert registry.fresh_comm(VICTIM, "then", 990.0) == "now"
    assert registry.fresh_comm(VICTIM, "then\x1b", 1000.0 - START_SLACK_S / 2) == "then\\x1b"
    assert registry.fresh_comm(VICTIM, "then", 0.0) == "then"  # created when: unknown
    assert registry.fresh_comm(VICTIM + 1, "unknown", 1.0) == "unknown"


def test_threads_belong_to_their_process_and_containers_come_from_cgroups():
    registry = ProcessRegistry()
    registry.remember(proc(pid=VICTIM + 1, tgid=VICTIM, cgroup="/system.slice/nginx.service"))
    assert registry.process_of(VICTIM + 1) == VICTIM
    assert registry.process_of(9999) == 9999
    assert registry.container(VICTIM + 1) == "svc:nginx"
    assert registry.container(9999) == ""


def test_rows_keep_the_identity_of_the_process_they_were_made_for():
    model = folded(sent(100, signal.SIGTERM, 990.0), procs=[proc(comm="old", ticks=10)])
    model.apply(
        Batch(ts=1000.0, interval_s=1.0, procs=[proc(comm="new", ticks=20)], flows=[sent(100, signal.SIGTERM, 1000.0)])
    )
    rows = sorted(model.flows.values(), key=lambda r: r.key.target_gen)
    assert [(r.key.target_gen, r.count) for r in rows] == [(0, 1), (1, 1)]
    assert [model.proc_of(r.key.target_pid, r.key.target_gen).comm for r in rows] == ["old", "new"]


# ---- sigtop.ui.feed.ModelFeed (its own thread, no Textual app) -------------------------------

WAIT_S = 10.0


@pytest.fixture
def replay_feed():
    """A replay's feed on its own thread, ticking fast, and the queue it publishes to."""
    published: queue.Queue[Snapshot] = queue.Queue()
    feed = ModelFeed(SignalModel(), published.put, tick_s=0.01, live=False)
    feed.start()
    yield feed, published
    feed.stop()


def next_with(published: queue.Queue[Snapshot], batches: int) -> Snapshot:
    """The first snapshot published that has folded `batches` batches."""
    while True:
        snap = published.get(timeout=WAIT_S)
        if snap.totals.batches == batches:
            return snap


def test_feed_publishes_frozen_snapshots_of_what_it_folded(replay_feed):
    feed, published = replay_feed
    feed.put(Batch(ts=1000.0, interval_s=2.0, flows=[sent(100, signal.SIGTERM, 999.0, count=10)]))
    snap = next_with(published, 1)
    assert (snap.totals.total_signals, snap.totals.signals_per_sec, snap.totals.flows) == (10, 5.0, 1)
    assert (snap.table.name, len(snap.table.keys), snap.table.selected, snap.table.total) == ("flows", 1, 1, 1)
    assert snap.rows["flows"] == 1
    assert snap.state == "replay"
    for part, field in ((snap, "seq"), (snap.table, "keys"), (snap.totals, "total_signals"), (snap.settings, "table")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, field, None)


def test_a_snapshot_is_not_moved_by_later_folds(replay_feed):
    feed, published = replay_feed
    feed.put(Batch(ts=1000.0, interval_s=1.0, flows=[sent(100, signal.SIGTERM, 999.0, count=10)], map_fill={"f": 0.1}))
    first = next_with(published, 1)
    cells = first.table.cells
    feed.put(
        Batch(
            ts=1001.0,
            interval_s=1.0,
            flows=[sent(100, signal.SIGTERM, 1000.0, count=5)],
            stats=KernelStats(events_lost=3),
            map_fill={"f": 0.9},
        )
    )
    later = next_with(published, 2)
    assert later.seq > first.seq
    assert (later.totals.total_signals, later.totals.stats.events_lost, later.totals.map_fill) == (15, 3, {"f": 0.9})
    assert (first.totals.total_signals, first.totals.stats.events_lost, first.totals.map_fill) == (10, 0, {"f": 0.1})
    assert first.table.cells is cells
    assert first.table.cells != later.table.cells


def test_feed_shows_a_new_view_and_a_failure_at_once():
    published: queue.Queue[Snapshot] = queue.Queue()
    feed = ModelFeed(SignalModel(), published.put, tick_s=3600.0)
    feed.start()
    try:
        assert published.get(timeout=WAIT_S).state == "attaching"  # the first, at start
        feed.view(ViewSettings().showing("deaths"))
        assert published.get(timeout=WAIT_S).table.name == "deaths"
        feed.fail("the collector died")
        snap = published.get(timeout=WAIT_S)
        assert (snap.state, snap.error) == ("failed", "the collector died")
    finally:
        feed.stop()


def test_feed_is_idle_only_once_what_it_folded_is_published():
    published: queue.Queue[Snapshot] = queue.Queue()
    feed = ModelFeed(SignalModel(), published.put, tick_s=3600.0)
    feed.start()
    try:
        published.get(timeout=WAIT_S)
        assert feed.idle.wait(WAIT_S)
        feed.put(Batch(ts=1000.0, interval_s=1.0, flows=[sent(100, signal.SIGTERM, 999.0)]))
        assert feed.idle.wait(WAIT_S)
        assert published.get(timeout=0.5).totals.batches == 1
    finally:
        feed.stop()


def test_a_view_asked_for_during_a_storms_fold_is_published_before_the_fold_ends():
    """A key pressed while the feed folds a storm's batch (120,000 events: ~120 ms here) is
    answered between two of the fold's steps, with every count of the batch already in."""
    from tests.test_model import generate

    published: queue.Queue[Snapshot] = queue.Queue()
    events = [generate(1000.0 + i / 1e6, 100, 101, 200, 200, comm="s") for i in range(3 * EVENTS_PER_STEP)]

    class PressedDuringTheFold(SignalModel):
        def fold_steps(self, batch):
            for n, step in enumerate(super().fold_steps(batch)):
                if n == 0:
                    feed.view(ViewSettings().showing("deaths"))  # as the UI's thread would
                yield step

    feed = ModelFeed(PressedDuringTheFold(), published.put, tick_s=3600.0)
    feed.start()
    try:
        published.get(timeout=WAIT_S)  # the first, at start
        feed.put(Batch(ts=1000.0, interval_s=1.0, flows=[sent(100, signal.SIGTERM, 999.0, count=len(events))],
                       events=events))  # fmt: skip
        answer = published.get(timeout=WAIT_S)
        assert answer.table.name == "deaths"
        assert answer.totals.total_signals == len(events)  # the counts whole
        assert answer.totals.events_kept == EVENTS_PER_STEP  # one step of the events in
        after = published.get(timeout=WAIT_S)  # the batch folded, shown as asked; no second answer
        assert (after.table.name, after.totals.events_kept) == ("deaths", len(events))
        assert feed.idle.wait(WAIT_S)
        assert published.empty()
    finally:
        feed.stop()


def test_a_delivery_in_a_later_step_of_the_fold_is_matched_to_its_signal():
    """The last signal of one step, taken in the next: its latency is still measured."""
    from tests.test_model import generate

    model = SignalModel()
    ignored = [generate(1000.0, 100, 101, 300, 300, result=Result.ignored) for _ in range(EVENTS_PER_STEP - 1)]
    queued = generate(1000.5, 100, 101, 200, 200)
    taken = SignalEvent(queued.ts + 0.00025, EventKind.deliver, 200, 200, 200, 200, 15, 0, 0, 0, 0)
    flows = [delta(key(target=300, tgid=300, result=Result.ignored), len(ignored)), delta(key(target=200, tgid=200), 1)]
    batch = Batch(ts=1001.0, interval_s=1.0, flows=flows, events=[*ignored, queued, taken])
    assert len(list(model.fold_steps(batch))) == 1  # two steps: the generates, then the take
    (row,) = [r for r in model.flows.values() if r.key.target_pid == 200]
    assert [e.latency_ns for e in row.events] == [250_000]


def test_a_rows_events_share_one_flow_key_and_are_its_last_ones_across_batches():
    """Memory: 100,000 kept events each with its own FlowKey were 11 MB of a churn's model."""
    from sigtop.events import EventBlock, pack_records
    from tests.test_model import LAYOUT, generate

    model = SignalModel()
    k = key(target=200, tgid=200)
    for n in range(3):
        objects = [generate(1000.0 + n + i / 1e4, 100, 101, 200, 200, comm="s") for i in range(150)]
        block = EventBlock(pack_records(objects, LAYOUT, 1000.0), LAYOUT, 1000.0)
        model.apply(Batch(ts=1000.0 + n, interval_s=1.0, flows=[delta(k, len(objects))], events=block))
    (row,) = model.flows.values()
    assert len(row.events) == EVENTS_PER_ROW
    assert [e.ts for e in row.events] == sorted(e.ts for e in row.events)
    assert row.events[-1].ts == pytest.approx(1002.0 + 149 / 1e4)
    assert len({id(e.flow) for e in row.events}) == 1
