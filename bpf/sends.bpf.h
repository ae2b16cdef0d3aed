// The send syscalls: sys_enter records what was asked (the in-flight record signal_generate
// attributes by), sys_exit counts what generated no signal: sig-0 probes and failures.

// ---- sends: sys_enter records what was asked ------------------------------

// What a send asked for, from its arguments: at sys_enter, or (LIGHT) at signal_generate
// from the registers the syscall was entered with.
static __always_inline void send_request(struct inflight *f, u16 syscall, s32 pid, s32 tid, int sig,
                                         const void *uinfo, u32 flags)
{
    f->arg_pid = pid;
    f->arg_tid = tid;
    f->sig = sig;
    f->flags = flags;
    // The si_code each send makes (kernel/signal.c): kill and a process
    // pidfd, SI_USER; tkill, tgkill and a thread-directed pidfd (a thread's
    // pidfd, PIDFD_SIGNAL_THREAD, PIDFD_SELF_THREAD), SI_TKILL; the sigqueue
    // family, the caller's own (read below). With flags 0 a pidfd's kind
    // decides, which its number does not show: either code matches.
    f->code = (syscall == SC_TKILL || syscall == SC_TGKILL) ? SI_TKILL : syscall == SC_PTRACE ? SI_KERNEL : SI_USER;
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
}

#if !LIGHT
static __always_inline int send_enter(u16 syscall, s32 pid, s32 tid, int sig,
                                      const void *uinfo, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tidself = (u32)id;
    if (tgid == SELF_TGID)
        return 0;
    struct inflight *f = inflight_begin(tgid, tidself, syscall);
    if (f)
        send_request(f, syscall, pid, tid, sig, uinfo, flags);
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

    // The pids a failed send asked for are only in its event: sent in every mode (failures
    // are rare, and a flood of them loses events, counted, never counts), so that "which
    // pids did it try?" has an answer in plain batch too. Probes and refusals name theirs.
    bool asked_only_here = ret < 0 && key.target_pid == 0 && key.target_tgid == 0;
    struct event *e = asked_only_here ? event_begin_any(EV_SEND_DONE, ts, tgid, tid)
                                      : event_begin(EV_SEND_DONE, ts, tgid, tid);
    if (!e)
        return 0;
    struct send_payload *p = &e->u.send;
    p->flow = key;
    p->sig = c.sig;
    p->code = c.code;
    p->target_pid = asked_target;
    p->target_tgid = asked_tgid;
    p->ret = (s32)ret;
    p->arg_pid = c.arg_pid;
    p->arg_tid = c.arg_tid;
    p->info_pid = c.info_pid;
    p->info_uid = c.info_uid;
    p->info_value = c.info_value;
    p->flags = c.flags;
    p->has_info = c.has_info;
    bpf_get_current_comm(&p->comm, sizeof(p->comm));
    event_submit(e);
    return 0;
}

// PTRACE_ATTACH stops its tracee with a SIGSTOP the kernel raises inside the tracer's call
// (send_sig_info(SIGSTOP, SEND_SIG_PRIV, task)): the tracer's, to that thread. Only that
// request is kept; every other ptrace call (a debugger makes many) returns at once.
TRACEPOINT_PROBE(syscalls, sys_enter_ptrace)
{
    if (args->request != 16)   // PTRACE_ATTACH (uapi linux/ptrace.h)
        return 0;
    return send_enter(SC_PTRACE, (s32)args->pid, (s32)args->pid, SIGSTOP, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_kill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_tkill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_tgkill) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_rt_sigqueueinfo) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_rt_tgsigqueueinfo) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pidfd_send_signal) { return send_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_ptrace) { return send_exit(args->ret); }
#endif   // !LIGHT
