"""Compile the BPF program with BCC in a short-lived child, into a compiled program (JSON).

BCC's compile is sigtop's only use of LLVM, and its peak: about 75 MB of
the compiler's code and 150 MB of RSS in all. Run in a child, none of it
stays in the process that traces for hours; the child prints the program
(each probe's bytecode, which map each instruction refers to, every map's
definition, the compiler's BTF) and exits, and sigtop.live.objects loads
that. Nothing the child made in the kernel (BCC creates the maps as it
compiles) outlives it.

    python -m sigtop.live.build < {"source": ..., "cflags": [...]} > compiled program
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sigtop.live import bpfsys, objects
from sigtop.live.preflight import CollectorError

MAP_INFO_SIZE = 88  # struct bpf_map_info, up to map_extra
COMPILE_TIMEOUT_S = 120
PR_SET_PDEATHSIG = 1
ABI_HEADER = "sigtop.h"  # the one include the program's -I must find (plain C: the kernel ABI)


@contextmanager
def include_dir() -> Iterator[Path]:
    """A real directory holding sigtop.h, for the compiler's -I (package data may be zipped)."""
    with resources.as_file(resources.files("sigtop.bpf").joinpath(ABI_HEADER)) as header:
        yield Path(header).parent


class StderrCapture:
    """Capture fd 2 around BCC's compile, which prints clang's output straight to it."""

    def __enter__(self) -> StderrCapture:
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode(errors="replace")
        self.file.close()


def compile_program(source: str, cflags: list[str]) -> dict[str, Any]:
    """Compile and describe (this process must be about to exit: BCC's module stays loaded)."""
    from sigtop.live import preflight

    bcc = preflight.import_bcc()

    class Compiled(bcc.BPF):
        def _trace_autoload(self) -> None:  # compile and create the maps; load and attach nothing
            pass

    failure: Exception | None = None
    with include_dir() as include, StderrCapture() as captured:
        try:
            compiled = Compiled(text=source.encode(), cflags=[*cflags, f"-I{include}"])
        except Exception as exc:  # BCC raises bare Exception on a failed compile
            failure = exc
    if failure is not None:  # clang's words are read once the capture has ended
        errors = [line for line in captured.text.splitlines() if "error" in line]
        raise CollectorError(errors[0].strip() if errors else str(failure)) from None
    lib, module = bcc.lib, compiled.module
    maps, fds, btf_id = [], {}, 0
    for name, types in objects.map_declarations(source).items():
        fd = lib.bpf_table_fd(module, name.encode())
        if fd < 0:
            continue  # declared under a switch this configuration turned off
        info = bpfsys.obj_info(fd, MAP_INFO_SIZE)
        kind, _id, key_size, value_size, max_entries, flags = struct.unpack_from("<6I", info)
        btf, btf_key, btf_value = struct.unpack_from("<3I", info, 64)
        btf_id = btf_id or btf
        spec = objects.MapSpec(name, kind, key_size, value_size, max_entries, flags, btf_key, btf_value)
        _check_layouts(compiled, spec, types)
        maps.append(spec.__dict__)
        fds[fd] = name
    programs = []
    for i in range(lib.bpf_num_functions(module)):
        function = lib.bpf_function_name(module, i).decode()
        if objects.attach_point(function) is None:
            continue
        at, size = lib.bpf_function_start(module, function.encode()), lib.bpf_function_size(module, function.encode())
        code = ctypes.string_at(at, size)
        insns = base64.b64encode(code).decode()
        programs.append({"name": function, "insns": insns, "maps": _map_references(code, fds)})
    return {
        "format": objects.FORMAT,
        "license": lib.bpf_module_license(module).decode(),
        "kern_version": lib.bpf_module_kern_version(module),
        "btf": base64.b64encode(bpfsys.btf_data(btf_id)).decode() if btf_id else "",
        "maps": maps,
        "programs": programs,
    }


def _map_references(code: bytes, fds: dict[int, str]) -> list[tuple[int, str]]:
    """(instruction index, map name) of each 64-bit load of a map's fd."""
    found, at = [], 0
    while at < len(code) // 8:
        op, regs, _off, imm = struct.unpack_from("<BBhi", code, at * 8)
        if op == objects.BPF_LD_IMM64:
            if regs >> 4 == objects.BPF_PSEUDO_MAP_FD:
                if imm not in fds:
                    raise CollectorError(f"instruction {at} refers to a map sigtop does not know (fd {imm})")
                found.append((at, fds[imm]))
            elif regs >> 4:
                raise CollectorError(f"instruction {at} is a kind of 64-bit load sigtop cannot relocate")
            at += 2  # the second half of the 16-byte instruction
        else:
            at += 1
    return found


def _check_layouts(compiled: Any, spec: objects.MapSpec, types: list[tuple[type | None, type | None]]) -> None:
    """Each struct a map holds, as the compiler laid it out, against the header's (sigtop.live.layout)."""
    from sigtop.abi import kernel_abi
    from sigtop.live.layout import check_layout

    if spec.type == objects.RINGBUF_MAP_TYPE:
        return
    try:
        table = compiled[spec.name.encode()]
    except Exception:  # a map type BCC's Python has no class for (task storage): sizes still checked
        return
    structs = {cls: name for name, cls in kernel_abi().structs.items()}
    for key, leaf in types:
        if key is None or leaf is None or (ctypes.sizeof(key), ctypes.sizeof(leaf)) != (spec.key_size, spec.value_size):
            continue
        leaf_of = getattr(table, "sLeaf", table.Leaf)  # a per-CPU table's Leaf is one per CPU
        for ours, theirs in ((key, table.Key), (leaf, leaf_of)):
            if ours in structs:
                check_layout(theirs, structs[ours])


def compile_in_child(source: str, cflags: list[str]) -> dict[str, Any]:
    """The compiled program, from a child; CollectorError with one line when it cannot compile."""
    request = json.dumps({"source": source, "cflags": cflags})
    # This very sigtop, however it was started (a checkout, a venv, the -I launcher of make install).
    package_root = str(Path(__file__).resolve().parents[2])
    run = f"import sys; sys.path.insert(0, {package_root!r}); from sigtop.live.build import main; sys.exit(main())"
    try:
        done = subprocess.run(
            [sys.executable, *(["-I"] if sys.flags.isolated else []), "-c", run],
            input=request.encode(),
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CollectorError(f"the BPF compile took over {COMPILE_TIMEOUT_S} s") from None
    except OSError as exc:
        raise CollectorError(f"could not start the BPF compile: {exc.strerror}") from None
    said = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        hint = " (out of memory? the compile needs about 150 MB)" if name == "SIGKILL" else ""
        raise CollectorError(f"the BPF compile was killed by {name}{hint}")
    if done.returncode != 0:
        raise CollectorError(said[-1] if said else f"the BPF compile failed (exit status {done.returncode})")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise CollectorError("the BPF compile printed no program") from None


def main() -> int:
    try:  # the compile ends with the sigtop that asked for it
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    request = json.loads(sys.stdin.buffer.read())
    try:
        program = compile_program(request["source"], request["cflags"])
    except CollectorError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(program))
    return 0


if __name__ == "__main__":
    sys.exit(main())
