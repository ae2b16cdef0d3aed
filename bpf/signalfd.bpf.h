// signalfd and signalfd4: the mask at entry, the fd at exit.

#if !LIGHT

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
    struct event *e = event_begin(EV_SIGNALFD, ts, tgid, tid);
    if (!e)
        return 0;
    struct signalfd_payload *p = &e->u.signalfd;
    p->mask = c.mask;
    p->ufd = c.arg_pid;
    p->ret = (s32)ret;
    p->flags = c.flags;
    p->syscall = c.syscall;
    p->mask_ok = c.mask_ok;
    bpf_get_current_comm(&p->comm, sizeof(p->comm));
    event_submit(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_signalfd) { return signalfd_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_signalfd4) { return signalfd_exit(args->ret); }
#endif   // !LIGHT
