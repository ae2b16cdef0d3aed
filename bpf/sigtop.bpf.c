// sigtop's kernel side (BCC dialect). Tracepoints only: many kernels have
// no kprobes. Reads no kernel structs (helpers and tracepoint args only), so
// any nearby kernel's headers compile it.
//
// Two outputs, with different promises:
//   * maps (flows, threads, signalfds): exact counts, aggregated here,
//     read cumulatively by user space once per interval;
//   * the ring buffer (events): details for drill-down, best effort; when
//     full the event is dropped and stats[STAT_EVENTS_LOST] says so.
//
// The structs and enums shared with Python are in sigtop.h (the kernel ABI).
// Compile-time switches (cflags): SELF_TGID (excluded), DETAILS (emit detail
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
#define CLD_EXITED 1
#define CLD_KILLED 2
#define CLD_DUMPED 3
#define CLD_CONTINUED 6

#include "sigtop.h"

#ifndef SELF_TGID
#define SELF_TGID 0
#endif
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
#define SIGRTMIN 32
// Events between forced wake-ups of the reader, per CPU.
#define WAKEUP_EVERY 2048

#define EPERM 1
#define SI_USER 0
#define SI_KERNEL 0x80
#define SI_TKILL -6
#define PIDFD_SIGNAL_THREAD 1
#define PF_EXITING 0x00000004

// A signal syscall between its sys_enter and sys_exit, per thread;
// syscall == SC_KERNEL (0) when none is.
struct inflight {
    u64 info_value;
    u64 mask;          // signalfd: the mask read at entry
    s32 arg_pid;       // kill/tkill pid, tg* tgid, pidfd, signalfd ufd
    s32 arg_tid;       // tgkill/rt_tgsigqueueinfo thread
    s32 sig;
    s32 code;          // the code the generated signal will carry
    s32 alt_code;      // ... or this one, where the syscall's args cannot tell which
    s32 info_pid;
    u32 info_uid;
    u32 real_uid;      // the caller's, when it passed a siginfo (to tell a forged one)
    u32 flags;         // pidfd_send_signal / signalfd4 flags
    u32 generated;     // signal_generate events this call caused
    u32 tgid;          // the caller's, so that signal_generate need not ask again
    u32 tid;
    u16 syscall;
    u8 has_info;
    u8 mask_ok;
};

#if TASK_STORAGE
// Task-local storage: no hashing, no LRU bookkeeping, freed with the task.
// An LRU hash update alone cost more than the rest of a send's probes.
BPF_TASK_STORAGE(inflight, struct inflight);

static __always_inline struct inflight *inflight_slot(u32 tid)
{
    return inflight.task_storage_get((void *)bpf_get_current_task_btf(), 0,
                                     BPF_LOCAL_STORAGE_GET_F_CREATE);
}

static __always_inline struct inflight *inflight_find(u32 tid)
{
    struct inflight *f = inflight.task_storage_get((void *)bpf_get_current_task_btf(), 0, 0);
    return f && f->syscall != SC_KERNEL ? f : 0;
}

static __always_inline void inflight_end(u32 tid, struct inflight *f)
{
    f->syscall = SC_KERNEL;
}

static __always_inline u32 inflight_key(void)
{
    return 0;   // the storage is the current task's own
}
#else
// Kernels without task storage for tracepoint programs: a hash by tid,
// LRU so that a thread that dies inside a signal syscall cannot leak it.
BPF_TABLE("lru_hash", u32, struct inflight, inflight, INFLIGHT_ENTRIES);

static __always_inline struct inflight *inflight_slot(u32 tid)
{
    struct inflight zero = {};
    inflight.update(&tid, &zero);
    return inflight.lookup(&tid);
}

static __always_inline struct inflight *inflight_find(u32 tid)
{
    return inflight.lookup(&tid);
}

static __always_inline void inflight_end(u32 tid, struct inflight *f)
{
    inflight.delete(&tid);
}

static __always_inline u32 inflight_key(void)
{
    return (u32)bpf_get_current_pid_tgid();
}
#endif

// A fresh in-flight record for the current thread's signal syscall.
static __always_inline struct inflight *inflight_begin(u32 tgid, u32 tid, u16 syscall)
{
    struct inflight *f = inflight_slot(tid);
    if (!f)
        return 0;
    __builtin_memset(f, 0, sizeof(*f));
    f->syscall = syscall;
    f->tgid = tgid;
    f->tid = tid;
    return f;
}

BPF_HASH(flows, struct flow_key, struct flow_val, FLOW_ENTRIES);
BPF_HASH(threads, u32, struct thread_val, THREAD_ENTRIES);
BPF_HASH(signalfds, struct signalfd_key, struct signalfd_val, SIGNALFD_ENTRIES);
BPF_HASH(pid_filter, u32, u8, PID_FILTER_ENTRIES);
BPF_PERCPU_ARRAY(stats, u64, STAT_MAX);
// A new flow's value is built here: with its latency buckets it is too big for the stack.
BPF_PERCPU_ARRAY(flow_scratch, struct flow_val, 1);
#if FATES
BPF_HASH(pending, struct pending_key, struct pending_val, PENDING_ENTRIES);
BPF_HASH(rt_queues, struct pending_key, struct rt_queue, PENDING_ENTRIES);
BPF_HASH(exits, struct pending_key, struct exit_val, EXIT_ENTRIES);
// Per signal: records the kernel side put on a thread's own list and has not
// taken off. Zero (the usual case: most signals go to a process) spares a
// delivery the hash lookup of the thread's own list. User space never
// decrements it, so it may only be too high: a wasted lookup, never a miss.
BPF_ARRAY(private_records, u64, 65);
#endif
BPF_PERCPU_ARRAY(overflow, u64, OVERFLOW_SLOTS);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

