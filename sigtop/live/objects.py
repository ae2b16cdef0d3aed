"""The compiled program, loaded and attached by this process with bpf(2) alone.

A compiled program (sigtop.live.build makes one with BCC, in a child) is
the bytecode of each probe, every map's definition and the compiler's BTF:
a plain JSON document, kept in sigtop.live.cache. Loading it here is what
BCC does after its compile, done directly: create the maps, put their fds
into the bytecode where the compiler referred to each map, load each
program (the kernel's verifier checks it as it would BCC's) and attach it.
It takes tens of milliseconds where a compile takes most of a second, and
this process never maps BCC's LLVM.

The maps' key and value types are the ctypes classes of bpf/sigtop.h
(sigtop.abi), named by the program's own map declarations; every size is
checked against what the compiler made.
"""

from __future__ import annotations

import base64
import ctypes
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigtop.abi import _SCALARS, kernel_abi
from sigtop.live import bpfsys

FORMAT = 1  # of a compiled program's document: a reader refuses any other

# enum bpf_map_type / bpf_prog_type values sigtop uses (include/uapi/linux/bpf.h).
PERCPU_MAP_TYPES = {5, 6, 10}  # percpu_hash, percpu_array, lru_percpu_hash
HASH_MAP_TYPES = {1, 5, 9, 10}  # hash, percpu_hash, lru_hash, lru_percpu_hash
RINGBUF_MAP_TYPE = 27
PROG_TYPE_TRACEPOINT, PROG_TYPE_RAW_TRACEPOINT = 5, 17
BPF_LD_IMM64, BPF_PSEUDO_MAP_FD = 0x18, 1

# The probes' names as BCC's macros make them: TRACEPOINT_PROBE(cat, event) and RAW_TRACEPOINT_PROBE(event).
TRACEPOINT_PREFIX, RAW_PREFIX = "tracepoint__", "raw_tracepoint__"

