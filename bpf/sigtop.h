// sigtop's kernel ABI: every enum and struct that the BPF programs and the
// Python side share, defined once. Python reads the structs' layouts from
// BCC (which compiles this file), and tests/test_abi.py reads this header to
// check the Python enums, stat names and field orders against it, without
// root. Change a value here and that test names what to change in Python.

#ifndef SIGTOP_H
#define SIGTOP_H

// Map sizes come from the trace configuration (sigtop.live.config.TraceConfig
// passes them as -D flags), so user space evicts with the same numbers.
#ifndef FLOW_ENTRIES
#error "FLOW_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef THREAD_ENTRIES
#error "THREAD_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef SIGNALFD_ENTRIES
#error "SIGNALFD_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef PID_FILTER_ENTRIES
#error "PID_FILTER_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef INFLIGHT_ENTRIES
#error "INFLIGHT_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef PENDING_ENTRIES
#error "PENDING_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef EXIT_ENTRIES
#error "EXIT_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef GROUP_KILL_ENTRIES
#error "GROUP_KILL_ENTRIES comes from TraceConfig.cflags()"
#endif
#ifndef RINGBUF_PAGES
#error "RINGBUF_PAGES comes from TraceConfig.cflags()"
#endif

// The kernel's own values that both sides read (sigtop.names takes them from here). Each is
// written exactly as the kernel's uapi headers write it, so that one of those included first
// is not redefined with another value.
#define SIGRTMIN 32           // the kernel's first realtime signal (glibc's SIGRTMIN is 34)
#define RT_LAST_SIGNAL 64     // _NSIG: the last signal number (SIGRTMAX)
#define SI_TIMER -2           // si_code of a POSIX timer's signal
#define CLD_EXITED 1          // SIGCHLD si_codes: how the child changed state
#define CLD_KILLED 2
#define CLD_DUMPED 3
#define CLD_CONTINUED 6
#define EXIT_SIGNAL_MASK 0x7f // task->exit_code's low 7 bits: the signal that killed it

// How a signal was sent (sigtop.names.Syscall).
enum syscall_id {
    SC_KERNEL = 0,
    SC_KILL = 1,
    SC_TKILL = 2,
    SC_TGKILL = 3,
    SC_RT_SIGQUEUEINFO = 4,
    SC_RT_TGSIGQUEUEINFO = 5,
    SC_PIDFD_SEND_SIGNAL = 6,
    SC_SIGNALFD = 7,
    SC_SIGNALFD4 = 8,
    SC_OVERFLOW = 9,          // not a syscall: the signals the flows map had no room for
    SC_PDEATHSIG = 10,        // not a syscall: a parent's death signal (PR_SET_PDEATHSIG), raised as
                              // the parent exits; the sender is that parent
    SC_CGROUP_KILL = 11,      // not a syscall: the SIGKILLs of a write to a cgroup's cgroup.kill;
                              // the sender is the writer
    SC_PTRACE = 12,           // PTRACE_ATTACH's SIGSTOP (SI_KERNEL, raised inside the tracer's call)
};

// The outcome of one send (sigtop.names.Result): 0..4 are the kernel's
// TRACE_SIGNAL_* as signal_generate reports them; the rest are ours.
enum result_id {
    RES_DELIVERED = 0,        // queued (TRACE_SIGNAL_DELIVERED)
    RES_IGNORED = 1,
    RES_ALREADY_PENDING = 2,
    RES_OVERFLOW_FAIL = 3,
    RES_LOSE_INFO = 4,
    RES_NO_SIGNAL = 5,        // the call succeeded and generated nothing (sig 0)
    RES_FAILED = 6,           // the call failed: see err
};

// si_codes a caller chose freely (the sigqueue family may pass any negative
// code, any code at all to itself) would each take a flow of their own: the
// kernel key keeps the codes the kernel defines and folds the rest into this
// one (the detail event keeps the real code).
#define CODE_OTHER 0x7fff0000