static __always_inline void stat_add(int id)
{
    u64 *v = stats.lookup(&id);
    if (v)   // per CPU, but programs are preemptible: another task's may interleave
        __sync_fetch_and_add(v, 1);
}

static __always_inline bool pid_wanted(u32 a, u32 b, u32 c)
{
#if FILTER_PIDS
    if (a && pid_filter.lookup(&a))
        return true;
    if (b && pid_filter.lookup(&b))
        return true;
    if (c && pid_filter.lookup(&c))
        return true;
    return false;
#else
    return true;
#endif
}

static __always_inline bool sig_wanted(int sig)
{
    if (sig == 0)   // a probe: shown unless the signal filter is narrowed
        return SIG_MASK == 0xffffffffffffffffULL;
    if (sig < 0 || sig > 64)
        return false;
    return (SIG_MASK >> (sig - 1)) & 1;
}

static __always_inline struct event *event_reserve(void)
{
#if DETAILS
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        stat_add(STAT_EVENTS_LOST);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    return e;
#else
    return 0;
#endif
}

static __always_inline void event_submit(struct event *e)
{
    // Never wake user space per event: it drains on a timer, and is woken
    // early only once per WAKEUP_EVERY events on a CPU, when a storm could
    // fill the buffer before the timer fires.
    int id = STAT_EVENTS_SENT;
    u64 *sent = stats.lookup(&id);
    u64 n = sent ? __sync_fetch_and_add(sent, 1) : 0;
    events.ringbuf_submit(e, (n % WAKEUP_EVERY) == WAKEUP_EVERY - 1 ?
                             BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

// The flow's counters, made where it is new; 0 when the map is full (the
// signal is then counted in the overflow array, by signal and result).
static __always_inline struct flow_val *flow_add(struct flow_key *key, u64 ts, const char *target_comm,
                                                 const struct inflight *claim)
{
    struct flow_val *v = flows.lookup(key);
    if (!v) {
        int zero = 0;
        struct flow_val *init = flow_scratch.lookup(&zero);
        if (!init)
            return 0;
        __builtin_memset(init, 0, sizeof(*init));
        init->first_ts = ts ? ts : bpf_ktime_get_ns();
        if (key->sender_tgid)   // current is the sender: once per flow, not per signal
            init->sender_cgroup = bpf_get_current_cgroup_id();
        if (claim) {   // a forged siginfo: what it claimed, for batch mode too
            init->claimed_pid = claim->info_pid;
            init->claimed_uid = claim->info_uid;
        }
        bpf_get_current_comm(&init->sender_comm, sizeof(init->sender_comm));
        if (target_comm)
            bpf_probe_read_kernel(&init->target_comm, sizeof(init->target_comm), target_comm);
        // Insert, never overwrite: two CPUs making the same new flow at once
        // (two threads of one sender) would otherwise reset each other's count.
        if (flows.insert(key, init) && !flows.lookup(key)) {
            // Full: the signal is still counted, by signal and result.
            stat_add(STAT_FLOWS_FULL);
            int slot = (key->sig & 127) * OVERFLOW_RESULTS + (key->result & (OVERFLOW_RESULTS - 1));
            if (key->sig >= 0 && key->sig < OVERFLOW_SIGNALS) {
                u64 *n = overflow.lookup(&slot);
                if (n)
                    __sync_fetch_and_add(n, 1);
            }
            return 0;
        }
        v = flows.lookup(key);
        if (!v)
            return 0;
    }
    __sync_fetch_and_add(&v->count, 1);   // senders on several CPUs share a flow
    return v;
}

// The si_codes the kernel defines (SI_* down to SI_DETHREAD, SI_ASYNCNL,
// SI_KERNEL, the per-signal positive ones); anything else a caller made up.
static __always_inline int known_code(int code)
{
    if ((code >= -7 && code <= 0x80) || code == -60)
        return code;
    return CODE_OTHER;
}

// Whether the current task lives in a pid namespace below the host's
// (task->thread_pid->level > 0). Two reads at BTF offsets; 0 where the
// kernel has no BTF (the classic path cannot tell).
static __always_inline u8 in_child_pid_ns(void)
{
#if RAW_GENERATE
    const char *task = (const char *)bpf_get_current_task();
    const char *pid = 0;
    u32 level = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), task + TASK_THREAD_PID_OFFSET);
    if (pid)
        bpf_probe_read_kernel(&level, sizeof(level), pid + PID_LEVEL_OFFSET);
    return level > 0;
#else
    return 0;
#endif
}

// The clock, read only when an event needs it (a flow reads it once, at creation).
static __always_inline u64 event_clock(void)
{
    return DETAILS ? bpf_ktime_get_ns() : 0;
}

// ---- fates: each queued signal followed to its end --------------------------
// The kernel keeps a signal on the target thread's own pending list or on
// its process's shared one (generate's `group`), dequeues the thread's own
// first, and fires signal_deliver on the thread that takes it. A record per
// queued signal here mirrors those lists, so that each take is counted
// against the flow that queued it. sigwait reads are seen at their syscall's
// exit; a signalfd read is not traced (a read() program would run on every
// read of every process): it shows at the next signal of that kind, at exit,
// or when user space finds the signal no longer pending in /proc.

