// A process's life as signals see it: handler frames across fork, exec and exit; what was
// pending when a thread or a process exited; deaths by a signal; the OOM killer's choices;
// dispositions set (rt_sigaction).

#if RAW_GENERATE
// A process killed by a signal: its parent's SIGCHLD is raised on the dying
// process's own thread (exit_notify), with the killing signal in si_status.
// Rare: an event of its own, so the deaths table needs no flow of its own.
static __always_inline void death_event(unsigned long info, s32 parent, u32 parent_tgid, int code)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u64 ts = bpf_ktime_get_ns();
    u32 threads = 0;
    struct group_kill *g = group_kills.lookup(&tgid);
    if (g) {
        if (ts - g->last_ts < GROUP_KILL_MAX_AGE_NS)
            threads = g->threads;
        group_kills.delete(&tgid);
    }
    if (!pid_wanted(tgid, parent_tgid, 0))
        return;
    struct event *e = event_begin_any(EV_DEATH, ts, id >> 32, (u32)id);
    if (!e)
        return;
    struct death_payload *p = &e->u.death;
    int status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), (const char *)info + 24);   // si_status (uapi layout)
    p->sig = status & EXIT_SIGNAL_MASK;
    p->code = code;
    p->parent_pid = parent;
    p->parent_tgid = parent_tgid;
    u64 started = 0;   // task->start_time: CLOCK_MONOTONIC ns, as ktime
    bpf_probe_read_kernel(&started, sizeof(started),
                          (const char *)bpf_get_current_task() + TASK_START_TIME_OFFSET);
    p->lifetime_ns = started ? ts - started : 0;
    p->cgroup_id = bpf_get_current_cgroup_id();   // it is gone from /proc by the time user space reads this
    p->threads_killed = threads;
    bpf_get_current_comm(&p->comm, sizeof(p->comm));
    event_submit(e);
}

#endif

#if !LIGHT
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
    struct event *e = event_begin_any(EV_SIGACTION, bpf_ktime_get_ns(), tgid, (u32)id);
    if (!e)
        return 0;
    e->u.sigaction.sig = sig;
    e->u.sigaction.handler = sa.handler;
    e->u.sigaction.flags = sa.flags;
    event_submit(e);
    return 0;
}
#endif

#if HAS_OOM_TRACEPOINT
// The OOM killer's choice, just before its SIGKILL (which the kernel raises
// with SI_KERNEL from whatever task needed the memory): the deaths table
// names the OOM killer as the cause.
TRACEPOINT_PROBE(oom, mark_victim)
{
    struct event *e = event_begin_current(EV_OOM);
    if (!e)
        return 0;
    e->u.oom.pid = args->pid;
    e->u.oom.uid = args->uid;
    e->u.oom.anon_rss_kb = args->anon_rss;
    event_submit(e);
    return 0;
}
#endif

// ---- handler frames across fork, exec and exit -----------------------------
// These run on process creation, exec and exit only, never per signal.

#define CLONE_THREAD 0x00010000

// A process forked inside a handler has the parent's stack: it may return
// from those frames once. A new thread starts with none.
TRACEPOINT_PROBE(task, task_newtask)
{
#if !RAW_GENERATE
    if (args->clone_flags & CLONE_THREAD) {
        u32 thread = (u32)args->pid;
        u32 owner = bpf_get_current_pid_tgid() >> 32;
        thread_owner.update(&thread, &owner);
    }
#endif
#if FILTER_PIDS
    // A thread of a filtered process is filtered too (a signal may name it, not its process);
    // a child of one followed (--follow) is followed, with its own children.
    u32 creator = bpf_get_current_pid_tgid() >> 32;
    u8 *watched = pid_filter.lookup(&creator);
    if (watched && ((args->clone_flags & CLONE_THREAD) || (*watched & FILTER_FOLLOW))) {
        u32 task = (u32)args->pid;
        u8 bits = FILTER_FOLLOWED | ((args->clone_flags & CLONE_THREAD) ? 0 : (*watched & FILTER_FOLLOW));
        if (pid_filter.update(&task, &bits))
            stat_add(STAT_FILTER_FULL);
    }
#endif
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
#if FATES
    if (ids[1] != ids[0])
        fate_exec(ids[1], ids[0]);
#endif
#if RAW_GENERATE
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    group_kills.delete(&tgid);   // de_thread's SIGKILLs: the process lives on
#endif
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
#if RAW_GENERATE
    const char *task = (const char *)bpf_get_current_task();
    s32 exit_code = 0;
    bpf_probe_read_kernel(&exit_code, sizeof(exit_code), task + TASK_EXIT_CODE_OFFSET);
    if (args->group_dead && !(exit_code & EXIT_SIGNAL_MASK)) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        group_kills.delete(&tgid);   // exit_group's SIGKILLs: no death by a signal follows
    }
#endif
#if FATES
    // The exiting thread is current. Its process's list (with the last
    // thread) is flushed after this: what is on it now is discarded (or, the
    // signal that killed the process, taken by its default action). Its own
    // list is read here too, for kernels that keep it until now.
    u64 mask = 0;
    bpf_probe_read_kernel(&mask, sizeof(mask), task + TASK_PENDING_SIGNAL_OFFSET);
    if (mask)
        fate_exit(tid, 0, mask, exit_code);
    else if (exit_code & EXIT_SIGNAL_MASK)
        // Ended by its process's fatal signal, its own list already flushed: what was on it
        // is discarded, but for that signal (sent to this thread, tgkill), taken by its
        // default action as it killed the process.
        fate_exit(tid, 0, ~0ULL, exit_code);
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

#if FATES && !LIGHT
// On this kernel a thread's own pending list is already empty when
// sched_process_exit fires, so it is read where a thread asks to end: what
// is on it then is discarded (no user code runs after). A thread ended by
// its process's fatal signal is settled at sched_process_exit (above).
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

#endif

#if FILTER_PIDS
// A followed task is forgotten when it is freed (reaped: a zombie is still a target, and its
// id may be someone else's after): the filter holds only what is there.
TRACEPOINT_PROBE(sched, sched_process_free)
{
    u32 task = (u32)args->pid;
    u8 *bits = pid_filter.lookup(&task);
    if (bits && (*bits & FILTER_FOLLOWED) && !(*bits & FILTER_ASKED))
        pid_filter.delete(&task);
    return 0;
}
#endif
