#define _GNU_SOURCE
#include "csystem_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

ssize_t cs_copy_file_range(int in_fd, int out_fd, size_t length) {
#if defined(__linux__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 27))
    ssize_t n;
    do {
        n = copy_file_range(in_fd, NULL, out_fd, NULL, length, 0);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? n : -errno;
#else
    (void)in_fd; (void)out_fd; (void)length;
    return -ENOSYS;
#endif
}

ptrdiff_t cs_find(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length) {
    const char *found = memmem(haystack, haystack_length, needle, needle_length);
    return found == NULL ? -1 : found - (const char *)haystack;
}

int cs_syncfs(int fd) {
#ifdef __linux__
    return syncfs(fd) == 0 ? 0 : -errno;
#else
    (void)fd;
    sync();
    return 0;
#endif
}

int cs_openat_tmpfile(int dirfd, mode_t mode) {
#ifdef O_TMPFILE
    int fd = openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    return fd >= 0 ? fd : -errno;
#else
    (void)dirfd; (void)mode;
    return -EOPNOTSUPP;
#endif
}

int cs_linkat_tmpfile(int fd, int dirfd, const char *name) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
}

ssize_t cs_getdents64(int fd, void *buffer, size_t length) {
#ifdef SYS_getdents64
    long n;
    do {
        n = syscall(SYS_getdents64, fd, buffer, length);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? (ssize_t)n : -errno;
#else
    (void)fd; (void)buffer; (void)length;
    return -ENOSYS;
#endif
}

int cs_current_umask(void) {
    FILE *status = fopen("/proc/self/status", "re");
    if (status == NULL) return -errno;
    char line[256];
    int mask = -ENOSYS;
    while (fgets(line, sizeof line, status) != NULL) {
        unsigned int value;
        if (sscanf(line, "Umask: %o", &value) == 1) {
            mask = (int)(value & 0777);
            break;
        }
    }
    fclose(status);
    return mask;
}