#if FATES
static __always_inline u32 latency_bucket(u64 ns)
{
    u32 b = 0;
    u64 v = ns;
    if (v >> 32) { v >>= 32; b += 32; }
    if (v >> 16) { v >>= 16; b += 16; }
    if (v >> 8) { v >>= 8; b += 8; }
    if (v >> 4) { v >>= 4; b += 4; }
    if (v >> 2) { v >>= 2; b += 2; }
    if (v >> 1) { b += 1; }
    if (b < LAT_FIRST_LOG2)
        return 0;
    u32 i = (b - LAT_FIRST_LOG2) * 2 + ((ns >> (b - 1)) & 1);
    return i < LAT_BUCKETS ? i : LAT_BUCKETS - 1;
}

// A flow's counters for a fate; made again (without names: user space has
// them) where user space evicted it meanwhile.
static __always_inline struct flow_val *fate_flow(const struct flow_key *key, u64 queued_ts)
{
    struct flow_val *v = flows.lookup(key);
    if (v)
        return v;
    int zero = 0;
    struct flow_val *init = flow_scratch.lookup(&zero);
    if (!init)
        return 0;
    __builtin_memset(init, 0, sizeof(*init));
    init->first_ts = queued_ts;
    flows.insert(key, init);
    return flows.lookup(key);
}

static __always_inline void fate_read(const struct pending_val *p)
{
    struct flow_val *v = fate_flow(&p->flow, p->ts);
    if (v)
        __sync_fetch_and_add(&v->read, 1);
}

static __always_inline void fate_latency(struct flow_val *v, u64 ns)
{
    u32 i = latency_bucket(ns);
    if (i < LAT_BUCKETS)
        __sync_fetch_and_add(&v->lat_hist[i], 1);
    __sync_fetch_and_add(&v->lat_sum, ns);
    if (ns > v->lat_max)   // two takes of one flow at once on two CPUs may keep the smaller
        v->lat_max = ns;
}

static __always_inline void private_count(int sig, s64 n)
{
    u32 i = sig;
    u64 *count = private_records.lookup(&i);
    if (count)
        __sync_fetch_and_add(count, n);
}

static __always_inline bool private_any(int sig)
{
    u32 i = sig;
    u64 *count = private_records.lookup(&i);
    return count && *count;
}

// A signal queued (result DELIVERED or LOSE_INFO) on `owner`'s list.
static __always_inline void fate_queued(struct flow_val *v, const struct flow_key *key,
                                        u32 owner, u8 shared, int sig, u64 ts)
{
    struct pending_key pk = {};
    pk.owner = owner;
    pk.sig = sig;
    pk.shared = shared;
    if (sig >= SIGRTMIN) {
        struct rt_queue *q = rt_queues.lookup(&pk);
        if (!q) {
            struct rt_queue empty = {};
            rt_queues.insert(&pk, &empty);
            q = rt_queues.lookup(&pk);
            if (!q)
                goto untracked;
        }
        pk.seq = q->tail;   // generate and dequeue both run under the target's siglock
        q->tail++;
    }
    if (sig < SIGRTMIN) {
        // A standard signal's record stays in the map once taken (ts 0), to
        // be reused here: a write in place costs a fraction of an insert
        // and a delete. User space removes those of owners that are gone.
        struct pending_val *old = pending.lookup(&pk);
        if (old) {
            if (old->ts) {
                // Still live: the kernel had none of this signal on that list
                // (else the result is ALREADY_PENDING), so it left unseen
                // (a signalfd read, a flush).
                fate_read(old);
            } else if (!shared) {
                private_count(sig, 1);
            }
            old->flow = *key;   // under the target's siglock, as every writer here
            old->ts = ts;
            return;
        }
    }
    struct pending_val pv = {};
    pv.flow = *key;
    pv.ts = ts;
    if (pending.insert(&pk, &pv) == 0) {
        if (!shared)
            private_count(sig, 1);
        return;
    }
untracked:
    stat_add(STAT_PENDING_FULL);
    if (v)
        __sync_fetch_and_add(&v->untracked, 1);
}

// The record of the signal `tid` just took off a list (the thread's own
// first, as dequeue_signal); false where there is none (queued before attach).
// code < -0x10000: do not check the code (a sigwait's is not at hand).
static __always_inline bool fate_dequeue(u32 tid, u32 tgid, int sig, int code, struct pending_val *out)
{
    bool own_list = private_any(sig);
    #pragma unroll
    for (int shared = 0; shared < 2; shared++) {
        if (!shared && !own_list)
            continue;
        struct pending_key pk = {};
        pk.owner = shared ? tgid : tid;
        pk.sig = sig;
        pk.shared = shared;
        if (sig >= SIGRTMIN) {
            struct rt_queue *q = rt_queues.lookup(&pk);
            if (!q || q->head == q->tail)
                continue;
            pk.seq = q->head;
            q->head++;   // under the target's siglock, as the generate side
        }
        struct pending_val *p = pending.lookup(&pk);
        if (!p || !p->ts)
            continue;
        struct pending_val found = *p;
        if (sig < SIGRTMIN) {
            p->ts = 0;   // taken: the record stays for the next one (fate_queued)
        } else {
            pending.delete(&pk);
        }
        if (!shared)
            private_count(sig, -1);
        if (!shared && sig < SIGRTMIN && code > -0x10000 && found.flow.code != known_code(code)) {
            // The thread's own record is not what it took: it had left already
            // (a signalfd read), and this one came from the shared list.
            fate_read(&found);
            continue;
        }
        *out = found;
        return true;
    }
    return false;
}

