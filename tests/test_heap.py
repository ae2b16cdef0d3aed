"""sigtop.heap: glibc stops keeping a freed large buffer's size in its heap (no root, no BPF).

Each case runs in a fresh interpreter, since a malloc's thresholds are the process's own: one
large buffer freed, then another of that size made, and whether glibc gave it its own mmap
(mallinfo2's hblks), which is handed back to the kernel when freed, or took it from the heap.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import ctypes, sys
sys.path.insert(0, sys.argv[2])
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "sigtop":
    from sigtop import heap
    assert heap.hand_memory_back()
big = bytearray(300 * 1024)
del big  # freed: glibc's own rule raises its mmap threshold past this size
before = libc.mallinfo2().hblks
again = bytearray(300 * 1024)
print(libc.mallinfo2().hblks - before)
"""


def own_mmaps(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(ROOT)], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_large_buffer_after_one_freed_gets_its_own_mapping_again():
    try:
        import ctypes

        ctypes.CDLL(None).mallinfo2  # noqa: B018
    except AttributeError:
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read")
    assert own_mmaps("glibc") == 0  # the creep: the second one came from the heap
    assert own_mmaps("sigtop") == 1
