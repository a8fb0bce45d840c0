#define _GNU_SOURCE
#include "csystem_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

int cs_accept_nonblocking(int listener) {
#ifdef __linux__
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return fd >= 0 ? fd : -errno;
#else
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) return -errno;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
#endif
}

int cs_accept_cloexec(int listener) {
#ifdef __linux__
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    return fd >= 0 ? fd : -errno;
#else
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) return -errno;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#endif
}

int cs_pipe_nonblocking(int fds[2]) {
#ifdef __linux__
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0 ? 0 : -errno;
#else
    if (pipe(fds) != 0) return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    return 0;
#endif
}
