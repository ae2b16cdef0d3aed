"""The kernel ABI (bpf/sigtop.h) against the Python side: no root, no BCC.

The header is the one definition of what the BPF C and Python share, and
Python reads it (sigtop.abi). These tests hold that reading to a C
compiler's: every field's offset and size, every enum member and constant,
as gcc lays them out for this ABI; and the decoders to the declarations.
(At every attach the collector also holds the layout BCC compiled to the
header: sigtop.live.layout.)
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import shutil
import signal
import subprocess

import pytest

from sigtop.abi import field_layout, header_text, kernel_abi, parse
from sigtop.events import _KIND_FIELDS, FLOW_FIELDS, EventBlock, EventLayout, pack_records
from sigtop.live.config import TraceConfig
from sigtop.live.loader import bpf_source_text
from sigtop.names import (
    CLD_CONTINUED,
    CLD_DUMPED,
    CLD_EXITED,
    CLD_KILLED,
    CODE_OTHER,
    EXIT_SIGNAL_MASK,
    KERNEL_SIGRTMIN,
    SI_TIMER,
    SIG_INVALID,
    STAT_NAMES,
    EventKind,
    Result,
    Syscall,
    kernel_origin,
    known_code,
    si_code_name,
)
from sigtop.wire import LAT_BUCKETS, LAT_FIRST_LOG2, FlowKey, SignalEvent, latency_bucket_bounds

HEADER = header_text()
ABI = kernel_abi()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, int]:
    """What gcc makes of the header: offsetof/sizeof of every leaf field, every enum member and constant."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to check the kernel ABI (make setup installs it)"
    lines = []
    for name, ctype in ABI.structs.items():
        lines.append(f'P("sizeof {name}", sizeof(struct {name}));')
        for path, _offset, _size in field_layout(ctype):
            lines.append(f'P("{name}.{path} @", offsetof(struct {name}, {path}));')
            lines.append(f'P("{name}.{path} #", sizeof(((struct {name} *)0)->{path}));')
    for members in ABI.enums.values():
        lines += [f'P("{member}", (long long){member});' for member in members]
    lines += [f'P("{constant}", (long long)({constant}));' for constant in ABI.constants]
    sizes = " ".join(f"-D{k}={v}" for k, v in TraceConfig().map_sizes().items())
    program = (
        "#include <stdio.h>\n#include <stddef.h>\n"
        "typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;\n"
        "typedef unsigned long long u64; typedef signed char s8; typedef short s16; typedef int s32;\n"
        "typedef long long s64;\n"
        '#include "sigtop.h"\n'
        '#define P(what, value) printf("%s=%lld\\n", what, (long long)(value))\n'
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n"
    )
    work = tmp_path_factory.mktemp("abi")
    (work / "sigtop.h").write_text(HEADER)
    (work / "layout.c").write_text(program)
    subprocess.run([gcc, *sizes.split(), "-o", str(work / "layout"), str(work / "layout.c")], check=True, cwd=work)
    out = subprocess.run([str(work / "layout")], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split("=", 1) for line in out.splitlines())}


def test_every_field_is_where_the_compiler_puts_it(compiled):
    for name, ctype in ABI.structs.items():
        assert ctypes.sizeof(ctype) == compiled[f"sizeof {name}"], name
        for path, offset, size in field_layout(ctype):
            assert (offset, size) == (compiled[f"{name}.{path} @"], compiled[f"{name}.{path} #"]), f"{name}.{path}"


def test_every_enum_member_and_constant_is_the_compilers(compiled):
    for members in ABI.enums.values():
        for member, value in members.items():
            assert value == compiled[member], member
    for constant, value in ABI.constants.items():
        assert value == compiled[constant], constant


def test_the_python_enums_are_the_headers():
    assert {m.name: m.value for m in Syscall} == ABI.members("syscall_id", "SC_")
    assert {m.name: m.value for m in Result} == ABI.members("result_id", "RES_")
    assert {m.name: m.value for m in EventKind} == ABI.members("event_kind", "EV_")
    assert tuple(n for n in ABI.members("stat_id", "STAT_") if n != "max") == STAT_NAMES
    assert len(STAT_NAMES) == ABI.enums["stat_id"]["STAT_MAX"]
    # what the code names: each must exist in the header
    assert all(m.name for m in (Result.delivered, Result.failed, Syscall.pidfd_send_signal, EventKind.death))
    assert (ABI.constants["CODE_OTHER"], ABI.constants["SIG_INVALID"]) == (CODE_OTHER, SIG_INVALID)
    assert len(Result) <= ABI.constants["OVERFLOW_RESULTS"]


