#define _GNU_SOURCE
#include "csystem_signal_forward.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t forwarding_fd = -1;

typedef struct {
    int32_t signal;
    int32_t sender;
} forwarded_signal;

static void forwarding_handler(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    forwarded_signal record = {.signal = sig, .sender = info != NULL ? (int32_t)info->si_pid : 0};
    // 8 bytes < PIPE_BUF: written whole or not at all. A full pipe drops the record,
    // which is harmless: the reader still has unread records of the same kind pending.
    if (forwarding_fd >= 0) (void)!write(forwarding_fd, &record, sizeof record);
    errno = saved;
}

int cs_signal_forwarding_open(void) {
    if (forwarding_fd >= 0) return -EEXIST;
    int fds[2];
#ifdef __linux__
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
#else
    if (pipe(fds) != 0) return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
#endif
    forwarding_fd = fds[1];
    return fds[0];
}

int cs_install_forwarding_handler(int sig) {
    if (forwarding_fd < 0) return -EBADF;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forwarding_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    return sigaction(sig, &sa, NULL) == 0 ? 0 : -errno;
}

int cs_forwarded_signal_read(int fd, pid_t *sender_pid) {
    forwarded_signal record;
    ssize_t n;
    do {
        n = read(fd, &record, sizeof record);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != (ssize_t)sizeof record) return -EIO;
    if (sender_pid != NULL) *sender_pid = (pid_t)record.sender;
    return record.signal;
}
