// Signal delivery for the daemon's control loop (no library to link).
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>

// Self-pipe: whatever thread a signal lands on, its number is written to a pipe that the
// control loop polls (write(2) is async-signal-safe; Swift cannot write a signal handler).
static int clinux_signal_pipe[2] = {-1, -1};

static void clinux_signal_handler(int signo) {
    unsigned char b = (unsigned char)signo;
    ssize_t r = write(clinux_signal_pipe[1], &b, 1);
    (void)r;
}

// Installs handlers for SIGINT, SIGTERM and SIGHUP, ignores SIGPIPE; returns the pipe's read
// end (non-blocking), or -1.
static inline int clinux_install_signal_pipe(void) {
    if (pipe2(clinux_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = clinux_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, 0);
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGHUP, &sa, 0);
    signal(SIGPIPE, SIG_IGN);
    return clinux_signal_pipe[0];
}

// The next signal number from the pipe; 0 when none is waiting.
static inline uint32_t clinux_read_signal(int fd) {
    unsigned char b;
    return read(fd, &b, 1) == 1 ? b : 0;
}

// Memory locking for the real-time path (sys/mman.h, sys/resource.h).
#include <sys/mman.h>
#include <sys/resource.h>
#include <errno.h>

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

// mlockall(MCL_CURRENT | MCL_FUTURE), by default with MCL_ONFAULT: every page the process has
// touched, or touches later, stays resident, without faulting in whole mappings nobody uses
// (OpenBLAS's 128 MiB packing buffer, thread stacks, ICU data, all of OpenBLAS's per-CPU
// kernels: +240 MB resident otherwise). The daemon touches what its callback uses before the
// callback runs (the warm-up). `populate` != 0: plain MCL_CURRENT | MCL_FUTURE, which faults
// everything in now. Falls back to that on kernels without MCL_ONFAULT. 0, or the errno.
static inline int clinux_lock_all_memory(int populate) {
    if (!populate) {
        if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0) return 0;
        if (errno != EINVAL) return errno;
    }
    return mlockall(MCL_CURRENT | MCL_FUTURE) == 0 ? 0 : errno;
}

// RLIMIT_MEMLOCK's soft limit in bytes; -1 when unlimited.
static inline long long clinux_memlock_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_MEMLOCK, &r) != 0) return 0;
    return r.rlim_cur == RLIM_INFINITY ? -1 : (long long)r.rlim_cur;
}

// Touches `bytes` of the calling thread's stack below this frame, so that its pages are
// mapped before the thread's real-time work (a first-touch fault costs microseconds).
static inline __attribute__((noinline)) void clinux_prefault_stack(unsigned long bytes) {
    volatile unsigned char *buf = (volatile unsigned char *)__builtin_alloca(bytes);
    for (unsigned long i = 0; i < bytes; i += 1024) buf[i] = 0;
    buf[bytes - 1] = 0;
}
