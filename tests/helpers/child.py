"""A child process for the BPF tests: it does what the test asks and counts its own handler runs.

Commands arrive one per line on stdin; each is answered with one line on stdout.
  handle SIG       install a handler that counts and acks each run (writes "!")
  ignore SIG       set SIG_IGN
  ignorert         set SIG_IGN for every realtime signal
  block SIG        block SIG (pthread_sigmask)
  unblock SIG      unblock SIG (a pending one is taken now)
  sigwait SIG      waits for SIG with sigwait (blocked first); answers its number
  readfd FD        reads one signal from a signalfd; answers its number
  signalfd4 UFD FLAGS SIG,SIG...   create (UFD -1) or update a signalfd; answers the fd
  signalfd UFD SIG,SIG...          the same through the old syscall (no flags)
  count SIG        answers how many times the handler for SIG ran
  kill PID SIG N   sends SIG to PID N times (PID: another child of the same test)
  thread           starts a thread that waits; answers its tid
  endthread        ends that thread (and waits for it); answers ok
  exit             exits
"""

import ctypes
import os
import select
import signal
import threading

libc = ctypes.CDLL(None, use_errno=True)
SYS_signalfd, SYS_signalfd4, SYS_tgkill = 282, 289, 234
counts: dict[int, int] = {}
threads: list[tuple[threading.Thread, threading.Event]] = []


def handler(signum, _frame):
    counts[signum] = counts.get(signum, 0) + 1
    os.write(1, b"!")


def mask_of(names: str) -> ctypes.c_uint64:
    mask = 0
    for name in filter(None, names.split(",")):
        mask |= 1 << (signal.Signals[name].value - 1)
    return ctypes.c_uint64(mask)


def commands():
    """stdin's lines, read so that no handler waits: a signal that lands after the interpreter
    last ran its handlers but before a blocking read() would be handled only when the next
    command came. Here its wakeup byte ends the select() instead."""
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    buffered = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                yield line.decode()


def main() -> None:
    for line in commands():
        words = line.split()
        cmd, rest = words[0], words[1:]
        if cmd == "handle":
            signal.signal(signal.Signals[rest[0]], handler)
            answer = "ok"
        elif cmd == "ignore":
            signal.signal(signal.Signals[rest[0]], signal.SIG_IGN)
            answer = "ok"
        elif cmd == "ignorert":
            for sig in range(signal.SIGRTMIN, signal.SIGRTMAX + 1):
                signal.signal(sig, signal.SIG_IGN)
            answer = "ok"
        elif cmd == "block":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.Signals[rest[0]]})
            answer = "ok"
        elif cmd == "unblock":
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.Signals[rest[0]]})
            answer = "ok"
        elif cmd == "sigwait":
            answer = str(int(signal.sigwait({signal.Signals[rest[0]]})))
        elif cmd == "readfd":
            answer = str(int.from_bytes(os.read(int(rest[0]), 128)[:4], "little"))
        elif cmd == "signalfd4":
            mask = mask_of(rest[2] if len(rest) > 2 else "")
            fd = libc.syscall(SYS_signalfd4, int(rest[0]), ctypes.byref(mask), 8, int(rest[1]))
            answer = str(fd)
        elif cmd == "signalfd":
            mask = mask_of(rest[1] if len(rest) > 1 else "")
            fd = libc.syscall(SYS_signalfd, int(rest[0]), ctypes.byref(mask), 8)
            answer = str(fd)
        elif cmd == "count":
            answer = str(counts.get(signal.Signals[rest[0]].value, 0))
        elif cmd == "kill":
            for _ in range(int(rest[2])):
                os.kill(int(rest[0]), signal.Signals[rest[1]])
            answer = "ok"
        elif cmd == "tgkill":  # tgkill TGID TID SIGNAL: a signal to one thread of a process
            ret = libc.syscall(SYS_tgkill, int(rest[0]), int(rest[1]), int(signal.Signals[rest[2]]))
            answer = "ok" if ret == 0 else f"errno {ctypes.get_errno()}"
        elif cmd == "thread":
            started, done = threading.Event(), threading.Event()
            tids: list[int] = []

            def run(started: threading.Event = started, done: threading.Event = done, tids: list[int] = tids) -> None:
                tids.append(threading.get_native_id())
                started.set()
                done.wait()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            started.wait()
            threads.append((thread, done))
            answer = str(tids[0])
        elif cmd == "endthread":
            thread, done = threads.pop()
            done.set()
            thread.join()
            answer = "ok"
        elif cmd == "exit":
            return
        else:
            answer = f"unknown {cmd}"
        os.write(1, (answer + "\n").encode())


if __name__ == "__main__":
    main()
