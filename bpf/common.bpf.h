// Switches, the in-flight record of a send, the maps, the filters, detail events and flow counting.

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
#if RAW_GENERATE
// How many of a process's threads took a SIGKILL the kernel queued itself: a fatal signal
// ends the whole thread group (complete_signal, or a core dump's zap_threads, SIGKILLs each
// thread), and so do exit_group and exec's de_thread. The process's death event takes the
// count; an end of another kind drops it. Rare (SIGKILL takes only); LRU: never full.
struct group_kill {
    u64 last_ts;
    u32 threads;
    u32 pad;
};
BPF_TABLE("lru_hash", u32, struct group_kill, group_kills, GROUP_KILL_ENTRIES);
#define GROUP_KILL_MAX_AGE_NS (10ULL * 1000000000)   // older: another process's, of a reused pid

static __always_inline void group_kill_taken(u32 tgid)
{
    u64 now = bpf_ktime_get_ns();
    struct group_kill *g = group_kills.lookup(&tgid);
    if (g && now - g->last_ts < GROUP_KILL_MAX_AGE_NS) {
        __sync_fetch_and_add(&g->threads, 1);
        g->last_ts = now;
        return;
    }
    struct group_kill first = {.last_ts = now, .threads = 1};
    group_kills.update(&tgid, &first);
}
#endif
#if !RAW_GENERATE
// The classic signal_generate names only the target thread: whose thread each
// thread created since attach is (task_newtask), so that a signal to one that
// is gone before user space reads /proc is still its process's.
BPF_TABLE("lru_hash", u32, u32, thread_owner, THREAD_ENTRIES);
#endif
// Never written: its value type shows user space how this compiler laid out
// struct event (sigtop.live.layout checks it against the header at attach).
BPF_ARRAY(event_layout, struct event, 1);

// sigtop's own process, whose signals are not counted: set by user space at attach, not
// compiled in, so that one compiled program serves every sigtop run (0: none excluded).
BPF_ARRAY(excluded_tgid, u32, 1);

static __always_inline u32 self_tgid(void)
{
    int zero = 0;
    u32 *tgid = excluded_tgid.lookup(&zero);
    return tgid ? *tgid : 0;
}
#define SELF_TGID self_tgid()

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

// An event of `kind`, its header filled (the only place a header is written);
// 0 when the ring buffer is full (counted). Callers pass the clock and ids
// they already hold: a helper call costs tens of ns on a VM, and every program
// here is on someone's hot path. Rare events (deaths, the OOM killer's
// choices, dispositions set) are always sent: the answers they give ("who
// killed it") are wanted in every mode; the per-signal ones only with DETAILS.
static __always_inline struct event *event_begin_any(u32 kind, u64 ts, u32 tgid, u32 tid)
{
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        stat_add(STAT_EVENTS_LOST);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->head.ts = ts;
    e->head.kind = kind;
    e->head.tgid = tgid;
    e->head.tid = tid;
    return e;
}

// A detail event (one per signal, send or delivery): only with DETAILS.
static __always_inline struct event *event_begin(u32 kind, u64 ts, u32 tgid, u32 tid)
{
#if DETAILS
    return event_begin_any(kind, ts, tgid, tid);
#else
    return 0;
#endif
}

// A rare event for the current task, now.
static __always_inline struct event *event_begin_current(u32 kind)
{
    u64 id = bpf_get_current_pid_tgid();
    return event_begin_any(kind, bpf_ktime_get_ns(), id >> 32, (u32)id);
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
        if (key->sender_tgid) {   // current is the sender: once per flow, not per signal
            init->sender_cgroup = bpf_get_current_cgroup_id();
            init->sender_uid = (u32)bpf_get_current_uid_gid();
        }
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
// (task->thread_pid->level > 0). Two reads at BTF offsets; without BTF,
// whether the kernel can give the current task's pid in sigtop's own pid
// namespace (HOST_PIDNS_DEV/INO, from /proc/self/ns/pid): the helper refuses
// for a task of another one.
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
#elif defined(HOST_PIDNS_INO)
    struct bpf_pidns_info ns = {};
    return bpf_get_ns_current_pid_tgid(HOST_PIDNS_DEV, HOST_PIDNS_INO, &ns, sizeof(ns)) != 0;
#else
    return 0;
#endif
}

// The clock, read only when an event needs it (a flow reads it once, at creation).
static __always_inline u64 event_clock(void)
{
    return DETAILS ? bpf_ktime_get_ns() : 0;
}

