#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#endif

bool cs_wifexited(int status) { return WIFEXITED(status); }
int cs_wexitstatus(int status) { return WEXITSTATUS(status); }
bool cs_wifsignaled(int status) { return WIFSIGNALED(status); }
int cs_wtermsig(int status) { return WTERMSIG(status); }

int cs_set_child_subreaper(void) {
#ifdef PR_SET_CHILD_SUBREAPER
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
#else
    return -ENOSYS;
#endif
}

int cs_set_parent_death_signal(int sig) {
#ifdef PR_SET_PDEATHSIG
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0 ? 0 : -errno;
#else
    (void)sig;
    return -ENOSYS;
#endif
}

int cs_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? (int)fd : -errno;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

pid_t cs_spawn(const cs_spawn_options *o) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc;
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) return -rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return -rc;
    }

    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
#ifdef POSIX_SPAWN_SETSID
    if (o->new_session) flags |= POSIX_SPAWN_SETSID;
    else
#endif
    if (o->new_process_group || o->new_session) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, flags);

    const int targets[3] = {0, 1, 2};
    const int sources[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (sources[i] >= 0 && sources[i] != targets[i]) {
            rc = posix_spawn_file_actions_adddup2(&actions, sources[i], targets[i]);
        }
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    if (rc == 0 && o->cwd != NULL) rc = posix_spawn_file_actions_addchdir_np(&actions, o->cwd);
#else
    if (rc == 0 && o->cwd != NULL) rc = ENOSYS;
#endif

    pid_t pid = 0;
    if (rc == 0) rc = posix_spawn(&pid, o->path, &actions, &attr, o->argv, o->envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc == 0 ? pid : -rc;
}

int cs_block_signals_to_fd(const int *signals, int count) {
#ifdef __linux__
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) return -rc;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
#else
    (void)signals; (void)count;
    return -ENOSYS;
#endif
}

int cs_signalfd_read(int fd, pid_t *sender_pid) {
#ifdef __linux__
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != (ssize_t)sizeof info) return -EIO;
    if (sender_pid != NULL) *sender_pid = (pid_t)info.ssi_pid;
    return (int)info.ssi_signo;
#else
    (void)fd; (void)sender_pid;
    return -ENOSYS;
#endif
}

int cs_pipe(int fds[2]) {
#ifdef __linux__
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
#else
    if (pipe(fds) != 0) return -errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#endif
}

static void cs_noop_handler(int sig) { (void)sig; }

int cs_install_noop_handler(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cs_noop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(sig, &sa, NULL) == 0 ? 0 : -errno;
}

ssize_t cs_send_with_fds(int sock, const void *bytes, size_t length, const int *fds, int fd_count) {
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;

    char control[CMSG_SPACE(sizeof(int) * 16)];
    if (fd_count > 16 || fd_count < 0) return -EINVAL;
    if (fd_count > 0) {
        memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)fd_count);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)fd_count);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)fd_count);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? n : -errno;
}

int cs_open_tmpfile(const char *directory, mode_t mode) {
#ifdef O_TMPFILE
    int fd = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    return fd >= 0 ? fd : -errno;
#else
    (void)directory; (void)mode;
    return -EOPNOTSUPP;
#endif
}

int cs_link_tmpfile(int fd, const char *path) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
}

int cs_getrandom(void *buffer, size_t length) {
    unsigned char *p = buffer;
    while (length > 0) {
#ifdef __linux__
        ssize_t n = getrandom(p, length, 0);
#else
        ssize_t n = getentropy(p, length > 256 ? 256 : length) == 0 ? (ssize_t)(length > 256 ? 256 : length) : -1;
#endif
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        length -= (size_t)n;
    }
    return 0;
}
