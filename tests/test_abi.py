"""The kernel ABI (bpf/sigtop.h) against the Python side: no root, no BCC, no compiler.

The header is the one definition of what the BPF C and Python share; this
reads it as text and fails, naming the difference, when Python disagrees.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from sigtop.live.config import TraceConfig
from sigtop.live.layout import C_HOT_FIELDS, DECODED_FIELDS
from sigtop.live.loader import abi_header_text, bpf_source_text
from sigtop.live.maps import STAT_NAMES
from sigtop.names import EventKind, Result, Syscall
from sigtop.records import FlowKey, SignalEvent

HEADER = abi_header_text()


def c_enum(name: str) -> dict[str, int]:
    """An enum of the header, as {NAME: value}, implicit values counted as C does."""
    body = re.search(rf"enum {name} \{{(.*?)\}};", HEADER, re.S)
    assert body, f"enum {name} is not in bpf/sigtop.h"
    values: dict[str, int] = {}
    following = 0
    for raw in re.sub(r"//[^\n]*", "", body.group(1)).split(","):
        item = raw.strip()
        if not item:
            continue
        ident, _, value = (part.strip() for part in item.partition("="))
        following = int(value, 0) if value else following
        values[ident] = following
        following += 1
    return values


def c_struct_fields(name: str) -> list[str]:
    body = re.search(rf"struct {name} \{{(.*?)\}};", HEADER, re.S)
    assert body, f"struct {name} is not in bpf/sigtop.h"
    text = re.sub(r"//[^\n]*", "", body.group(1))
    return [re.sub(r"\[.*\]", "", decl.split()[-1]) for decl in text.split(";") if decl.strip()]


def python_name(c_name: str, prefix: str) -> str:
    return c_name.removeprefix(prefix).lower()


@pytest.mark.parametrize(
    ("enum", "prefix", "python"),
    [("syscall_id", "SC_", Syscall), ("result_id", "RES_", Result), ("event_kind", "EV_", EventKind)],
)
def test_enums_match(enum, prefix, python):
    c_values = {python_name(n, prefix): v for n, v in c_enum(enum).items()}
    assert c_values == {m.name: m.value for m in python}


def test_stat_slots_match():
    slots = {python_name(n, "STAT_"): v for n, v in c_enum("stat_id").items()}
    count = slots.pop("max")
    assert count == len(STAT_NAMES)
    assert [n for n, _ in sorted(slots.items(), key=lambda kv: kv[1])] == list(STAT_NAMES)


def test_flow_key_fields_match():
    c_fields = [f for f in c_struct_fields("flow_key") if f != "pad"]
    python = [f.name for f in dataclasses.fields(FlowKey)]
    assert ["sender_pid" if f == "sender_tgid" else f for f in c_fields] == python


def test_event_fields_the_model_reads_are_in_order():
    c_fields = c_struct_fields("event")
    assert [f for f in c_fields if f in C_HOT_FIELDS] == C_HOT_FIELDS
    missing = set(DECODED_FIELDS) - set(c_fields)
    assert not missing
    python = {f.name for f in dataclasses.fields(SignalEvent)}
    for c_field in c_fields:
        if c_field != "pad":
            assert c_field.replace("sender_tgid", "sender_pid") in python, c_field


def test_thread_and_signalfd_fields_the_drain_reads():
    assert {"sigreturns", "handler_deliveries", "deliveries", "unmatched", "tgid", "comm"} <= set(
        c_struct_fields("thread_val")
    )
    assert c_struct_fields("signalfd_key") == ["tgid", "fd"]
    assert {"mask", "calls", "created_ts", "last_ts", "flags", "comm"} <= set(c_struct_fields("signalfd_val"))


def test_map_sizes_come_from_the_trace_configuration():
    required = set(re.findall(r"#ifndef (\w+)\n#error", HEADER))
    flags = TraceConfig().cflags(self_tgid=1)
    defined = {f.removeprefix("-D").split("=")[0] for f in flags if f.startswith("-D")}
    assert required == set(TraceConfig().map_sizes())
    assert required <= defined
    program = bpf_source_text()
    assert '#include "sigtop.h"' in program
    # The program sizes no map with a literal: each size is a -D from the configuration.
    assert not re.findall(r"BPF_(?:HASH|TABLE)\([^)]*,\s*\d+\)", program)


def test_the_program_does_not_define_the_shared_types_again():
    program = bpf_source_text()
    for shared in ("enum syscall_id", "enum result_id", "enum event_kind", "enum stat_id"):
        assert f"{shared} {{" not in program
    for struct in ("flow_key", "flow_val", "thread_val", "signalfd_key", "signalfd_val", "event"):
        assert f"struct {struct} {{" not in program


def test_the_code_folding_matches():
    from sigtop.names import CODE_OTHER, known_code

    assert f"#define CODE_OTHER {CODE_OTHER:#x}" in HEADER
    program = bpf_source_text()
    assert "if ((code >= -7 && code <= 0x80) || code == -60)" in program  # what known_code mirrors
    assert [known_code(c) for c in (-60, -8, -7, 0, 0x80, 0x81, -(2**31))] == [
        -60,
        CODE_OTHER,
        -7,
        0,
        0x80,
        CODE_OTHER,
        CODE_OTHER,
    ]


def test_overflow_slots_match():
    from sigtop.live.maps import OVERFLOW_RESULTS, OVERFLOW_SIGNALS

    assert f"#define OVERFLOW_SIGNALS {OVERFLOW_SIGNALS}" in HEADER
    assert f"#define OVERFLOW_RESULTS {OVERFLOW_RESULTS}" in HEADER
    assert len(Result) <= OVERFLOW_RESULTS


def test_the_tests_ctypes_event_matches_the_header():
    from tests.test_model import CEvent

    assert [name for name, _ in CEvent._fields_] == c_struct_fields("event")


def test_the_fates_structures_the_settler_reads():
    from sigtop.records import LAT_BUCKETS, LAT_FIRST_LOG2

    assert c_struct_fields("pending_key") == ["owner", "sig", "shared", "pad", "seq"]
    assert c_struct_fields("pending_val") == ["flow", "ts"]
    assert c_struct_fields("rt_queue") == ["head", "tail"]
    assert c_struct_fields("exit_val")[:3] == ["mask", "ts", "exit_code"]
    assert {"taken", "read", "untracked", "lat_max", "lat_hist"} <= set(c_struct_fields("flow_val"))
    assert f"#define LAT_FIRST_LOG2 {LAT_FIRST_LOG2}" in HEADER
    assert f"#define LAT_BUCKETS {LAT_BUCKETS}" in HEADER


def test_latency_buckets_are_the_kernels():
    """records.latency_bucket_bounds against a Python copy of the C's latency_bucket()."""
    from sigtop.records import LAT_BUCKETS, LAT_FIRST_LOG2, latency_bucket_bounds

    def kernel_bucket(ns: int) -> int:  # bpf/sigtop.bpf.c latency_bucket(), line for line
        b = ns.bit_length() - 1 if ns else 0
        if b < LAT_FIRST_LOG2:
            return 0
        i = (b - LAT_FIRST_LOG2) * 2 + ((ns >> (b - 1)) & 1)
        return min(i, LAT_BUCKETS - 1)

    for ns in [0, 1, 511, 512, 767, 768, 1023, 1024, 1535, 1536, 10**6, 3 * 10**9, 2**40, 2**62]:
        low, high = latency_bucket_bounds(kernel_bucket(ns))
        assert low <= ns < high, (ns, kernel_bucket(ns), low, high)


def test_the_invalid_signal_key_matches():
    from sigtop.names import SIG_INVALID, signame

    assert f"#define SIG_INVALID {SIG_INVALID}" in HEADER
    assert signame(SIG_INVALID) == "(invalid)"
