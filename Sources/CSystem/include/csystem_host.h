// Shims for the host orchestrator: recursive removal (nftw is not in Glibc's Swift
// overlay) and pidfd signalling. Same convention as csystem.h: 0 or -errno.
#ifndef CSYSTEM_HOST_H
#define CSYSTEM_HOST_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// rm -rf `path` without following symlinks (nftw, FTW_DEPTH | FTW_PHYS).
/// A missing path is success. Returns 0 or -errno.
int cs_remove_tree(const char *path);

/// pidfd_send_signal(2): signals exactly the process the pidfd refers to, even if its
/// pid number has been reused since. Returns 0 or -errno (-ENOSYS where unsupported).
int cs_pidfd_send_signal(int pidfd, int sig);

#ifdef __cplusplus
}
#endif

#endif