// A send that asked for no signal at all (below 0 or above 64: EINVAL): one
// flow per sender, syscall and errno, never one per number asked for.
#define SIG_INVALID -1

// The pid filter's entries (map pid_filter: task id -> these bits).
#define FILTER_ASKED 1        // a pid the user asked for (or one of its threads at attach)
#define FILTER_FOLLOW 2       // its children are followed too (--follow)
#define FILTER_FOLLOWED 4     // added as it was created: removed once it is reaped

// The overflow counters: signals (and failed sends) that found the flows map
// full, by signal and result, so that a full map never loses a count.
#define OVERFLOW_SIGNALS 65
#define OVERFLOW_RESULTS 8
#define OVERFLOW_SLOTS (OVERFLOW_SIGNALS * OVERFLOW_RESULTS)

// struct event_header's kind (sigtop.names.EventKind): which payload the event carries.
enum event_kind {
    EV_GENERATE = 1,
    EV_SEND_DONE = 2,
    EV_DELIVER = 3,
    EV_SIGNALFD = 4,
    EV_UNMATCHED_SIGRETURN = 5,
    EV_DEATH = 6,             // a process killed by a signal (struct death_payload)
    EV_OOM = 7,               // the OOM killer chose a victim (struct oom_payload)
    EV_SIGACTION = 8,         // a process set a disposition (struct sigaction_payload)
};

// Slots of the per-CPU stats array (sigtop.live.maps.STAT_NAMES, in order).
enum stat_id {
    STAT_EVENTS_LOST = 0,
    STAT_FLOWS_FULL = 1,
    STAT_THREADS_FULL = 2,
    STAT_SIGNALFDS_FULL = 3,
    STAT_EVENTS_SENT = 4,
    STAT_PENDING_FULL = 5,    // a queued signal found the pending map full: its fate is not tracked
    STAT_EXITS_FULL = 6,      // an exit with signals pending found the exits map full
    STAT_TAKEN_UNQUEUED = 7,  // a signal taken with no record of its queueing (queued before attach)
    STAT_FILTER_FULL = 8,     // a process or thread to follow found the pid filter full: not followed
    STAT_MAX = 9,
};

// One aggregation key of the flows map (sigtop.wire.FlowKey; sender_tgid
// is sender_pid there).
struct flow_key {
    u32 sender_tgid;   // 0: raised by the kernel
    s32 target_pid;    // task id the kernel reports; for a failed send, the pid asked for
    u32 target_tgid;   // where the kernel says it (tgkill's tgid, a fault on current), else 0
    s32 sig;
    s32 code;
    s32 err;           // errno of a failed send
    u16 syscall;       // enum syscall_id
    u8 result;         // enum result_id
    u8 spoofed;        // the caller's siginfo claims another si_pid or si_uid than its own
    u8 ns_local;       // a failed send or probe from a child pid namespace: target_pid is a pid of
                       // the sender's namespace, not the host's
    u8 pad[3];
};

// Generate-to-take latency: half-octave buckets. Bucket 0 holds everything
// below 2^LAT_FIRST_LOG2 + 2^(LAT_FIRST_LOG2-1) ns; bucket i >= 0 starts at
// 2^b + (i & 1) * 2^(b-1) with b = LAT_FIRST_LOG2 + i / 2; the last one holds
// everything beyond (sigtop.wire.latency_bucket_bounds).
#define LAT_FIRST_LOG2 9
#define LAT_BUCKETS 56

