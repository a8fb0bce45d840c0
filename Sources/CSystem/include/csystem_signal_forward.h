// Signal forwarding through a self-pipe, for signals that land on a thread which does
// not block them. A signalfd only sees signals that are blocked in the receiving
// thread, and Swift's async `main` on Linux ends in libdispatch's dispatch_main(),
// which parks the main thread in sigsuspend() with an EMPTY mask: every process-directed
// signal then goes to that thread's handler instead of the signalfd.
#ifndef CSYSTEM_SIGNAL_FORWARD_H
#define CSYSTEM_SIGNAL_FORWARD_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Creates the process's forwarding pipe (non-blocking, close-on-exec) once and returns
/// its read end, or -errno. Later calls return -EEXIST.
int cs_signal_forwarding_open(void);
/// Installs for `sig` a handler (SA_RESTART | SA_SIGINFO) that writes the signal number
/// and sender pid to the forwarding pipe. Returns 0 or -errno (-EBADF before open).
int cs_install_forwarding_handler(int sig);
/// Reads one forwarded signal: its number, 0 when none is pending, or -errno.
int cs_forwarded_signal_read(int fd, pid_t *sender_pid);

#ifdef __cplusplus
}
#endif

#endif
