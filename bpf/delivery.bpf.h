// Deliveries and rt_sigreturn, on the thread itself: handler frames, and returns with none.

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
#if RAW_GENERATE
    if (sig == SIGKILL)   // whatever the filters: the death event that reads it has its own
        group_kill_taken(tgid);
#endif
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
    struct event *e = event_begin(EV_DELIVER, bpf_ktime_get_ns(), tgid, tid);
    if (!e)
        return 0;
    e->u.deliver.sig = sig;
    e->u.deliver.code = args->code;
    e->u.deliver.sa_handler = args->sa_handler;
    e->u.deliver.sa_flags = args->sa_flags;
    event_submit(e);   // no comm: the target's is on its flow and thread rows
    return 0;
}

#if !LIGHT
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
        struct event *e = event_begin(EV_UNMATCHED_SIGRETURN, bpf_ktime_get_ns(), tgid, tid);
        if (!e)
            return 0;
        bpf_get_current_comm(&e->u.sigreturn.comm, sizeof(e->u.sigreturn.comm));
        event_submit(e);
    }
    return 0;
}
#endif   // !LIGHT