// Last-seen times are stamped by user space when a count moves: a clock
// read per signal is a tenth of what a flow costs to count.
struct flow_val {
    u64 count;
    u64 first_ts;
    char sender_comm[16];
    char target_comm[16];
    s32 claimed_pid;   // a spoofed flow: the si_pid its first siginfo claimed
    u32 claimed_uid;   // ... and the si_uid
    u64 sender_cgroup; // the sender's cgroup v2 id when the flow began (a short-lived sender's
                       // /proc may be gone before it is read); 0 for the kernel
    u32 sender_uid;    // ... and its real uid (init namespace): whose row it is when rows must go
    u32 pad_uid;
    // The fates of this flow's queued signals (result DELIVERED or LOSE_INFO):
    u64 taken;         // taken for action (signal_deliver matched to its queueing)
    u64 read;          // left the pending list without a delivery: a sigwait, a signalfd read,
                       // or flushed (sigaction to SIG_IGN); the kernel finds out at sigwait, at
                       // the next signal of that kind, or at exit (user space at the others)
    u64 untracked;     // queued with no room in the pending map: fate unknown
    u64 suppressed;    // left the list of a traced target with no delivery: its tracer resumed it
                       // from the signal-delivery-stop without the signal (the kernel finds out
                       // at the next signal of that kind; user space at the others)
    u32 suppressed_by; // ... that tracer's tgid (the last one)
    u32 pad_tracer;
    u64 discarded;     // discarded where the kernel side sees it happen: the old leader's own list
                       // when another thread exec'd (de_thread); user space counts those at exit
    u64 lat_max;       // generate to take (or sigwait), ns
    u64 lat_sum;       // ... all of them added up (an exact sum for a Prometheus histogram)
    u32 lat_hist[LAT_BUCKETS];
};

// A queued signal on one pending list: a thread's own (shared 0, owner =
// tid) or its process's (shared 1, owner = tgid), as the kernel keeps them.
// A standard signal is on a list once at most (seq 0); realtime ones queue,
// numbered by their rt_queue.
struct pending_key {
    u32 owner;
    u16 sig;
    u8 shared;
    u8 old_leader;     // exits only: 1, the old leader's realtime records at an exec from a
                       // thread (de_thread flushes its list unseen: they were discarded)
    u32 seq;
};

struct pending_val {
    struct flow_key flow;  // whose signal it is
    u64 ts;                // when it was queued; 0: taken (a standard signal's record stays,
                           // to be reused by the next one on that list)
};

// A realtime signal's queue on one list: records head..tail-1 are on it.
struct rt_queue {
    u32 head;
    u32 tail;
    u32 records_owner; // its records' key.owner where not the list's own id: the thread that
                       // exec'd from a non-leader thread and took the leader's id (until empty)
    u32 pad;
};

// A thread (shared 0) or process (shared 1, the last thread) that exited with
// signals pending: what the kernel still had on that list. User space settles
// the pending records of that owner with it (sig 0, seq 0 in the key).
struct exit_val {
    u64 mask;          // bit n-1: signal n was pending at exit (discarded)
    u64 ts;
    s32 exit_code;     // task->exit_code: the low 7 bits are the killing signal
    u32 pad;
};

// Written only by the thread itself (deliver and rt_sigreturn run on it),
// so plain increments are exact.
struct thread_val {
    u64 sigreturns;
    u64 handler_deliveries;  // signal_deliver with a real handler
    u64 deliveries;          // every signal_deliver (default actions too)
    u64 unmatched;           // rt_sigreturn with no handler frame outstanding
    u32 tgid;
    u32 outstanding;         // handler frames this thread may still return from: +1 per
                             // handler delivery, -1 per rt_sigreturn, copied to a forked
                             // child, cleared by exec and at exit
    u32 exited;              // the thread is gone: a new one with this id starts afresh
    u32 pad;
    char comm[16];
};

struct signalfd_key {
    u32 tgid;
    s32 fd;
};

struct signalfd_val {
    u64 mask;
    u64 calls;
    u64 created_ts;   // 0: created before sigtop attached
    u64 last_ts;
    u32 flags;
    u32 pad;
    char comm[16];
};

