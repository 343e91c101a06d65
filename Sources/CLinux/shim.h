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
