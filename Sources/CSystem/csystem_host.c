#define _GNU_SOURCE
#include "csystem_host.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) return -1;
    return 0;
}

int cs_remove_tree(const char *path) {
    if (nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    return 0;
}

int cs_pidfd_send_signal(int pidfd, int sig) {
#if defined(__linux__) && defined(SYS_pidfd_send_signal)
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) != 0) return -errno;
    return 0;
#else
    (void)pidfd; (void)sig;
    return -ENOSYS;
#endif
}
