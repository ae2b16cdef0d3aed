// Tight loads for bench/run.py. Prints one line: "<mode> <ops> <ns_per_op> <pid>".
//   handled N: tgkill to self with a handler (send, deliver, rt_sigreturn)
//   ignored N: kill to self, SIG_IGN (send only)
//   getppid N: an unrelated syscall: the tax syscall tracepoints put on everyone
//   paced N RATE: kill to self, SIG_IGN, at RATE per second (a sustained storm)
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_signal(int sig) { (void)sig; handled++; }

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && !strcmp(argv[1], "paced"))) {
        fprintf(stderr, "usage: loads handled|ignored|getppid N | loads paced N RATE\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    pid_t pid = getpid();
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (!strcmp(mode, "handled"))
        signal(SIGUSR1, on_signal);
    else if (!strcmp(mode, "ignored") || !strcmp(mode, "paced"))
        signal(SIGUSR2, SIG_IGN);
    double gap = argc == 4 ? 1e9 / atof(argv[3]) : 0;
    double start = now_ns();
    for (long i = 0; i < n; i++) {
        if (mode[0] == 'h')
            syscall(SYS_tgkill, pid, tid, SIGUSR1);
        else if (mode[0] == 'i')
            kill(pid, SIGUSR2);
        else if (mode[0] == 'p') {
            while (now_ns() < start + i * gap)
                ;  // spin: a sleep's wake-up is coarser than the gap
            kill(pid, SIGUSR2);
        }
        else
            syscall(SYS_getppid);
    }
    double elapsed = now_ns() - start;
    if (mode[0] == 'h' && handled != n) {
        fprintf(stderr, "handled %d of %ld\n", (int)handled, n);
        return 1;
    }
    printf("%s %ld %.1f %d\n", mode, n, elapsed / n, pid);
    return 0;
}
