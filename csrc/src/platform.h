/* SPDX-License-Identifier: MIT */
/* The only operating-system seam: everything OS-specific goes through here.
 * Two implementations: platform_posix.c (Linux first) and platform_win32.c.
 * This header is the one place that tells them apart, and only for the few
 * types whose size the callers need (a descriptor, a mutex, a condition). */
#ifndef TIGA_PLATFORM_H
#define TIGA_PLATFORM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_MSC_VER)
#include <intrin.h>
#endif

#if defined(_WIN32)
/* An SRWLOCK and a CONDITION_VARIABLE are one pointer each (checked in
 * platform_win32.c), so <windows.h> stays out of every other source. */
typedef struct { void *opaque; } plat_mutex;
typedef struct { void *opaque; } plat_cond;
/* A HANDLE; PLAT_NO_FD (INVALID_HANDLE_VALUE) when there is none. */
typedef intptr_t plat_fd;
#else
#include <pthread.h>
typedef pthread_mutex_t plat_mutex;
typedef pthread_cond_t plat_cond;
/* A file descriptor; PLAT_NO_FD when there is none. */
typedef int plat_fd;
#endif
#define PLAT_NO_FD ((plat_fd)-1)

/* printf-style checking: mingw's gcc checks its own printf by default and
 * needs to be told that the library's detail formatter is C99's. */
#if defined(__MINGW32__)
#define PLAT_PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#elif defined(__GNUC__)
#define PLAT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PLAT_PRINTF(f, a)
#endif

int plat_mutex_init(plat_mutex *m);
void plat_mutex_destroy(plat_mutex *m);
void plat_mutex_lock(plat_mutex *m);
void plat_mutex_unlock(plat_mutex *m);

int plat_cond_init(plat_cond *c);
void plat_cond_destroy(plat_cond *c);
void plat_cond_wait(plat_cond *c, plat_mutex *m);
void plat_cond_signal(plat_cond *c);

/* Files.  Every int result is 0 or -errno (or one of the PLAT_E* below).
 * Paths are UTF-8. */
#define PLAT_ESYMLINK (-100001) /* the path is a symbolic link (a reparse point on Windows) */
#define PLAT_ENOTREG (-100002)  /* not a regular file */
#define PLAT_EFOREIGN (-100003) /* owned by another user */
/* Create the directory and its missing parents; those made get `mode`. */
int plat_mkdirs(const char *path, unsigned mode);
/* Open a channel file read-write, never through a symbolic link; create it
 * (exclusively, with `mode` whatever the umask) when missing.  *created says
 * which.  own_only: refuse a file another user owns. */
int plat_open_file(const char *path, unsigned mode, int own_only, int *created, plat_fd *fd);
/* 1 if the open file fd still has its name `path` (POSIX: a link count above
 * 0; Windows: not pending deletion, and the path still opens this very
 * file), 0 if it was unlinked (or replaced), or -errno. */
int plat_file_linked(plat_fd fd, const char *path);
/* Open an existing file read-write (never through a symbolic link). */
int plat_open_rw(const char *path, plat_fd *fd);
/* Give the file `size` bytes with their blocks allocated (posix_fallocate;
 * sparse where the file system cannot): a full disk fails here, not as a
 * SIGBUS at the first write through a mapping.  -ENOSPC when full. */
int plat_allocate(plat_fd fd, uint64_t size);
void plat_close(plat_fd fd);
int plat_file_size(plat_fd fd, uint64_t *size);
int plat_set_size(plat_fd fd, uint64_t size);
int plat_map(plat_fd fd, size_t size, void **addr);
void plat_unmap(void *addr, size_t size);
/* Write the file's data to the device: the bytes of [addr, addr + size),
 * a mapping of fd, first (Windows flushes a view apart from its file). */
int plat_datasync(plat_fd fd, void *addr, size_t size);
/* Copy n bytes where src or dst lies in a shared file mapping: 0, or -EFAULT
 * when the file turned out shorter than the mapping (another process
 * truncated it; the access raised SIGBUS, which the copy catches).  A copy
 * that faults may have copied part of the bytes.  (Windows refuses to
 * shorten a file that has a view, so there a copy never faults.) */
int plat_map_copy(void *dst, const void *src, size_t n);
/* Run fn(ctx), which reads or writes a shared file mapping, under the same
 * watch: 0, or -EFAULT when it faulted (fn stopped part way). */
