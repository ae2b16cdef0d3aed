// LD_PRELOAD shim: the wall clock of this process alone, shifted by the seconds written in the
// file $CLOCKSHIFT_FILE (re-read every 5 ms). The monotonic and boot-time clocks are untouched,
// as in a real step of the system clock (NTP, a VM resumed, date -s).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static long long shift_ns(clock_gettime_fn real)
{
    static long long shift, next_read;
    struct timespec mono;
    real(CLOCK_MONOTONIC, &mono);
    long long now = mono.tv_sec * 1000000000LL + mono.tv_nsec;
    if (now >= next_read) {
        next_read = now + 5000000;
        const char *path = getenv("CLOCKSHIFT_FILE");
        FILE *f = path ? fopen(path, "r") : NULL;
        double s = 0;
        if (f) {
            if (fscanf(f, "%lf", &s) == 1)
                shift = (long long)(s * 1e9);
            fclose(f);
        }
    }
    return shift;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static clock_gettime_fn real;
    if (!real)
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long t = ts->tv_sec * 1000000000LL + ts->tv_nsec + shift_ns(real);
        ts->tv_sec = t / 1000000000LL;
        ts->tv_nsec = t % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts))
        return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
