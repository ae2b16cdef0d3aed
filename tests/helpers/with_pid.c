// with_pid PID CMD ARGS...: run CMD as a child that has exactly that pid, as pid reuse gives one
// (clone3 with set_tid; root only), then wait for it and exit as it did. The child dies with
// this helper (PR_SET_PDEATHSIG), so killing the helper ends both. Nothing machine-wide is
// touched (no ns_last_pid), so two test runs cannot collide.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: with_pid PID CMD [ARGS...]\n");
        return 2;
    }
    pid_t want = (pid_t)atoi(argv[1]);
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.exit_signal = SIGCHLD;
    args.set_tid = (uint64_t)(uintptr_t)&want;
    args.set_tid_size = 1;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) {
        fprintf(stderr, "with_pid: clone3 with pid %d: %s\n", want, strerror(errno));
        return 111;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp(argv[2], argv + 2);
        _exit(112);
    }
    int status = 0;
    if (waitpid((pid_t)pid, &status, 0) < 0)
        return 113;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
