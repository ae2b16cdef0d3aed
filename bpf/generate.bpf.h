// Every signal the kernel generates: who sent it (a send syscall in flight on this thread that
// asked for it, else the kernel), counted per flow, followed where it was queued.

// ---- every signal the kernel generates ------------------------------------

// Whether a send syscall asked for this target: a timer or other interrupt can raise a signal
// of the same number and code while the interrupted task is inside its own send. Pids of a
// child pid namespace's sender are its namespace's, not comparable here: the caller decides.
static __always_inline bool asked_for(const struct inflight *f, s32 target, u32 target_tgid)
{
    switch (f->syscall) {
    case SC_KILL:
    case SC_RT_SIGQUEUEINFO:   // a pid (a process, or one of its threads); <= 0: a group, or all
        return f->arg_pid <= 0 || (u32)f->arg_pid == (u32)target || (u32)f->arg_pid == target_tgid;
    case SC_TKILL:
    case SC_TGKILL:
    case SC_RT_TGSIGQUEUEINFO:   // a thread
    case SC_PTRACE:
        return (u32)f->arg_tid == (u32)target;
    default:                      // a pidfd's number names no pid
        return true;
    }
}

#if LIGHT
// x86_64's syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl) and its user code segment
// of a 64-bit task (a 32-bit one's numbers differ: not read). The loader refuses LIGHT elsewhere.
#define NR_KILL 62
#define NR_PTRACE 101
#define NR_RT_SIGQUEUEINFO 129
#define NR_TKILL 200
#define NR_TGKILL 234
#define NR_RT_TGSIGQUEUEINFO 297
#define NR_PIDFD_SEND_SIGNAL 424
#define USER64_CS 0x33
#define PTRACE_ATTACH 16

// The send the current task is inside, if any, as sys_enter would have recorded it: read from
// the registers it entered the kernel with (the top of its kernel stack). A task interrupted in
// user mode has an interrupt's there (orig_ax a negative vector), a kernel thread none.
static __always_inline struct inflight *light_request(struct inflight *f)
{
    // struct pt_regs at offsets from BTF (REGS_*_OFFSET), as every kernel struct here.
    const char *regs = (const char *)bpf_task_pt_regs(bpf_get_current_task_btf());
    if (!regs)
        return 0;
    struct { u64 orig_ax, cs, di, si, dx, r10; } r = {};
    bpf_probe_read_kernel(&r.orig_ax, sizeof(r.orig_ax), regs + REGS_ORIG_AX_OFFSET);
    bpf_probe_read_kernel(&r.cs, sizeof(r.cs), regs + REGS_CS_OFFSET);
    if (r.cs != USER64_CS)
        return 0;
    bpf_probe_read_kernel(&r.di, sizeof(r.di), regs + REGS_DI_OFFSET);
    bpf_probe_read_kernel(&r.si, sizeof(r.si), regs + REGS_SI_OFFSET);
    bpf_probe_read_kernel(&r.dx, sizeof(r.dx), regs + REGS_DX_OFFSET);
    bpf_probe_read_kernel(&r.r10, sizeof(r.r10), regs + REGS_R10_OFFSET);
    u64 id = bpf_get_current_pid_tgid();
    f->tgid = id >> 32;
    f->tid = (u32)id;
    switch (r.orig_ax) {
    case NR_KILL:
        f->syscall = SC_KILL;
        send_request(f, SC_KILL, (s32)r.di, 0, (int)r.si, 0, 0);
        break;
    case NR_TKILL:
        f->syscall = SC_TKILL;
        send_request(f, SC_TKILL, (s32)r.di, (s32)r.di, (int)r.si, 0, 0);
        break;
    case NR_TGKILL:
        f->syscall = SC_TGKILL;
        send_request(f, SC_TGKILL, (s32)r.di, (s32)r.si, (int)r.dx, 0, 0);
        break;
    case NR_RT_SIGQUEUEINFO:
        f->syscall = SC_RT_SIGQUEUEINFO;
        send_request(f, SC_RT_SIGQUEUEINFO, (s32)r.di, 0, (int)r.si, (const void *)r.dx, 0);
        break;
    case NR_RT_TGSIGQUEUEINFO:
        f->syscall = SC_RT_TGSIGQUEUEINFO;
        send_request(f, SC_RT_TGSIGQUEUEINFO, (s32)r.di, (s32)r.si, (int)r.dx, (const void *)r.r10, 0);
        break;
    case NR_PIDFD_SEND_SIGNAL:
        f->syscall = SC_PIDFD_SEND_SIGNAL;
        send_request(f, SC_PIDFD_SEND_SIGNAL, (s32)r.di, 0, (int)r.si, (const void *)r.dx, (u32)r.r10);
        break;
    case NR_PTRACE:
        if (r.di != PTRACE_ATTACH)
            return 0;
        f->syscall = SC_PTRACE;
        send_request(f, SC_PTRACE, (s32)r.si, (s32)r.si, SIGSTOP, 0, 0);
        break;
    default:
        return 0;
    }
    return f;
}
#endif

