// Signals and memory locking for the daemon and the tools (no library to link).
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
#include <errno.h>

// The project's one signal mechanism; Swift reaches it only through PianoIO's `Signals`
// (Signals.swift is the only Swift file that calls these functions: the state below is static
// in a header, so each object file that used it would have its own copy). One C handler serves
// every signal a program routes to it (Swift cannot write a signal handler: it may allocate or
// lock), and does only async-signal-safe things:
//  - a received signal: its number is stored (clinux_signal_received) and written to a
//    non-blocking self-pipe (clinux_signal_read_fd), whichever thread it lands on;
//  - a fatal signal: every registered temporary file is unlinked, then the signal's default
//    action is restored and the signal raised again, so the process dies of it as before.
#define CLINUX_SIGNALS 65
// render-batch writes one file per job, and a job per core on large machines (1 MiB of paths).
#define CLINUX_TEMP_SLOTS 256
#define CLINUX_TEMP_PATH_BYTES 4096

// The state, behind accessors (a 4096-byte C array would be imported into Swift as a tuple).
static inline int *clinux_signal_pipe(void) { static int fds[2] = {-1, -1}; return fds; }
static inline volatile sig_atomic_t *clinux_signal_last(void) { static volatile sig_atomic_t last = 0; return &last; }
static inline volatile sig_atomic_t *clinux_signal_fatal(void) { static volatile sig_atomic_t fatal[CLINUX_SIGNALS]; return fatal; }
static inline char *clinux_temp_paths(void) { static char paths[CLINUX_TEMP_SLOTS * CLINUX_TEMP_PATH_BYTES]; return paths; }

static void clinux_signal_handler(int signo) {
    int saved = errno;
    if (signo > 0 && signo < CLINUX_SIGNALS && clinux_signal_fatal()[signo]) {
        char *paths = clinux_temp_paths();
        for (int s = 0; s < CLINUX_TEMP_SLOTS; s++) {
            char *p = paths + s * CLINUX_TEMP_PATH_BYTES;
            if (__atomic_load_n(p, __ATOMIC_ACQUIRE) != 0) unlink(p);
        }
        signal(signo, SIG_DFL);
        raise(signo);   // blocked while this handler runs: delivered, fatally, when it returns
    } else {
        *clinux_signal_last() = signo;
        int fd = clinux_signal_pipe()[1];
        if (fd >= 0) {
            unsigned char b = (unsigned char)signo;
            ssize_t r = write(fd, &b, 1);
            (void)r;
        }
    }
    errno = saved;
}

// Routes `signo` to the handler (SA_RESTART): `fatal` != 0 removes the registered temporary
// files and dies of it; otherwise it is received (the pipe is made on first use). 0, or -1.
static inline int clinux_signal_route(int signo, int fatal) {
    if (signo <= 0 || signo >= CLINUX_SIGNALS) return -1;
    int *fds = clinux_signal_pipe();
    if (!fatal && fds[0] < 0 && pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    clinux_signal_fatal()[signo] = fatal ? 1 : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = clinux_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, 0) == 0 ? 0 : -1;
}

// SIG_IGN for `signo` (the daemon: SIGPIPE, a peer that hung up is an error return).
static inline void clinux_signal_ignore(int signo) { signal(signo, SIG_IGN); }

// The pipe's read end (non-blocking; readable when a received signal is waiting), or -1.
static inline int clinux_signal_read_fd(void) { return clinux_signal_pipe()[0]; }

// The next received signal number from the pipe; 0 when none is waiting.
static inline uint32_t clinux_signal_next(void) {
    unsigned char b;
    int fd = clinux_signal_pipe()[0];
    return fd >= 0 && read(fd, &b, 1) == 1 ? b : 0;
}

// The last received signal number; 0 when none has come.
static inline int clinux_signal_received(void) { return *clinux_signal_last(); }

// Registers a temporary file for fatal signals to unlink: 0, or -1 (empty, too long, or all
// slots taken). Callers serialise add and remove (a lock); the handler reads without one: the
// path's tail is written before its first byte, which publishes it.
static inline int clinux_temp_path_add(const char *path) {
    size_t n = strlen(path);
    if (n == 0 || n >= CLINUX_TEMP_PATH_BYTES) return -1;
    char *paths = clinux_temp_paths();
    for (int s = 0; s < CLINUX_TEMP_SLOTS; s++) {
        char *p = paths + s * CLINUX_TEMP_PATH_BYTES;
        if (__atomic_load_n(p, __ATOMIC_RELAXED) != 0) continue;
        memcpy(p + 1, path + 1, n);   // the rest and the NUL
        __atomic_store_n(p, path[0], __ATOMIC_RELEASE);
        return 0;
    }
    return -1;
}

// Unregisters a temporary file (finished, cancelled, or renamed into place).
static inline void clinux_temp_path_remove(const char *path) {
    char *paths = clinux_temp_paths();
    for (int s = 0; s < CLINUX_TEMP_SLOTS; s++) {
        char *p = paths + s * CLINUX_TEMP_PATH_BYTES;
        if (__atomic_load_n(p, __ATOMIC_RELAXED) != 0 && strcmp(p, path) == 0) __atomic_store_n(p, 0, __ATOMIC_RELEASE);
    }
}

// Memory locking for the real-time path (sys/mman.h, sys/resource.h).
#include <sys/mman.h>
#include <sys/resource.h>

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