// `tid` took a queued signal: by a delivery (read 0) or a sigwait (read 1).
static __always_inline void fate_taken(u32 tid, u32 tgid, int sig, int code, bool read)
{
    struct pending_val p;
    if (!fate_dequeue(tid, tgid, sig, code, &p)) {
        if (sig != SIGKILL)   // a dying process's other threads take a SIGKILL never queued
            stat_add(STAT_TAKEN_UNQUEUED);
        return;
    }
    struct flow_val *v = fate_flow(&p.flow, p.ts);
    if (!v)
        return;
    __sync_fetch_and_add(read ? &v->read : &v->taken, 1);
    fate_latency(v, bpf_ktime_get_ns() - p.ts);
}

// What was still on an exiting thread's (or, last, its process's) list.
static __always_inline void fate_exit(u32 owner, u8 shared, u64 mask, s32 exit_code)
{
    struct pending_key pk = {};
    pk.owner = owner;
    pk.shared = shared;
    struct exit_val ev = {};
    ev.mask = mask;
    ev.ts = bpf_ktime_get_ns();
    ev.exit_code = exit_code;
    if (exits.update(&pk, &ev))
        stat_add(STAT_EXITS_FULL);
}
#endif

// ---- sends: sys_enter records what was asked ------------------------------

static __always_inline int send_enter(u16 syscall, s32 pid, s32 tid, int sig,
                                      const void *uinfo, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tidself = (u32)id;
    if (tgid == SELF_TGID)
        return 0;
    struct inflight *f = inflight_begin(tgid, tidself, syscall);
    if (!f)
        return 0;
    f->arg_pid = pid;
    f->arg_tid = tid;
    f->sig = sig;
    f->flags = flags;
    // The si_code each send makes (kernel/signal.c): kill and a process
    // pidfd, SI_USER; tkill, tgkill and a thread-directed pidfd (a thread's
    // pidfd, PIDFD_SIGNAL_THREAD, PIDFD_SELF_THREAD), SI_TKILL; the sigqueue
    // family, the caller's own (read below). With flags 0 a pidfd's kind
    // decides, which its number does not show: either code matches.
    f->code = (syscall == SC_TKILL || syscall == SC_TGKILL) ? SI_TKILL : SI_USER;
    f->alt_code = f->code;
    if (syscall == SC_PIDFD_SEND_SIGNAL) {
        if (flags == PIDFD_SIGNAL_THREAD)
            f->code = f->alt_code = SI_TKILL;
        else if (flags == 0)
            f->alt_code = SI_TKILL;
    }
    if (uinfo) {
        // x86_64 siginfo_t: signo, errno, code, then pid, uid, value at 16, 20, 24.
        struct { s32 signo, err, code, pad; s32 pid; u32 uid; u64 value; } si = {};
        if (bpf_probe_read_user(&si, sizeof(si), uinfo) == 0) {
            f->has_info = 1;
            f->real_uid = (u32)bpf_get_current_uid_gid();
            f->code = f->alt_code = si.code;
            f->info_pid = si.pid;
            f->info_uid = si.uid;
            f->info_value = si.value;
        }
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_kill)
{
    return send_enter(SC_KILL, (s32)args->pid, 0, (int)args->sig, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_tkill)
{
    return send_enter(SC_TKILL, (s32)args->pid, (s32)args->pid, (int)args->sig, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_tgkill)
{
    return send_enter(SC_TGKILL, (s32)args->tgid, (s32)args->pid, (int)args->sig, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rt_sigqueueinfo)
{
    return send_enter(SC_RT_SIGQUEUEINFO, (s32)args->pid, 0, (int)args->sig,
                      (const void *)args->uinfo, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rt_tgsigqueueinfo)
{
    return send_enter(SC_RT_TGSIGQUEUEINFO, (s32)args->tgid, (s32)args->pid,
                      (int)args->sig, (const void *)args->uinfo, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_pidfd_send_signal)
{
    return send_enter(SC_PIDFD_SEND_SIGNAL, (s32)args->pidfd, 0, (int)args->sig,
                      (const void *)args->info, (u32)args->flags);
}

// ---- sends: sys_exit counts what generated nothing -------------------------

// A failed send (or a sig 0 probe) never reaches signal_generate: this is
// the only place it is seen. Count it against the pid that was asked for.
static __always_inline int send_exit(long ret)
{
    // The common case (a send that generated its signal) ends here, with
    // the fewest helper calls: on a VM each one costs tens of ns.
    u32 ikey = inflight_key();
    struct inflight *f = inflight_find(ikey);
    if (!f)
        return 0;
    if (f->generated > 0) {
        // Already counted, per target, at signal_generate. A call that
        // generated a signal and still failed (EAGAIN: the realtime queue was
        // full, counted there as OVERFLOW_FAIL) is not counted a second time.
        inflight_end(ikey, f);
        return 0;
    }
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    struct inflight c = *f;
    inflight_end(ikey, f);
    // A number that is no signal fails (EINVAL) and is counted too, under one
    // key (the detail event keeps the number), unless a signal filter is set.
    bool invalid = c.sig < 0 || c.sig > 64;
    if (invalid ? SIG_MASK != 0xffffffffffffffffULL : !sig_wanted(c.sig))
        return 0;
    u32 asked = c.arg_pid > 0 ? (u32)c.arg_pid : 0;
    u32 asked_tid = c.arg_tid > 0 ? (u32)c.arg_tid : 0;
    if (!pid_wanted(tgid, asked, asked_tid))
        return 0;

    u64 ts = bpf_ktime_get_ns();
    struct flow_key key = {};
    s32 asked_target = (c.syscall == SC_TKILL || c.syscall == SC_TGKILL ||
                        c.syscall == SC_RT_TGSIGQUEUEINFO) ? c.arg_tid : c.arg_pid;
    u32 asked_tgid = (c.syscall == SC_TGKILL || c.syscall == SC_RT_TGSIGQUEUEINFO) ?
                     (u32)c.arg_pid : 0;
    key.sender_tgid = tgid;
    if (ret >= 0 || (ret == -EPERM && c.syscall != SC_PIDFD_SEND_SIGNAL)) {
        // A probe that succeeded, or one refused permission, names a process
        // that exists: bounded by the processes there are.
        key.target_pid = asked_target;
        key.target_tgid = asked_tgid;
    }
    if (ret >= 0)
        key.code = known_code(c.code);
    // The pid asked for is one of the caller's pid namespace: in a container,
    // kill(2, 0) probes the container's pid 2, not the host's kthreadd.
    key.ns_local = in_child_pid_ns();
    // Any other failure's target is whatever the caller asked for, any
    // number at all (and a pidfd's, any fd it holds): one flow per sender,
    // signal, syscall and errno, never one per value, or kill(10000000 + i, 0)
    // fills the map. The asked pid is in the detail event.
    key.sig = invalid ? SIG_INVALID : c.sig;
    key.syscall = c.syscall;
    key.result = ret < 0 ? RES_FAILED : RES_NO_SIGNAL;
    key.err = ret < 0 ? (s32)-ret : 0;
    flow_add(&key, ts, 0, 0);

    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = ts;
    e->kind = EV_SEND_DONE;
    e->sender_tgid = tgid;
    e->sender_tid = tid;
    e->target_pid = asked_target;
    e->target_tgid = asked_tgid;
    e->sig = c.sig;
    e->code = c.code;
    e->result = key.result;
    e->ret = (s32)ret;
    e->arg_pid = c.arg_pid;
    e->arg_tid = c.arg_tid;
    e->info_pid = c.info_pid;
    e->info_uid = c.info_uid;
    e->info_value = c.info_value;
    e->flags = c.flags;
    e->syscall = c.syscall;
    e->has_info = c.has_info;
    e->ns_local = key.ns_local;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    event_submit(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_kill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_tkill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_tgkill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_rt_sigqueueinfo) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_rt_tgsigqueueinfo) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pidfd_send_signal) { return send_exit(args->ret); }

// ---- every signal the kernel generates ------------------------------------

// Both ways in (raw and classic tracepoint) end here. target_tgid is the
// target's process where the kernel said it (raw: always), else 0.
static __always_inline int on_generate(int sig, int code, s32 target, u32 target_tgid,
                                       const char *target_comm, int group, int result)
{
    if (!sig_wanted(sig))
        return 0;

    // `current` is the sender only while one of its signal syscalls is in
    // flight, and only for the signal that syscall asked for: timers raise
    // signals from interrupt context on whatever thread was running.
    struct inflight *f = inflight_find(inflight_key());
    u32 tgid, tid;
    if (f) {   // the current task's own: its ids were kept at sys_enter
        tgid = f->tgid;
        tid = f->tid;
    } else {
        u64 id = bpf_get_current_pid_tgid();
        tgid = id >> 32;
        tid = (u32)id;
    }
    bool by_syscall = f && f->sig == sig && (f->code == code || f->alt_code == code);
    if (by_syscall && f->syscall >= SC_SIGNALFD)
        by_syscall = false;
    u32 sender = by_syscall ? tgid : 0;
    u16 via = by_syscall ? f->syscall : SC_KERNEL;
#if RAW_GENERATE
    // SI_USER with no send syscall, from a task that is exiting: its children's
    // PR_SET_PDEATHSIG (forget_original_parent). Rare: the flags are read here only.
    if (!by_syscall && code == SI_USER) {
        u32 flags = 0;
        bpf_probe_read_kernel(&flags, sizeof(flags), (const char *)bpf_get_current_task() + TASK_FLAGS_OFFSET);
        if (flags & PF_EXITING) {
            sender = tgid;
            via = SC_PDEATHSIG;
        }
    }
#endif
    // A SIGCHLD with a CLD_* code is raised on the child that changed state
    // (exit_notify, do_notify_parent_cldstop run on it): it is the source.
    if (!by_syscall && sig == SIGCHLD && code >= CLD_EXITED && code <= CLD_CONTINUED)
        sender = tgid;

    if (!target_tgid) {   // the classic tracepoint names only the thread
        if (by_syscall && (f->syscall == SC_TGKILL || f->syscall == SC_RT_TGSIGQUEUEINFO))
            target_tgid = (u32)f->arg_pid;
        else if ((u32)target == tid)
            target_tgid = tgid;   // a fault, or a send to oneself
    }

    // Generated, counted or not: its syscall's exit must not take it for a sig-0 probe.
    if (by_syscall)
        f->generated++;
    if (sender == SELF_TGID && SELF_TGID)
        return 0;
    if (target_tgid == SELF_TGID && SELF_TGID)
        return 0;
    if (!pid_wanted(sender, (u32)target, target_tgid))
        return 0;

    u64 ts = event_clock();
    struct flow_key key = {};
    key.sender_tgid = sender;
    key.target_pid = target;
    key.target_tgid = target_tgid;
    key.sig = sig;
    key.code = known_code(code);
    key.syscall = via;
    key.result = result;
    // A siginfo the caller built names a sender: not its own is a forgery.
    key.spoofed = by_syscall && f->has_info &&
                  (f->info_pid != (s32)f->tgid || f->info_uid != f->real_uid);
    struct flow_val *v = flow_add(&key, ts, target_comm, key.spoofed ? f : 0);
#if FATES
    if (result == RES_DELIVERED || result == RES_LOSE_INFO) {
        if (!ts)
            ts = bpf_ktime_get_ns();
        if (v)
            fate_queued(v, &key, group ? (target_tgid ? target_tgid : (u32)target) : (u32)target,
                        group != 0, sig, ts);
        else
            stat_add(STAT_PENDING_FULL);   // counted in the overflow array: no flow to follow
    }
#endif

    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = ts;
    e->kind = EV_GENERATE;
    e->sender_tgid = sender ? sender : tgid;
    e->sender_tid = tid;
    e->target_pid = target;
    e->target_tgid = target_tgid;
    e->sig = sig;
    e->code = code;
    e->result = result;
    e->group = group;
    e->syscall = key.syscall;
    e->spoofed = key.spoofed;
    if (by_syscall) {
        e->arg_pid = f->arg_pid;
        e->arg_tid = f->arg_tid;
        e->info_pid = f->info_pid;
        e->info_uid = f->info_uid;
        e->info_value = f->info_value;
        e->flags = f->flags;
        e->has_info = f->has_info;
    }
    // No comms: both are on the flow row, and reading them was a fifth of
    // this program's cost.
    event_submit(e);
    return 0;
}

#if RAW_GENERATE
// A process killed by a signal: its parent's SIGCHLD is raised on the dying
// process's own thread (exit_notify), with the killing signal in si_status.
// Rare: an event of its own, so the deaths table needs no flow of its own.
static __always_inline void death_event(unsigned long info, s32 parent, u32 parent_tgid, int code)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_wanted(id >> 32, parent_tgid, 0))
        return;
    struct event *e = event_reserve();
    if (!e)
        return;
    int status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), (const char *)info + 24);   // si_status (uapi layout)
    e->ts = bpf_ktime_get_ns();
    e->kind = EV_DEATH;
    e->sender_tgid = id >> 32;
    e->sender_tid = (u32)id;
    e->target_pid = parent;
    e->target_tgid = parent_tgid;
    e->sig = status & 0x7f;
    e->code = code;
    u64 started = 0;   // task->start_time: CLOCK_MONOTONIC ns, as ktime
    bpf_probe_read_kernel(&started, sizeof(started),
                          (const char *)bpf_get_current_task() + TASK_START_TIME_OFFSET);
    e->info_value = started ? e->ts - started : 0;   // how long it lived, ns
    e->handler = bpf_get_current_cgroup_id();   // its cgroup v2 id: gone from /proc by the time it is read
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    event_submit(e);
}

// TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
//          int group, int result); the loader checked this kernel's prototype.
RAW_TRACEPOINT_PROBE(signal_generate)
{
    int sig = (int)ctx->args[0];
    if (!sig_wanted(sig))
        return 0;
    unsigned long info = ctx->args[1];
    const char *task = (const char *)ctx->args[2];
    // What the classic tracepoint's TP_STORE_SIGINFO does: SEND_SIG_NOINFO
    // (0) is a kill's SI_USER, SEND_SIG_PRIV (1) the kernel's SI_KERNEL.
    int code = info == 0 ? SI_USER : SI_KERNEL;
    if (info > 1)
        bpf_probe_read_kernel(&code, sizeof(code), (const char *)info + 8);   // si_code (uapi layout)
    s32 ids[2] = {};   // task->pid, task->tgid
    bpf_probe_read_kernel(&ids, sizeof(ids), task + TASK_PID_OFFSET);
    if (sig == SIGCHLD && (code == CLD_KILLED || code == CLD_DUMPED) && info > 1)
        death_event(info, ids[0], (u32)ids[1], code);
    return on_generate(sig, code, ids[0], (u32)ids[1], task + TASK_COMM_OFFSET,
                       (int)ctx->args[3], (int)ctx->args[4]);
}
#else
TRACEPOINT_PROBE(signal, signal_generate)
{
    return on_generate(args->sig, args->code, args->pid, 0, args->comm, args->group, args->result);
}
#endif

#if DETAILS
// A disposition set (rt_sigaction with a new action): rare (mostly at start),
// so the reasons can say since when a signal has been ignored or handled.
TRACEPOINT_PROBE(syscalls, sys_enter_rt_sigaction)
{
    const void *act = (const void *)args->act;
    int sig = (int)args->sig;
    if (!act || !sig_wanted(sig))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == SELF_TGID || !pid_wanted(tgid, 0, 0))
        return 0;
    struct { u64 handler, flags; } sa = {};   // x86_64 struct sigaction: sa_handler, sa_flags, ...
    if (bpf_probe_read_user(&sa, sizeof(sa), act))
        return 0;
    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = bpf_ktime_get_ns();
    e->kind = EV_SIGACTION;
    e->sender_tgid = tgid;
    e->sender_tid = (u32)id;
    e->target_pid = tgid;
    e->target_tgid = tgid;
    e->sig = sig;
    e->handler = sa.handler;
    e->sa_flags = sa.flags;
    event_submit(e);
    return 0;
}
#endif

