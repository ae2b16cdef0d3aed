// Each queued signal followed to its end: taken (a delivery), read (sigwait), or settled by
// user space (discarded at exit, read from a signalfd, still pending).

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
    // The max stays exact with takes of one flow on several CPUs at once: compare and swap
    // (a few tries: each failure means another CPU moved it, and only upwards).
    u64 seen = v->lat_max;
    #pragma unroll
    for (int i = 0; i < 8 && ns > seen; i++) {
        u64 was = __sync_val_compare_and_swap(&v->lat_max, seen, ns);
        if (was == seen)
            break;
        seen = was;
    }
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

// The tgid of the task tracing `task` (ptrace: its parent while traced), 0 if none.
static __always_inline u32 traced_by(const char *task)
{
    u32 ptrace = 0;
    bpf_probe_read_kernel(&ptrace, sizeof(ptrace), task + TASK_PTRACE_OFFSET);
    if (!ptrace)
        return 0;
    const char *parent = 0;
    bpf_probe_read_kernel(&parent, sizeof(parent), task + TASK_PARENT_OFFSET);
    s32 ids[2] = {};   // parent->pid, parent->tgid
    if (parent)
        bpf_probe_read_kernel(&ids, sizeof(ids), parent + TASK_PID_OFFSET);
    return ids[1];
}

// A live record left its list unseen: read, or, on a traced target, suppressed by its tracer
// (taken into a signal-delivery-stop, resumed without it: no signal_deliver ran).
static __always_inline void fate_left(const struct pending_val *p, const char *task)
{
    u32 tracer = traced_by(task);
    if (!tracer) {
        fate_read(p);
        return;
    }
    struct flow_val *v = fate_flow(&p->flow, p->ts);
    if (v) {
        __sync_fetch_and_add(&v->suppressed, 1);
        v->suppressed_by = tracer;
    }
}

// A signal queued (result DELIVERED or LOSE_INFO) on `owner`'s list, of `task` (the target).
static __always_inline void fate_queued(struct flow_val *v, const struct flow_key *key,
                                        u32 owner, u8 shared, int sig, u64 ts, const char *task)
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
        if (q->records_owner)
            pk.owner = q->records_owner;   // a queue an exec moved: its records keep their key
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
                // (a signalfd read, a flush; a tracer that did not pass it on).
                fate_left(old, task);
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
            if (q->records_owner) {
                pk.owner = q->records_owner;
                if (q->head == q->tail)
                    q->records_owner = 0;   // emptied: the list's own id keys its records again
            }
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
        // A dying process's other threads take a SIGKILL never queued; a sigwait that user
        // space settled as read before the call returned was counted there.
        if (sig != SIGKILL && !read)
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

// exec from a thread that is not the leader (de_thread): the old leader is released, its own
// list with it (discarded), and the exec'ing thread takes the leader's id, keeping its own list
// (its records move to the new id: the new image takes them as the leader). A realtime queue
// moves whole, its records keeping their keys (records_owner): no loop over the records. The old
// leader's realtime records stay, settled by user space from an exit record (old_leader 1).
// Settled by user space, as an exit's: records of `sig` on the leader's id queued before now
// were on the old leader's list, which de_thread flushed. (The mask builds up in the map's
// value, not in a register: the verifier then sees one state per signal, not 2^33.)
static __always_inline void old_leader_flushed(u32 leader, int sig)
{
    struct pending_key at = {};
    at.owner = leader;
    at.old_leader = 1;
    struct exit_val *ev = exits.lookup(&at);
    if (!ev) {
        struct exit_val fresh = {};
        exits.insert(&at, &fresh);
        ev = exits.lookup(&at);
        if (!ev) {
            stat_add(STAT_EXITS_FULL);
            return;
        }
    }
    ev->mask |= 1ULL << (sig - 1);
    ev->ts = bpf_ktime_get_ns();
}

// Loops, not unrolled: exec from a thread is rare, and its 63 signals unrolled were 11,500 of the
// program's 18,000 instructions and 0.4 s of the 1.3 s compile (a cold start); the verifier
// bounds them (kernel 5.3 and later).
static __always_inline void fate_exec(u32 old_tid, u32 leader)
{
    #pragma clang loop unroll(disable)
    for (int sig = SIGRTMIN; sig <= RT_LAST_SIGNAL; sig++) {
        struct pending_key to = {};
        to.owner = leader;
        to.sig = sig;
        struct pending_key from = to;
        from.owner = old_tid;
        struct rt_queue *moving = rt_queues.lookup(&from);
        if (moving) {
            struct rt_queue moved = *moving;
            if (!moved.records_owner)
                moved.records_owner = old_tid;
            rt_queues.delete(&from);
            if (moved.head == moved.tail)
                rt_queues.delete(&to);
            else if (rt_queues.update(&to, &moved))
                stat_add(STAT_PENDING_FULL);   // no room: its records are settled by user space
        } else {
            struct rt_queue *old = rt_queues.lookup(&to);
            if (old && old->head != old->tail) {
                old->head = old->tail;   // the old leader's records, now off every queue
                old_leader_flushed(leader, sig);
            }
        }
    }
    #pragma clang loop unroll(disable)
    for (int sig = 1; sig < SIGRTMIN; sig++) {
        struct pending_key pk = {};
        pk.owner = leader;
        pk.sig = sig;
        struct pending_val *p = pending.lookup(&pk);
        if (p && p->ts) {
            struct flow_val *v = fate_flow(&p->flow, p->ts);
            if (v)
                __sync_fetch_and_add(&v->discarded, 1);
            private_count(sig, -1);
            pending.delete(&pk);
        }
        struct pending_key old = pk;
        old.owner = old_tid;
        struct pending_val *moved = pending.lookup(&old);
        if (moved && moved->ts) {
            struct pending_val value = *moved;
            pending.delete(&old);
            if (pending.update(&pk, &value)) {   // no room: the signal is not followed further
                private_count(sig, -1);
                struct flow_val *v = fate_flow(&value.flow, value.ts);
                if (v)
                    __sync_fetch_and_add(&v->untracked, 1);
            }
        }
    }
}

#if !LIGHT
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
#endif   // !LIGHT
#endif   // FATES
