"""Compile, load and attach bpf/sigtop.bpf.c with BCC; detach it again.

BCC compiles the C at every start (about a second here); the compiler's
memory is given back once the programs are loaded.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sigtop.live import preflight
from sigtop.live.config import TraceConfig
from sigtop.live.preflight import CollectorError

PROGRAM = "sigtop.bpf.c"
ABI_HEADER = "sigtop.h"
MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages (clean file pages are simply dropped)
COMPILER_LIBRARIES = ("libLLVM", "libclang")


def bpf_source_text() -> str:
    return resources.files("sigtop.bpf").joinpath(PROGRAM).read_text()


def abi_header_text() -> str:
    return resources.files("sigtop.bpf").joinpath(ABI_HEADER).read_text()


@contextmanager
def _include_dir() -> Iterator[Path]:
    """A real directory holding sigtop.h, for the compiler's -I (package data may be zipped)."""
    with resources.as_file(resources.files("sigtop.bpf").joinpath(ABI_HEADER)) as header:
        yield Path(header).parent


class _StderrCapture:
    """Capture fd 2 around BCC's compile, which prints clang's output straight to it."""

    def __enter__(self) -> _StderrCapture:
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


@dataclass
class LoadedProgram:
    bpf: Any  # bcc.BPF, every probe attached
    task_storage: bool  # in-flight syscalls in task storage (else the LRU hash)


def load(config: TraceConfig) -> LoadedProgram:
    """Check the machine, compile, load and attach every probe; CollectorError with one line on failure."""
    preflight.check_all()
    bcc = preflight.import_bcc()
    # Task-local storage needs BTF (and a kernel that offers it to
    # tracepoint programs, 5.19 and later); else an LRU hash does.
    wanted = config.task_storage
    if wanted is None:
        wanted = preflight.has_btf()
    bpf, failure = _compile_and_attach(bcc, config, wanted)
    if failure is not None and wanted and config.task_storage is None:
        wanted = False
        bpf, failure = _compile_and_attach(bcc, config, wanted)
    if failure is not None:
        raise CollectorError(f"could not load the BPF program: {failure}")
    release_compiler_memory()
    return LoadedProgram(bpf, wanted)


def _compile_and_attach(bcc: Any, config: TraceConfig, task_storage: bool) -> tuple[Any, str | None]:
    """The attached program, or None and the first error line."""
    cflags = config.cflags(os.getpid(), task_storage=task_storage)
    # Built in two steps so that a load failing half-way through (some
    # probes already attached) can be detached before the next try.
    bpf = bcc.BPF.__new__(bcc.BPF)
    failure: Exception | None = None
    with _include_dir() as include, _StderrCapture() as captured:
        try:
            bpf.__init__(text=bpf_source_text().encode(), cflags=[*cflags, f"-I{include}"])
        except Exception as exc:  # BCC raises bare Exception on compile/load/attach
            failure = exc
            bpf.cleanup()
    if failure is not None:
        errors = [line for line in captured.text.splitlines() if "error" in line]
        return None, errors[0].strip() if errors else str(failure)
    return bpf, None


def detach(bpf: Any) -> None:
    """Detach every probe and free the maps."""
    # Each tracepoint detach waits out an RCU grace period (~70 ms here);
    # BCC does them one by one. Closing them side by side (ctypes drops the
    # GIL) makes quitting 19 probes one wait long.
    attached = list(bpf.tracepoint_fds)
    with ThreadPoolExecutor(max_workers=max(1, len(attached))) as pool:
        list(pool.map(bpf.detach_tracepoint, attached))
    bpf.cleanup()


def release_compiler_memory() -> None:
    """Give back what BCC's compiler used, once the programs are loaded.

    The compile is sigtop's peak: glibc keeps the heap it freed, and the
    pages of LLVM's and clang's code it ran (~80 MB) stay resident though
    nothing runs them again. malloc_trim returns the heap; MADV_PAGEOUT
    drops those read-only code pages (re-read from the page cache if ever
    touched again). Writable mappings are left alone.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or "w" in fields[1] or not any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(start, end - start, MADV_PAGEOUT)  # EINVAL on old kernels: nothing lost
    except (OSError, AttributeError):
        pass


def bcc_event_class(bpf: Any, table_name: bytes) -> type:
    """BCC's ctypes view of the struct a ring buffer carries (built from the C by BCC itself)."""
    return preflight.import_bcc().table._get_event_class(bpf[table_name])