#if DETAILS && HAS_OOM_TRACEPOINT
// The OOM killer's choice, just before its SIGKILL (which the kernel raises
// with SI_KERNEL from whatever task needed the memory): the deaths table
// names the OOM killer as the cause.
TRACEPOINT_PROBE(oom, mark_victim)
{
    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = bpf_ktime_get_ns();
    e->kind = EV_OOM;
    e->sender_tgid = args->pid;
    e->target_tgid = args->pid;
    e->info_value = args->anon_rss;
    e->info_uid = args->uid;
    event_submit(e);
    return 0;
}
#endif

// ---- delivery and return ---------------------------------------------------

static __always_inline struct thread_val *thread_get(u32 tid, u32 tgid)
{
    struct thread_val *t = threads.lookup(&tid);
    if (t) {
        if (t->exited) {
            // Another thread was given this id: its own process and name (the
            // counters run on: user space reads them as differences).
            t->exited = 0;
            t->tgid = tgid;
            bpf_get_current_comm(&t->comm, sizeof(t->comm));
        }
        return t;
    }
    struct thread_val init = {};
    init.tgid = tgid;
    bpf_get_current_comm(&init.comm, sizeof(init.comm));
    if (threads.update(&tid, &init) && !threads.lookup(&tid)) {
        stat_add(STAT_THREADS_FULL);
        return 0;
    }
    return threads.lookup(&tid);
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    int sig = args->sig;
    if (tgid == SELF_TGID)
        return 0;
    bool wanted = sig_wanted(sig);
#if FATES
    // Before the pid filter: a signal queued by a watched sender to an
    // unwatched target is still followed to its end.
    if (wanted)
        fate_taken(tid, tgid, sig, args->code, false);
#endif
    if (!pid_wanted(tgid, 0, 0))
        return 0;
    // Every signal's handler frame, whatever the signal filter: rt_sigreturn
    // names no signal, so a frame left out here would make its return look
    // forged (an SROP alert for a handler of a signal merely filtered out).
    struct thread_val *t = thread_get(tid, tgid);
    if (t) {
        t->deliveries++;
        if (args->sa_handler > 1) {   // not SIG_DFL (0) or SIG_IGN (1): a frame to return from
            t->handler_deliveries++;
            t->outstanding++;
        }
    }
    if (!wanted)
        return 0;
    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = bpf_ktime_get_ns();
    e->kind = EV_DELIVER;
    e->sender_tgid = tgid;
    e->sender_tid = tid;
    e->target_pid = tid;
    e->target_tgid = tgid;
    e->sig = sig;
    e->code = args->code;
    e->handler = args->sa_handler;
    e->sa_flags = args->sa_flags;
    event_submit(e);   // no comm: the target's is on its flow and thread rows
    return 0;
}