// Both ways in (raw and classic tracepoint) end here. target_tgid is the
// target's process where the kernel said it (raw: always), else 0.
static __always_inline int on_generate(int sig, int code, s32 target, u32 target_tgid,
                                       const char *target_comm, int group, int result, const char *task)
{
    if (!sig_wanted(sig))
        return 0;

    // `current` is the sender only while one of its signal syscalls is in
    // flight, and only for the signal that syscall asked for: timers raise
    // signals from interrupt context on whatever thread was running.
#if LIGHT
    struct inflight request = {};
    struct inflight *f = light_request(&request);
#else
    struct inflight *f = inflight_find(inflight_key());
#endif
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
    if (by_syscall && f->syscall >= SC_SIGNALFD && f->syscall != SC_PTRACE)
        by_syscall = false;
    // Not the target the syscall asked for (checked only where pids compare: a host sender):
    // raised from an interrupt on whatever was running, the kernel's.
    if (by_syscall && !asked_for(f, target, target_tgid) && !in_child_pid_ns())
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
        } else if (sig == SIGKILL) {
            // A SIGKILL with SI_USER and no send syscall, from a live task: cgroup_kill()'s
            // send_sig(SIGKILL, task, 0), run by the write() of "1" to a cgroup.kill file.
            sender = tgid;
            via = SC_CGROUP_KILL;
        }
    }
#endif
    // A SIGCHLD with a CLD_* code is raised on the child that changed state
    // (exit_notify, do_notify_parent_cldstop run on it): it is the source.
    if (!by_syscall && sig == SIGCHLD && code >= CLD_EXITED && code <= CLD_CONTINUED)
        sender = tgid;

#if !RAW_GENERATE
    if (!target_tgid) {   // the classic tracepoint names only the thread
        if (by_syscall && (f->syscall == SC_TGKILL || f->syscall == SC_RT_TGSIGQUEUEINFO))
            target_tgid = (u32)f->arg_pid;
        else if ((u32)target == tid)
            target_tgid = tgid;   // a fault, or a send to oneself
        else {
            u32 thread = (u32)target;
            u32 *owner = thread_owner.lookup(&thread);   // a thread made since attach
            if (owner)
                target_tgid = *owner;
        }
    }
#endif

    // Generated, counted or not: its syscall's exit must not take it for a sig-0 probe.
    if (by_syscall)
        f->generated++;
    u32 self = SELF_TGID;
    if (self && (sender == self || target_tgid == self))
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
                        group != 0, sig, ts, task);
        else
            stat_add(STAT_PENDING_FULL);   // counted in the overflow array: no flow to follow
    }
#endif

    struct event *e = event_begin(EV_GENERATE, ts, tgid, tid);
    if (!e)
        return 0;
    struct send_payload *p = &e->u.send;
    p->flow = key;
    p->sig = sig;
    p->code = code;
    p->target_pid = target;
    p->target_tgid = target_tgid;
    p->group = group;
    if (by_syscall) {
        p->arg_pid = f->arg_pid;
        p->arg_tid = f->arg_tid;
        p->info_pid = f->info_pid;
        p->info_uid = f->info_uid;
        p->info_value = f->info_value;
        p->flags = f->flags;
        p->has_info = f->has_info;
    }
    // No comms: both are on the flow row, and reading them was a fifth of
    // this program's cost.
    event_submit(e);
    return 0;
}

#if RAW_GENERATE
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
                       (int)ctx->args[3], (int)ctx->args[4], task);
}
#else
TRACEPOINT_PROBE(signal, signal_generate)
{
    return on_generate(args->sig, args->code, args->pid, 0, args->comm, args->group, args->result, 0);
}
#endif