TRACEFS_EVENTS = (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events"))


class LoadError(Exception):
    """The compiled program could not be loaded or attached here (one line)."""


# ---- the map declarations of the program's source ---------------------------------------

_DECLARATIONS = (
    # (pattern, name group, key type group or a fixed key type, value type group)
    (re.compile(r"\bBPF_HASH\((\w+),\s*([^,()]+?),\s*([^,()]+?),\s*\w+\)"), 1, 2, 3),
    (re.compile(r'\bBPF_TABLE\("\w+",\s*([^,()]+?),\s*([^,()]+?),\s*(\w+),\s*\w+\)'), 3, 1, 2),
    (re.compile(r"\bBPF_(?:PERCPU_)?ARRAY\((\w+),\s*([^,()]+?),\s*\w+\)"), 1, "int", 2),
    (re.compile(r"\bBPF_TASK_STORAGE\((\w+),\s*([^,()]+?)\)"), 1, "int", 2),
    (re.compile(r"\bBPF_RINGBUF_OUTPUT\((\w+),\s*\w+\)()"), 1, "", 2),  # no key, no value
)


def _ctype(text: str) -> type | None:
    """The ctypes class of a map's key or value type; None for a struct only the program knows
    (kept in the kernel, never read here: bpf/common.bpf.h's struct inflight)."""
    text = " ".join(text.split())
    if not text:
        return None
    if text.startswith("struct "):
        return kernel_abi().structs.get(text.removeprefix("struct "))
    if text in _SCALARS:
        return _SCALARS[text]
    raise LoadError(f"a map of the program has a type sigtop does not read: {text}")


def map_declarations(source: str) -> dict[str, list[tuple[type | None, type | None]]]:
    """Each map's (key, value) ctypes, by name, from its BCC declaration in the source: a name
    declared twice (one per compile-time switch) has both, and the sizes tell which was compiled."""
    found: dict[str, list[tuple[type | None, type | None]]] = {}
    for pattern, name, key, value in _DECLARATIONS:
        for match in pattern.finditer(source):
            key_type = _ctype(key if isinstance(key, str) else match.group(key))
            found.setdefault(match.group(name), []).append((key_type, _ctype(match.group(value))))
    return found


# ---- a map, as the drain reads it -------------------------------------------------------


@dataclass(frozen=True)
class MapSpec:
    """One map as the compiler defined it (from the kernel's bpf_map_info in the compiling child)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_key: int = 0
    btf_value: int = 0


def possible_cpus() -> int:
    """How many CPUs a per-CPU map holds a value for (possible, not online: the kernel's own count)."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


class MapView:
    """One map by fd, read and written as the collector needs (the part of BCC's Table API it used)."""

    def __init__(self, spec: MapSpec, fd: int, key: type, leaf: type) -> None:
        self.spec, self.map_fd, self.Key, self.Leaf = spec, fd, key, leaf
        self.percpu = spec.type in PERCPU_MAP_TYPES
        self._cpus = possible_cpus() if self.percpu else 1
        self._stride = (spec.value_size + 7) // 8 * 8 if self.percpu else spec.value_size

    def __len__(self) -> int:
        return self.spec.max_entries

    def _value(self, raw: bytes, at: int = 0) -> Any:
        if not self.percpu:
            return self.Leaf.from_buffer_copy(raw, at)
        values = [self.Leaf.from_buffer_copy(raw, at + cpu * self._stride) for cpu in range(self._cpus)]
        return values if _is_struct(self.Leaf) else [v.value for v in values]

    def items_lookup_batch(self) -> list[tuple[Any, Any]]:
        keys, values, count = bpfsys.lookup_batch(
            self.map_fd, self.spec.key_size, self._stride * self._cpus, self.spec.max_entries
        )
        size, width = self.spec.key_size, self._stride * self._cpus
        return [(self.Key.from_buffer_copy(keys, i * size), self._value(values, i * width)) for i in range(count)]

    def __getitem__(self, key: Any) -> Any:
        raw = bpfsys.lookup(self.map_fd, bytes(key), self._stride * self._cpus)
        if raw is None:
            raise KeyError(key)
        return self._value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        bpfsys.update(self.map_fd, bytes(key), bytes(value))

    def pop(self, key: Any, default: Any = None) -> Any:
        raw = bpfsys.lookup_and_delete(self.map_fd, bytes(key), self._stride * self._cpus)
        return default if raw is None else self._value(raw)

    def sum(self, key: Any) -> Any:
        """A per-CPU scalar summed over the CPUs (BCC's PerCpuArray.sum)."""
        return self.Leaf(sum(self[key]))


def _is_struct(ctype: type) -> bool:
    return issubclass(ctype, ctypes.Structure | ctypes.Union)


@dataclass
class Probe:
    fd: int


@dataclass
class LoadedObjects:
    """The loaded program: maps by name, programs by BCC's function name, and what attaches them."""

    maps: dict[bytes, MapView] = field(default_factory=dict)
    funcs: dict[bytes, Probe] = field(default_factory=dict)
    tracepoint_fds: dict[str, int] = field(default_factory=dict)  # perf events (slow to free: see loader)
    raw_fds: list[int] = field(default_factory=list)
    btf_fd: int = -1

    def __getitem__(self, name: bytes) -> MapView:
        return self.maps[name]

    def cleanup(self) -> None:
        """Stop every probe at once, then close everything. Safe to call twice."""
        for fd in self.tracepoint_fds.values():
            try:
                bpfsys.perf_event_disable(fd)
            except OSError:
                pass
        for fd in [*self.tracepoint_fds.values(), *self.raw_fds, *(p.fd for p in self.funcs.values())]:
            _close(fd)
        for view in self.maps.values():
            _close(view.map_fd)
        if self.btf_fd >= 0:
            _close(self.btf_fd)
        self.tracepoint_fds, self.raw_fds, self.funcs, self.maps, self.btf_fd = {}, [], {}, {}, -1


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# ---- loading ----------------------------------------------------------------------------


def tracepoint_id(category: str, event: str) -> int:
    for events in TRACEFS_EVENTS:
        try:
            return int((events / category / event / "id").read_text())
        except (OSError, ValueError):
            continue
    raise LoadError(f"no tracepoint {category}/{event} in tracefs")


def attach_point(function: str) -> tuple[str, str] | None:
    """("tracepoint", "cat/event") or ("raw", "event") for a probe's function name; None for others."""
    if function.startswith(TRACEPOINT_PREFIX):
        category, _, event = function.removeprefix(TRACEPOINT_PREFIX).partition("__")
        return "tracepoint", f"{category}/{event}"
    if function.startswith(RAW_PREFIX):
        return "raw", function.removeprefix(RAW_PREFIX)
    return None


def kernel_name(function: str) -> str:
    """The name the kernel (and bpftool) shows for a probe: its event, 15 characters."""
    point = attach_point(function)
    return (point[1].split("/")[-1] if point else function)[:15]


def load(program: dict[str, Any], source: str, self_tgid: int) -> LoadedObjects:
    """Create the maps, load and attach every probe of a compiled program; LoadError on failure
    (everything made so far is closed again)."""
    if program.get("format") != FORMAT:
        raise LoadError(f"a compiled program of format {program.get('format')!r}, not {FORMAT}")
    objects = LoadedObjects()
    try:
        _load(objects, program, source, self_tgid)
    except LoadError:
        objects.cleanup()
        raise
    except (OSError, LookupError, ValueError, TypeError, AttributeError, struct.error, ctypes.ArgumentError) as exc:
        objects.cleanup()
        raise LoadError(str(exc) or type(exc).__name__) from None
    return objects


def _load(objects: LoadedObjects, program: dict[str, Any], source: str, self_tgid: int) -> None:
    declared = map_declarations(source)
    if program.get("btf"):
        objects.btf_fd = bpfsys.btf_load(base64.b64decode(program["btf"]))
    for entry in program["maps"]:
        spec = MapSpec(**entry)
        btf = objects.btf_fd if spec.btf_key or spec.btf_value else 0
        try:
            fd = bpfsys.map_create(
                spec.type,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.flags,
                spec.name,
                btf,
                spec.btf_key,
                spec.btf_value,
            )
        except OSError as exc:
            raise LoadError(f"map {spec.name}: {exc.strerror}") from None
        key, leaf = _types(spec, declared.get(spec.name, []))
        objects.maps[spec.name.encode()] = MapView(spec, fd, key, leaf)
    fds = {name.decode(): view.map_fd for name, view in objects.maps.items()}
    for entry in program["programs"]:
        code = bytearray(base64.b64decode(entry["insns"]))
        for at, name in entry["maps"]:  # the compiler's map references: the fds of this process's maps
            op, regs = code[at * 8], code[at * 8 + 1]
            if op != BPF_LD_IMM64 or regs >> 4 != BPF_PSEUDO_MAP_FD:
                raise LoadError(f"{entry['name']}: instruction {at} does not refer to a map")
            struct.pack_into("<i", code, at * 8 + 4, fds[name])
        prog_type = PROG_TYPE_RAW_TRACEPOINT if entry["name"].startswith(RAW_PREFIX) else PROG_TYPE_TRACEPOINT
        try:
            fd = bpfsys.prog_load(
                prog_type, bytes(code), kernel_name(entry["name"]), program["license"].encode(), program["kern_version"]
            )
        except OSError as exc:
            raise LoadError(f"the kernel refused {kernel_name(entry['name'])}: {exc.strerror}") from None
        objects.funcs[entry["name"].encode()] = Probe(fd)
    excluded = objects.maps.get(b"excluded_tgid")
    if excluded is None:
        raise LoadError("the compiled program has no excluded_tgid map")
    excluded[excluded.Key(0)] = excluded.Leaf(self_tgid)
    for name, probe in objects.funcs.items():  # attach last: no probe runs before every map is ready
        kind, point = attach_point(name.decode()) or ("", "")
        try:
            if kind == "tracepoint":
                objects.tracepoint_fds[point] = bpfsys.tracepoint_attach(tracepoint_id(*point.split("/")), probe.fd)
            elif kind == "raw":
                objects.raw_fds.append(bpfsys.raw_tracepoint_open(point, probe.fd))
        except OSError as exc:
            raise LoadError(f"could not attach {point}: {exc.strerror}") from None


def _types(spec: MapSpec, candidates: list[tuple[type | None, type | None]]) -> tuple[type, type]:
    if spec.type == RINGBUF_MAP_TYPE:
        return ctypes.c_uint8, ctypes.c_uint8  # never read by key
    for declared_key, declared_leaf in candidates:
        # A type only the program knows stands for bytes of the compiled size (never read here).
        key = declared_key or ctypes.c_uint8 * spec.key_size
        leaf = declared_leaf or ctypes.c_uint8 * spec.value_size
        if ctypes.sizeof(key) == spec.key_size and ctypes.sizeof(leaf) == spec.value_size:
            return key, leaf
    raise LoadError(
        f"map {spec.name}: the compiled key and value are {spec.key_size} and {spec.value_size} bytes,"
        " no declaration in the source says so: a sigtop bug"
    )