// rt_sigreturn never returns to its caller the usual way: count at entry.
TRACEPOINT_PROBE(syscalls, sys_enter_rt_sigreturn)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    if (tgid == SELF_TGID || !pid_wanted(tgid, 0, 0))
        return 0;
    struct thread_val *t = thread_get(tid, tgid);
    if (!t)
        return 0;
    t->sigreturns++;
    // A return with no handler frame outstanding on this thread: the start
    // of sigreturn-oriented programming, or a handler entered before attach.
    if (t->outstanding > 0) {
        t->outstanding--;
    } else {
        t->unmatched++;   // counted here, so batch mode (no events) sees it too
        struct event *e = event_reserve();
        if (!e)
            return 0;
        e->ts = bpf_ktime_get_ns();
        e->kind = EV_UNMATCHED_SIGRETURN;
        e->sender_tgid = tgid;
        e->sender_tid = tid;
        e->target_pid = tid;
        e->target_tgid = tgid;
        bpf_get_current_comm(&e->comm, sizeof(e->comm));
        event_submit(e);
    }
    return 0;
}

// ---- handler frames across fork, exec and exit -----------------------------
// These run on process creation, exec and exit only, never per signal.

#define CLONE_THREAD 0x00010000

// A process forked inside a handler has the parent's stack: it may return
// from those frames once. A new thread starts with none.
TRACEPOINT_PROBE(task, task_newtask)
{
    if (args->clone_flags & CLONE_THREAD)
        return 0;
    u32 parent = (u32)bpf_get_current_pid_tgid();
    struct thread_val *p = threads.lookup(&parent);
    if (!p || !p->outstanding)
        return 0;
    u32 child = (u32)args->pid;
    u32 frames = p->outstanding;
    struct thread_val *t = threads.lookup(&child);
    if (t) {
        // An earlier thread's entry under this id: its counters run on (user
        // space reads differences; resetting them would lose counts).
        t->exited = 0;
        t->tgid = child;
        t->outstanding = frames;
        bpf_probe_read_kernel(&t->comm, sizeof(t->comm), args->comm);
        return 0;
    }
    struct thread_val init = {};
    init.tgid = child;
    init.outstanding = frames;
    bpf_probe_read_kernel(&init.comm, sizeof(init.comm), args->comm);
    if (threads.update(&child, &init))
        stat_add(STAT_THREADS_FULL);
    return 0;
}