def test_the_kernel_values_the_header_states_are_the_kernels():
    """The kernel's own values in the header, held to the C library's (as Python's os gives them)."""
    assert (CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_CONTINUED) == (
        os.CLD_EXITED,
        os.CLD_KILLED,
        os.CLD_DUMPED,
        os.CLD_CONTINUED,
    )
    assert all(os.WTERMSIG(status) == status & EXIT_SIGNAL_MASK for status in (0, 9, 0x86, 0x7F, 0xFFFF))
    assert max(s for s in signal.Signals if not s.name.startswith("SIGRT")) < KERNEL_SIGRTMIN <= signal.SIGRTMIN
    assert ABI.constants["RT_LAST_SIGNAL"] == signal.SIGRTMAX
    assert si_code_name(signal.SIGALRM, SI_TIMER) == "SI_TIMER"
    assert kernel_origin(signal.SIGRTMIN, SI_TIMER) == "timer"


def test_the_reader_refuses_what_it_does_not_understand():
    from sigtop.abi import AbiError

    for bad in ("struct a { float x; };", "struct a { u32 x:3; };", "struct b { struct nope x; };"):
        with pytest.raises(AbiError):
            parse(bad)
    assert parse("#define N (2 * 3)\nstruct a { u8 x[N]; };").structs["a"].x.size == 6


def test_flow_keys_are_read_in_the_kernels_order():
    fields = [f for f, _o, _s in field_layout(ABI.struct("flow_key")) if f != "pad"]
    assert fields == list(FLOW_FIELDS)
    assert [f.replace("sender_tgid", "sender_pid") for f in fields] == [f.name for f in dataclasses.fields(FlowKey)]


def test_every_payload_field_is_decoded_and_each_kind_has_a_payload():
    union = dict(ABI.struct("event")._fields_)["u"]
    names = {name for name, _t in union._fields_}
    assert {payload for payload, _mapping in _KIND_FIELDS.values()} == names
    assert set(_KIND_FIELDS) == set(EventKind)
    for kind, (payload, mapping) in _KIND_FIELDS.items():
        declared = {p.split(".")[0] for p, _o, _s in field_layout(dict(union._fields_)[payload]) if p != "pad"}
        used = set((mapping or {}).values()) if mapping else declared
        unread = declared - used - {"flow", "pad"}
        assert not unread, f"{EventKind(kind).name}: {payload} fields nobody decodes: {unread}"


def _event(kind: EventKind, **fields) -> SignalEvent:
    header = {"ts": 1000.5, "kind": int(kind), "sender_pid": 4242, "sender_tid": 4243}
    zeros = dict.fromkeys(("target_pid", "target_tgid", "sig", "code", "result", "ret", "syscall"), 0)
    return SignalEvent(**{**header, **zeros, **fields})


