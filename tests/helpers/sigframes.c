/* Signal frames across fork and exec, for the rt_sigreturn (SROP) tests.
 *
 *   sigframes fork   a handler forks; the child returns from the handler it
 *                    inherited (one legitimate rt_sigreturn without a delivery
 *                    of its own), then both exit 0
 *   sigframes exec   a handler execs "sigframes srop": the frame it was in is
 *                    gone with the old image
 *   sigframes srop   calls rt_sigreturn with no handler frame: dies of SIGSEGV
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *self;

static void forking_handler(int sig)
{
    (void)sig;
    pid_t child = fork();
    if (child == 0)
        return;              /* the child returns from the inherited frame */
    waitpid(child, NULL, 0);
}

static void execing_handler(int sig)
{
    (void)sig;
    char *argv[] = {(char *)self, "srop", NULL};
    execv(self, argv);
    _exit(127);
}

int main(int argc, char **argv)
{
    self = argv[0];
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "srop") == 0) {
        syscall(SYS_rt_sigreturn);   /* restores whatever the stack holds: SIGSEGV */
        return 3;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = strcmp(mode, "fork") == 0 ? forking_handler : execing_handler;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    return 0;
}