// exec replaces the image: no frame of the old one can be returned from.
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 ids[2] = {(u32)args->pid, (u32)args->old_pid};
    #pragma unroll
    for (int i = 0; i < 2; i++) {
        struct thread_val *t = threads.lookup(&ids[i]);
        if (t) {
            t->outstanding = 0;
            bpf_get_current_comm(&t->comm, sizeof(t->comm));
        }
    }
    return 0;
}

// A thread that ends takes its frames with it; its id may come back as another's.
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)args->pid;
    struct thread_val *t = threads.lookup(&tid);
    if (t) {
        t->outstanding = 0;
        t->exited = 1;
    }
#if FATES
    // The exiting thread is current. Its process's list (with the last
    // thread) is flushed after this: what is on it now is discarded (or, the
    // signal that killed the process, taken by its default action). Its own
    // list is read here too, for kernels that keep it until now.
    const char *task = (const char *)bpf_get_current_task();
    u64 mask = 0;
    s32 exit_code = 0;
    bpf_probe_read_kernel(&mask, sizeof(mask), task + TASK_PENDING_SIGNAL_OFFSET);
    bpf_probe_read_kernel(&exit_code, sizeof(exit_code), task + TASK_EXIT_CODE_OFFSET);
    if (mask)
        fate_exit(tid, 0, mask, exit_code);
    if (args->group_dead) {
        const char *signal = 0;
        bpf_probe_read_kernel(&signal, sizeof(signal), task + TASK_SIGNAL_OFFSET);
        mask = 0;
        if (signal)
            bpf_probe_read_kernel(&mask, sizeof(mask), signal + SIGNAL_SHARED_PENDING_OFFSET);
        if (mask)
            fate_exit(bpf_get_current_pid_tgid() >> 32, 1, mask, exit_code);
    }
