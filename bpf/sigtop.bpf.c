// sigtop's kernel side (BCC dialect). Tracepoints only: many kernels have
// no kprobes. Kernel structs are read only at offsets from the running
// kernel's BTF (passed in as -D flags), so any nearby kernel's headers
// compile it.
//
// One BPF program, split by concern into the *.bpf.h files included at the
// end, in dependency order. BCC rewrites its dialect (map.lookup(),
// TRACEPOINT_PROBE) only in the text it is given, so sigtop's loader puts
// those files in place of their #include lines (sigtop.live.loader, with
// #line marks so that errors name the right file); sigtop.h, plain C, is
// an ordinary include.
//
// Two outputs, with different promises:
//   * maps (flows, threads, signalfds): exact counts, aggregated here,
//     read cumulatively by user space once per interval;
//   * the ring buffer (events): details for drill-down, best effort; when
//     full the event is dropped and stats[STAT_EVENTS_LOST] says so.
//
// The structs and enums shared with Python are in sigtop.h (the kernel ABI).
// Compile-time switches (cflags): DETAILS (emit detail
// events), FILTER_PIDS (only pids in pid_filter), SIG_MASK (bit n-1 = sig n),
// TASK_STORAGE (keep in-flight syscalls in task-local storage, needs BTF),
// and the map sizes sigtop.h requires.
//
// Every program here runs on the hot path of the process it watches (a
// handled signal costs five of them), so each one reads the clock, the comm
// and the maps only where the answer needs it: see bench/ for the price.

// No kernel header beyond BCC's own: <linux/signal.h> and <linux/sched.h>
// cost most of the compile (and so of the time to attach). The syscall
// tracepoints' generated args name these two types only behind pointers.
typedef struct { unsigned long sig[1]; } sigset_t;
typedef struct siginfo siginfo_t;
#define SIGKILL 9
#define SIGSTOP 19
#define SIGCHLD 17

#include "sigtop.h"           // also the kernel values Python shares: SIGRTMIN, CLD_*, SI_TIMER, ...

#ifndef DETAILS
#define DETAILS 1
#endif
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
#endif
#ifndef SIG_MASK
#define SIG_MASK 0xffffffffffffffffULL
#endif
#ifndef TASK_STORAGE
#define TASK_STORAGE 0
#endif
// RAW_GENERATE: signal_generate as a raw tracepoint. Tracepoint programs
// share one per-CPU guard (bpf_prog_active): a timer's signal raised in an
// interrupt that lands inside any of them (our sys_enter programs, another
// tool's) is skipped. A raw tracepoint program is guarded only against
// itself. It reads the target task, whose layout this kernel's BTF gave:
// TASK_PID_OFFSET (pid, with tgid right after it) and TASK_COMM_OFFSET;
// TASK_THREAD_PID_OFFSET and PID_LEVEL_OFFSET tell a pid namespace's depth.
#ifndef RAW_GENERATE
#define RAW_GENERATE 0
#endif
// FATES: follow each queued signal to its end (taken, read, discarded at
// exit, still pending). Needs the task's pending lists and exit code, whose
// layout BTF gives: TASK_PENDING_SIGNAL_OFFSET, TASK_SIGNAL_OFFSET,
// SIGNAL_SHARED_PENDING_OFFSET, TASK_EXIT_CODE_OFFSET; so only with RAW_GENERATE.
#ifndef FOLLOW_FATES
#define FOLLOW_FATES 1
#endif
#define FATES (RAW_GENERATE && FOLLOW_FATES)
// LIGHT (--light): no syscall tracepoint at all, so that no syscall of any process takes the
// traced slow path. A send's syscall and arguments are read at signal_generate from the
// sending task's saved registers (bpf_task_pt_regs; so only with RAW_GENERATE). Unseen: sends
// that generate nothing (failures, sig-0 probes), signalfd, rt_sigaction, rt_sigreturn and
// sigwait's reads (those show as read at the next collection).
#ifndef LIGHT
#define LIGHT 0
#endif
#if LIGHT && !RAW_GENERATE
#error "LIGHT needs RAW_GENERATE (the registers are read through BTF)"
#endif

#include "common.bpf.h"      // switches, in-flight sends, the maps, filters, events, flow counting
#include "fates.bpf.h"       // each queued signal followed to its end
#include "sends.bpf.h"       // the send syscalls: what was asked, what generated nothing
#include "lifecycle.bpf.h"   // fork, exec, exit, deaths, the OOM killer, dispositions set
#include "generate.bpf.h"    // every signal the kernel generates
#include "delivery.bpf.h"    // deliveries and rt_sigreturn: handler frames
#include "signalfd.bpf.h"    // signalfd masks