// Every detail event: a header that event_begin() fills, then the payload of
// its kind, each named (sigtop.events decodes each kind by these names, and
// tests/test_abi.py checks every field's offset against what BCC compiled).
struct event_header {
    u64 ts;            // bpf_ktime_get_ns() (CLOCK_MONOTONIC)
    u32 kind;          // enum event_kind: which payload follows
    u32 tgid;          // current's process (generate: the interrupted or faulting task for a
                       // kernel-raised signal; the flow key says 0, "the kernel")
    u32 tid;           // current's thread
    u32 pad;
};

// EV_GENERATE (a signal generated) and EV_SEND_DONE (a send syscall that
// generated none: a sig-0 probe or a failure).
struct send_payload {
    struct flow_key flow;  // the key it was counted under, exactly as the kernel built it
    s32 sig;           // the number asked for (flow.sig is SIG_INVALID for one that is no signal)
    s32 code;          // si_code as sent (flow.code folds made-up ones into CODE_OTHER)
    s32 target_pid;    // generate: the task the kernel names; send done: the pid (or tid) asked for
    u32 target_tgid;   // its process, where known
    s32 ret;           // send done: the syscall's return value (a negative errno)
    s32 group;         // generate: sent to the whole thread group
    s32 arg_pid;       // the call's arguments: kill/tkill pid, tg* tgid, a pidfd
    s32 arg_tid;       // tgkill / rt_tgsigqueueinfo thread
    s32 info_pid;      // the caller's siginfo (has_info): si_pid, si_uid, si_value
    u32 info_uid;
    u64 info_value;
    u32 flags;         // pidfd_send_signal flags
    u8 has_info;
    u8 pad[3];
    char comm[16];     // send done: the sender's comm (generate: on the flow row instead)
};

// EV_DELIVER: signal_deliver, on the thread that takes the signal.
struct deliver_payload {
    s32 sig;
    s32 code;
    u64 sa_handler;    // 0 SIG_DFL, 1 SIG_IGN, else the handler's address
    u64 sa_flags;
};

// EV_SIGNALFD: a signalfd or signalfd4 call, at its exit.
struct signalfd_payload {
    u64 mask;          // the mask it asked for
    s32 ufd;           // -1: create; else the signalfd whose mask it replaces
    s32 ret;           // the fd, or a negative errno
    u32 flags;         // signalfd4's SFD_* flags
    u16 syscall;       // enum syscall_id: SC_SIGNALFD or SC_SIGNALFD4
    u8 mask_ok;        // the mask could be read (sizemask 8)
    u8 pad;
    char comm[16];
};

// EV_UNMATCHED_SIGRETURN: an rt_sigreturn with no handler frame outstanding.
struct sigreturn_payload {
    char comm[16];
};

// EV_DEATH: a process killed by a signal (from its parent's SIGCHLD, raised
// on the dying process: the header names it).
struct death_payload {
    s32 sig;           // the signal that killed it (si_status)
    s32 code;          // CLD_KILLED or CLD_DUMPED
    s32 parent_pid;    // the task its SIGCHLD went to
    u32 parent_tgid;
    u64 lifetime_ns;   // since task->start_time; 0: not known
    u64 cgroup_id;     // its cgroup v2 id (it is gone from /proc by the time user space reads this)
    char comm[16];
    u32 threads_killed;   // its threads that took the kernel's SIGKILL (the fatal signal's fan-out)
    u32 pad;
};

// EV_OOM: the OOM killer chose a victim (oom:mark_victim).
struct oom_payload {
    u32 pid;
    u32 uid;
    u64 anon_rss_kb;
};

// EV_SIGACTION: a process set a disposition (rt_sigaction with a new action).
struct sigaction_payload {
    s32 sig;
    u32 pad;
    u64 handler;       // 0 default, 1 ignore, else a handler's address
    u64 flags;
};

struct event {
    struct event_header head;
    union {
        struct send_payload send;
        struct deliver_payload deliver;
        struct signalfd_payload signalfd;
        struct sigreturn_payload sigreturn;
        struct death_payload death;
        struct oom_payload oom;
        struct sigaction_payload sigaction;
    } u;
};

#endif
