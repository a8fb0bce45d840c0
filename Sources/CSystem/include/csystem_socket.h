// Socket calls Glibc's Swift overlay does not expose (GNU extensions). Same convention
// as csystem.h: results >= 0 on success, -errno on failure.
#ifndef CSYSTEM_SOCKET_H
#define CSYSTEM_SOCKET_H

#ifdef __cplusplus
extern "C" {
#endif

/// accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): the new socket is close-on-exec
/// from birth, so a concurrent spawn cannot inherit it. Returns the fd or -errno.
int cs_accept_nonblocking(int listener);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): a blocking, close-on-exec connection. Returns
/// the fd or -errno (EINTR included: callers retry).
int cs_accept_cloexec(int listener);

/// pipe2(fds, O_CLOEXEC | O_NONBLOCK). Returns 0 or -errno.
int cs_pipe_nonblocking(int fds[2]);

#ifdef __cplusplus
}
#endif

#endif