int plat_map_run(void (*fn)(void *ctx), void *ctx);
/* Make sure plat_map_copy's SIGBUS handler is in place (it hands every
 * SIGBUS that is not its own to the handler it found); cheap to repeat. */
int plat_map_guard(void);

/* Try once, without waiting, to take an exclusive lock across processes on
 * the file (flock on POSIX, LockFileEx on one byte far past the end on
 * Windows).  0 taken, -EAGAIN held by someone else (or interrupted), or
 * -errno.  The waiting, with its deadline and back-off, is channel.c's. */
int plat_try_lock_file(plat_fd fd);
void plat_unlock_file(plat_fd fd);

/* The notify file's path as the peers hash it into their event names
 * (PROTOCOL section 5), malloc'd: Windows, the full path (GetFullPathName)
 * in upper case; elsewhere the absolute path with ASCII letters upper-cased. */
int plat_event_path(const char *path, char **out);

/* Wake-ups for the listener slots of one notify file.  Every slot has a
 * 32-bit word (its 'reserved' field) that our writers count signals in.
 * POSIX: a futex on that word (or polling of it); nothing else to hold.
 * Windows: the peers' named events (PROTOCOL section 5), opened lazily per
 * slot and kept until plat_wakeups_close. */
typedef struct plat_wakeups plat_wakeups;
/* For the notify file at notify_path; *out may be NULL where nothing is kept. */
int plat_wakeups_open(const char *notify_path, plat_wakeups **out);
void plat_wakeups_close(plat_wakeups *w);
/* This process now listens on slot i: make what it waits on exist. */
int plat_wakeups_listen(plat_wakeups *w, int slot);
/* Wake the listener of slot i, whose word the caller has just counted up;
 * sleeper: one of our listeners said it may be asleep on the word. */
void plat_wakeups_wake(plat_wakeups *w, int slot, _Atomic uint32_t *word, int sleeper);
/* Sleep on slot i while *word == expected, at most timeout_ms (-1 forever).
 * 0 woken/changed (a hint: the caller re-checks), -ETIMEDOUT, -EINTR. */
int plat_wakeups_wait(plat_wakeups *w, int slot, _Atomic uint32_t *word, uint32_t expected,
                      int64_t timeout_ms);
/* Tell waiters for a listener whether one is live now (Windows: set or reset
 * the manual-reset `_listener_ready` event; nothing elsewhere). */
void plat_wakeups_ready(plat_wakeups *w, int live);

/* Waiting on the slots of many listeners at once: one thread waits for
 * every asyncio wait of a process.  A kick from any thread ends a wait.
 * Linux: futex_waitv (5.16+) on the slots' words and a private kick word;
 * Windows: WaitForMultipleObjects on the slots' events and a kick event.
 * Where the platform cannot wait on all of them (an older kernel, more than
 * it takes at once, or poll was asked for) *complete is set to 0: the caller
 * then keeps its sleeps short, since only the first ones (or only the kick)
 * end a sleep early. */
typedef struct plat_multiwait plat_multiwait;
typedef struct plat_waitspec {
    plat_wakeups *wakeups;
    int slot;
    _Atomic uint32_t *word;
    uint32_t expected; /* sleep while *word == expected */
} plat_waitspec;
/* poll: never use the multi-wait call (tests, and an escape hatch) */
int plat_multiwait_open(int poll, plat_multiwait **out);
void plat_multiwait_close(plat_multiwait *m);
void plat_multiwait_kick(plat_multiwait *m);
/* 1 kicked since the last wait that returned 1, 0 woken or a word changed
 * (a hint: the caller re-checks), -ETIMEDOUT, -EINTR. */
int plat_multiwait_wait(plat_multiwait *m, const plat_waitspec *specs, int n, int64_t timeout_ms,
                        int *complete);

/* Directory watch (inotify, ReadDirectoryChangesW); *out is NULL where
 * there is none (waits then only sleep). */
typedef struct plat_dirwatch plat_dirwatch;
int plat_dirwatch_open(const char *dir, plat_dirwatch **out);
/* 0 change seen, -ETIMEDOUT, -EINTR, -errno */
int plat_dirwatch_wait(plat_dirwatch *w, int64_t timeout_ms);
void plat_dirwatch_close(plat_dirwatch *w);

/* Time and processes. */
int64_t plat_now_ns(void);            /* monotonic */
void plat_sleep_us(int64_t us);
void plat_yield(void);
static inline void plat_cpu_relax(void)
{
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_pause();
#elif defined(__x86_64__) || defined(__i386__)
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