def test_each_kind_decodes_from_its_own_payload():
    """Packed as the kernel writes them and decoded: every kind's event comes back field for field."""
    kill = FlowKey(4242, 77, 77, 15, 0, 0, int(Syscall.kill), int(Result.delivered))
    failed = FlowKey(4242, 0, 0, SIG_INVALID, 0, 22, int(Syscall.kill), int(Result.failed))
    events = [
        _event(EventKind.generate, target_pid=77, target_tgid=77, sig=15, result=int(Result.delivered),
               syscall=int(Syscall.kill), arg_pid=77, group=1, flow=kill),
        _event(EventKind.send_done, target_pid=123, sig=100, code=0, result=int(Result.failed), ret=-22,
               syscall=int(Syscall.kill), arg_pid=123, comm="prober", flow=failed),
        _event(EventKind.deliver, target_pid=4243, target_tgid=4242, sig=10, code=-6, handler=0x401000, sa_flags=4),
        _event(EventKind.signalfd, syscall=int(Syscall.signalfd4), arg_pid=-1, ret=5, handler=1 << 14,
               flags=0o2000000, has_info=True, comm="daemon"),
        _event(EventKind.unmatched_sigreturn, target_pid=4243, target_tgid=4242, comm="exploit"),
        _event(EventKind.death, target_pid=1, target_tgid=1, sig=9, code=2, info_value=12_000_000, handler=5678,
               comm="victim"),
        _event(EventKind.oom, sender_pid=999, target_tgid=999, info_uid=1000, info_value=123_456),
        _event(EventKind.sigaction, target_pid=4242, target_tgid=4242, sig=15, handler=1, sa_flags=0),
    ]  # fmt: skip
    layout = EventLayout.for_records(8, 136)
    block = EventBlock(pack_records(events, layout, 1000.0), layout, 1000.0)
    decoded = list(block)
    for want, got in zip(events, decoded, strict=True):
        if want.kind == EventKind.oom:
            got.sender_tid = want.sender_tid  # the header's thread is the allocating task's
        assert got == want, EventKind(want.kind).name
    hot = list(block.hot())
    assert hot[0][4] == kill.as_tuple()
    assert hot[2][5] == signal.SIGUSR1  # a delivery's signal, from its own payload


def test_map_sizes_come_from_the_trace_configuration():
    required = set(re.findall(r"#ifndef (\w+)\n#error", HEADER))
    flags = TraceConfig().cflags()
    defined = {f.removeprefix("-D").split("=")[0] for f in flags if f.startswith("-D")}
    assert required == set(TraceConfig().map_sizes())
    assert required <= defined
    program = bpf_source_text()
    assert '#include "sigtop.h"' in program
    assert '#include "' not in program.replace('#include "sigtop.h"', "")  # every *.bpf.h is in place
    # The program sizes no map with a literal: each size is a -D from the configuration.
    assert not re.findall(r"BPF_(?:HASH|TABLE)\([^)]*,\s*\d+\)", program)


def test_the_program_does_not_define_the_shared_types_again():
    program = bpf_source_text().replace(HEADER, "")
    for enum in ABI.enums:
        assert f"enum {enum} {{" not in program
    for struct in ABI.structs:
        assert f"struct {struct} {{" not in program
    for constant in ABI.constants:  # SIGRTMIN, CLD_*, ...: the header's, never restated
        assert not re.search(rf"#\s*define\s+{constant}\b", program), constant


def test_the_code_folding_matches():
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


def test_the_drain_and_the_settler_read_fields_the_header_has():
    def names(struct: str) -> set[str]:
        return {p.split(".")[0] for p, _o, _s in field_layout(ABI.struct(struct))}

    assert {"sigreturns", "handler_deliveries", "deliveries", "unmatched", "tgid", "comm"} <= names("thread_val")
    assert names("signalfd_key") == {"tgid", "fd"}
    assert {"mask", "calls", "created_ts", "last_ts", "flags", "comm"} <= names("signalfd_val")
    assert names("pending_key") == {"owner", "sig", "shared", "old_leader", "seq"}
    assert names("pending_val") == {"flow", "ts"}
    assert names("rt_queue") == {"head", "tail", "records_owner", "pad"}
    assert {"mask", "ts", "exit_code"} <= names("exit_val")
    assert {"taken", "read", "untracked", "lat_max", "lat_sum", "lat_hist"} <= names("flow_val")


def test_latency_buckets_are_the_kernels():
    """wire.latency_bucket_bounds against a Python copy of the C's latency_bucket()."""

    def kernel_bucket(ns: int) -> int:  # bpf/fates.bpf.h latency_bucket(), line for line
        b = ns.bit_length() - 1 if ns else 0
        if b < LAT_FIRST_LOG2:
            return 0
        i = (b - LAT_FIRST_LOG2) * 2 + ((ns >> (b - 1)) & 1)
        return min(i, LAT_BUCKETS - 1)

    for ns in [0, 1, 511, 512, 767, 768, 1023, 1024, 1535, 1536, 10**6, 3 * 10**9, 2**40, 2**62]:
        low, high = latency_bucket_bounds(kernel_bucket(ns))
        assert low <= ns < high, (ns, kernel_bucket(ns), low, high)
