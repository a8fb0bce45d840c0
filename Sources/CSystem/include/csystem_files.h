// File-system shims for the tree copier and rewriter (StackRewrite): GNU extensions
// that Glibc's Swift overlay does not export. Same convention as csystem.h: every
// function returns -errno on failure.
#ifndef CSYSTEM_FILES_H
#define CSYSTEM_FILES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// copy_file_range(2) between the current offsets of two descriptors (an in-kernel
/// copy: no bytes through user space). Returns bytes copied (0 at end of input) or
/// -errno; -ENOSYS where the call does not exist.
ssize_t cs_copy_file_range(int in_fd, int out_fd, size_t length);

/// memmem(3): the offset of the first `needle` in `haystack`, or -1.
ptrdiff_t cs_find(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length);

/// syncfs(2) on the file system holding `fd`. Returns 0 or -errno.
int cs_syncfs(int fd);

/// openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode): an unnamed file in that
/// directory. Returns the fd or -errno (-EOPNOTSUPP where the file system cannot).
int cs_openat_tmpfile(int dirfd, mode_t mode);

/// Gives an O_TMPFILE descriptor the name `name` inside `dirfd` (which must not exist),
/// through /proc/self/fd (no CAP_DAC_READ_SEARCH needed). Returns 0 or -errno.
int cs_linkat_tmpfile(int fd, int dirfd, const char *name);

/// getdents64(2): fills `buffer` with `struct linux_dirent64` records (d_ino u64,
/// d_off s64, d_reclen u16, d_type u8, NUL-terminated d_name) from the directory's
/// current offset. Returns the bytes filled (0 at the end) or -errno.
ssize_t cs_getdents64(int fd, void *buffer, size_t length);

/// The process umask, read from /proc/self/status without changing it (umask(2)
/// cannot be read without being set, which would race with other threads).
/// Returns the mask (0…0777) or -errno (-ENOSYS where the kernel does not report it).
int cs_current_umask(void);

#ifdef __cplusplus
}
#endif

#endif
