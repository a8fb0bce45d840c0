// Tiny shims for what Glibc's Swift overlay does not expose: macros, variadic
// syscalls and structures with flexible members. Every function returns -errno on
// failure (never touches a global errno the caller must read afterwards), so Swift
// callers get the error code from the return value alone.
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "csystem_files.h"
#include "csystem_host.h"
#include "csystem_signal_forward.h"
#include "csystem_socket.h"

#ifdef __cplusplus
extern "C" {
#endif

// MARK: wait status decoding (macros in <sys/wait.h>)
bool cs_wifexited(int status);
int cs_wexitstatus(int status);
bool cs_wifsignaled(int status);
int cs_wtermsig(int status);

// MARK: process attributes
/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of our descendants are re-parented to us.
int cs_set_child_subreaper(void);
/// prctl(PR_SET_PDEATHSIG, sig) for the calling thread's children-to-be (used after fork only).
int cs_set_parent_death_signal(int sig);
/// pidfd_open(2); returns the fd or -errno.
int cs_pidfd_open(pid_t pid);

// MARK: spawning
/// Options for cs_spawn. fds: stdin/stdout/stderr replacements (-1 = inherit).
typedef struct {
    const char *path;            ///< absolute or relative executable path (no PATH search)
    char *const *argv;           ///< NULL-terminated
    char *const *envp;           ///< NULL-terminated
    const char *cwd;             ///< NULL = inherit
    bool new_process_group;      ///< setpgid(0, 0) in the child
    bool new_session;            ///< setsid() in the child (implies a new group)
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
} cs_spawn_options;

/// posix_spawn with an empty signal mask and every signal reset to its default
/// disposition in the child (we block signals in the parent for signalfd).
/// Returns the pid (> 0) or -errno.
pid_t cs_spawn(const cs_spawn_options *options);

// MARK: signals
/// Blocks `signals` in the calling thread (call before any other thread exists so
/// every thread inherits the mask) and returns a non-blocking, close-on-exec
/// signalfd for them, or -errno.
int cs_block_signals_to_fd(const int *signals, int count);
/// Reads one pending signal from a signalfd. Returns the signal number, 0 when
/// nothing is pending (EAGAIN), or -errno.
int cs_signalfd_read(int fd, pid_t *sender_pid);
/// Installs a handler that does nothing for `sig` (as PID 1 the kernel drops
/// signals that have no handler, even when they are merely blocked for a signalfd).
int cs_install_noop_handler(int sig);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from birth, so a concurrent spawn
/// cannot inherit them. Returns 0 or -errno.
int cs_pipe(int fds[2]);

// MARK: unix sockets with SCM_RIGHTS
/// sendmsg of `length` bytes with `fd_count` descriptors attached. Returns bytes sent or -errno.
ssize_t cs_send_with_fds(int socket, const void *bytes, size_t length, const int *fds, int fd_count);

// MARK: files
/// open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode): an unnamed file that disappears if
/// we crash before linking it. Returns the fd or -errno (EOPNOTSUPP/EISDIR/ENOENT when
/// the filesystem cannot do it: the caller falls back to a named temp file).
int cs_open_tmpfile(const char *directory, mode_t mode);
/// Gives an O_TMPFILE descriptor the name `path` (which must not exist) via
/// /proc/self/fd, which needs no privilege unlike AT_EMPTY_PATH. Returns 0 or -errno.
int cs_link_tmpfile(int fd, const char *path);
/// getrandom(2) until `length` bytes are filled. Returns 0 or -errno.
int cs_getrandom(void *buffer, size_t length);

#ifdef __cplusplus
}
#endif

#endif
