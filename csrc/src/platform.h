/* SPDX-License-Identifier: MIT */
/* The only operating-system seam: everything OS-specific goes through here. */
#ifndef TIGA_PLATFORM_H
#define TIGA_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>

typedef pthread_mutex_t plat_mutex;

int plat_mutex_init(plat_mutex *m);
void plat_mutex_destroy(plat_mutex *m);
void plat_mutex_lock(plat_mutex *m);
void plat_mutex_unlock(plat_mutex *m);

typedef pthread_cond_t plat_cond;

int plat_cond_init(plat_cond *c);
void plat_cond_destroy(plat_cond *c);
void plat_cond_wait(plat_cond *c, plat_mutex *m);
void plat_cond_signal(plat_cond *c);

/* Files.  Every int result is 0 or -errno (or one of the PLAT_E* below). */
#define PLAT_ESYMLINK (-100001) /* the path is a symbolic link */
#define PLAT_ENOTREG (-100002)  /* not a regular file */
#define PLAT_EFOREIGN (-100003) /* owned by another user */
/* Create the directory and its missing parents; those made get `mode`. */
int plat_mkdirs(const char *path, unsigned mode);
/* Open a channel file read-write, never through a symbolic link; create it
 * (exclusively, with `mode` whatever the umask) when missing.  *created says
 * which.  own_only: refuse a file another user owns. */
int plat_open_file(const char *path, unsigned mode, int own_only, int *created, int *fd);
/* 1 if the open file still has a name (a link count above 0), 0 if it was
 * unlinked, or -errno. */
int plat_file_linked(int fd);
/* Open an existing file read-write (never through a symbolic link). */
int plat_open_rw(const char *path, int *fd);
/* Give the file `size` bytes with their blocks allocated (posix_fallocate;
 * sparse where the file system cannot): a full disk fails here, not as a
 * SIGBUS at the first write through a mapping.  -ENOSPC when full. */
int plat_allocate(int fd, uint64_t size);
void plat_close(int fd);
int plat_file_size(int fd, uint64_t *size);
int plat_set_size(int fd, uint64_t size);
int plat_map(int fd, size_t size, void **addr);
void plat_unmap(void *addr, size_t size);
int plat_datasync(int fd);
/* Copy n bytes where src or dst lies in a shared file mapping: 0, or -EFAULT
 * when the file turned out shorter than the mapping (another process
 * truncated it; the access raised SIGBUS, which the copy catches).  A copy
 * that faults may have copied part of the bytes. */
int plat_map_copy(void *dst, const void *src, size_t n);
/* Make sure plat_map_copy's SIGBUS handler is in place (it hands every
 * SIGBUS that is not its own to the handler it found); cheap to repeat. */
int plat_map_guard(void);

/* Whole-file exclusive lock across processes, within timeout_ms.
 * Returns 0, -ETIMEDOUT (as TIGA_ETIMEDOUT by the caller) or -errno. */
int plat_lock_file(int fd, int64_t timeout_ms);
void plat_unlock_file(int fd);

/* Wake-ups on a 32-bit word in a shared mapping. */
/* Wait while *addr == expected, at most timeout_ms (-1 forever).
 * 0 woken/changed, -ETIMEDOUT, -EINTR. */
int plat_wait_word(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ms);
void plat_wake_word(_Atomic uint32_t *addr);

/* Directory watch: a descriptor to poll, or -1 where unsupported. */
int plat_dirwatch_open(const char *dir, int *fd);
/* 0 change seen, -ETIMEDOUT, -EINTR, -errno */
int plat_dirwatch_wait(int fd, int64_t timeout_ms);

/* Time and processes. */
int64_t plat_now_ns(void);            /* CLOCK_MONOTONIC */
void plat_sleep_us(int64_t us);
void plat_yield(void);
static inline void plat_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
int32_t plat_getpid(void);
int64_t plat_process_start_ticks(int32_t pid);   /* .NET UTC ticks, 0 unknown */
int plat_pid_exists(int32_t pid);
void plat_random(void *buf, size_t n);

#endif