#endif
    return 0;
}

#if FATES
// On this kernel a thread's own pending list is already empty when
// sched_process_exit fires, so it is read where a thread asks to end: what
// is on it then is discarded (no user code runs after). A thread ended by
// its process's group exit is settled by user space.
static __always_inline int exit_enter(void)
{
    u64 id = bpf_get_current_pid_tgid();
    u64 mask = 0;
    bpf_probe_read_kernel(&mask, sizeof(mask),
                          (const char *)bpf_get_current_task() + TASK_PENDING_SIGNAL_OFFSET);
    if (mask)
        fate_exit((u32)id, 0, mask, 0);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit) { return exit_enter(); }
TRACEPOINT_PROBE(syscalls, sys_enter_exit_group) { return exit_enter(); }

// sigwait, sigtimedwait and sigwaitinfo take a pending signal off a list
// without a signal_deliver; the signal is what the call returns.
TRACEPOINT_PROBE(syscalls, sys_exit_rt_sigtimedwait)
{
    int sig = (int)args->ret;
    if (sig <= 0 || !sig_wanted(sig))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) == SELF_TGID)
        return 0;
    fate_taken((u32)id, id >> 32, sig, -0x20000, true);
    return 0;
}
#endif

// ---- signalfd: the mask at entry, the fd at exit ---------------------------

static __always_inline int signalfd_enter(u16 syscall, int ufd, const void *umask,
                                          u64 sizemask, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    if (tgid == SELF_TGID || !pid_wanted(tgid, 0, 0))
        return 0;
    struct inflight *f = inflight_begin(tgid, tid, syscall);
    if (!f)
        return 0;
    f->arg_pid = ufd;
    f->flags = flags;
    f->sig = -1;   // never matches a signal_generate
    if (sizemask == 8 && bpf_probe_read_user(&f->mask, sizeof(f->mask), umask) == 0)
        f->mask_ok = 1;
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_signalfd)
{
    return signalfd_enter(SC_SIGNALFD, (int)args->ufd, args->user_mask, args->sizemask, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_signalfd4)
{
    return signalfd_enter(SC_SIGNALFD4, (int)args->ufd, args->user_mask, args->sizemask,
                          (u32)args->flags);
}

static __always_inline int signalfd_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    struct inflight *f = inflight_find(tid);
    if (!f)
        return 0;
    struct inflight c = *f;
    inflight_end(tid, f);
    u64 ts = bpf_ktime_get_ns();
    if (ret >= 0) {
        // The kernel ignores SIGKILL and SIGSTOP in the mask.
        u64 mask = c.mask & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
        struct signalfd_key key = {.tgid = tgid, .fd = (s32)ret};
        struct signalfd_val *v = signalfds.lookup(&key);
        if (!v || c.arg_pid == -1) {
            // A new fd (or one that existed before we attached): flags are
            // set at creation only; an update keeps them.
            struct signalfd_val init = {};
            init.flags = c.flags;
            init.created_ts = c.arg_pid == -1 ? ts : 0;
            bpf_get_current_comm(&init.comm, sizeof(init.comm));
            if (signalfds.update(&key, &init)) {
                stat_add(STAT_SIGNALFDS_FULL);
            }
            v = signalfds.lookup(&key);
        }
        if (v) {
            v->mask = mask;
            v->last_ts = ts;
            __sync_fetch_and_add(&v->calls, 1);
        }
    }
    struct event *e = event_reserve();
    if (!e)
        return 0;
    e->ts = ts;
    e->kind = EV_SIGNALFD;
    e->sender_tgid = tgid;
    e->sender_tid = tid;
    e->syscall = c.syscall;
    e->arg_pid = c.arg_pid;
    e->ret = (s32)ret;
    e->handler = c.mask;
    e->flags = c.flags;
    e->has_info = c.mask_ok;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    event_submit(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_signalfd) { return signalfd_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_signalfd4) { return signalfd_exit(args->ret); }
