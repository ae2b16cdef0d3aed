"""The floor: the same tracepoints as sigtop, each BPF program only bumping a per-CPU counter.

With --one, a single syscall tracepoint (sys_enter_rt_sigreturn) and nothing
else: what every process pays once any syscall tracepoint is on.
"""

import signal
import sys

from bcc import BPF

from sigtop.live.preflight import REQUIRED_TRACEPOINTS

tracepoints = ["syscalls/sys_enter_rt_sigreturn"] if "--one" in sys.argv else REQUIRED_TRACEPOINTS
probes = []
for i, tp in enumerate(tracepoints):
    category, event = tp.split("/")
    probes.append(
        f"TRACEPOINT_PROBE({category}, {event}) {{ int k = {i}; u64 *v = hits.lookup(&k); if (v) (*v)++; return 0; }}"
    )
text = "#include <linux/signal.h>\n" + f"BPF_PERCPU_ARRAY(hits, u64, {len(tracepoints)});\n" + "\n".join(probes)
# Blocked, so that sigwait gets them even where SIGINT arrives ignored (a
# background job of a non-interactive shell): an ignored signal is discarded.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
b = BPF(text=text.encode(), cflags=["-w"])
print("Tracing", file=sys.stderr, flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
b.cleanup()
