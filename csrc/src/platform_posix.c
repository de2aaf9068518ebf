/* SPDX-License-Identifier: MIT */
/* POSIX (Linux first) implementation of platform.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <poll.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/syscall.h>
#endif

int plat_mutex_init(plat_mutex *m) { return -pthread_mutex_init(m, NULL); }
void plat_mutex_destroy(plat_mutex *m) { pthread_mutex_destroy(m); }
void plat_mutex_lock(plat_mutex *m) { pthread_mutex_lock(m); }
void plat_mutex_unlock(plat_mutex *m) { pthread_mutex_unlock(m); }
int plat_cond_init(plat_cond *c) { return -pthread_cond_init(c, NULL); }
void plat_cond_destroy(plat_cond *c) { pthread_cond_destroy(c); }
void plat_cond_wait(plat_cond *c, plat_mutex *m) { pthread_cond_wait(c, m); }
void plat_cond_signal(plat_cond *c) { pthread_cond_signal(c); }

int plat_mkdirs(const char *path, unsigned mode)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 1);
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, path, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, (mode_t)mode) == 0) {
            /* a directory we made gets the mode asked for, whatever the umask */
            if (chmod(tmp, (mode_t)mode) != 0) {
                rc = -errno;
                break;
            }
        } else if (errno != EEXIST) {
            rc = -errno;
            break;
        }
        tmp[i] = saved;
    }
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    free(tmp);
    return rc;
}

static int open_flags(const char *path, int flags, unsigned mode)
{
    int f;
#ifdef O_NOATIME
    /* Without access-time updates a read does not dirty the inode (with
     * relatime every read after a write would).  Only the file's owner may
     * ask for it: anyone else opens it the ordinary way. */
    do {
        f = open(path, flags | O_NOATIME, (mode_t)mode);
    } while (f < 0 && errno == EINTR);
    if (f >= 0 || errno != EPERM)
        return f;
#endif
    do {
        f = open(path, flags, (mode_t)mode);
    } while (f < 0 && errno == EINTR);
    return f;
}

int plat_open_file(const char *path, unsigned mode, int own_only, int *created, plat_fd *fd)
{
    /* Never through a symbolic link (O_NOFOLLOW: another user's link in a
     * shared directory must not make us write their target), and a new file
     * is made by us (O_EXCL) with the mode asked for, whatever the umask. */
    const int base = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
    *created = 0;
    int f = -1;
    for (int tries = 0; f < 0 && tries < 8; tries++) {
        f = open_flags(path, base, 0);
        if (f >= 0 || errno != ENOENT)
            break;
        f = open_flags(path, base | O_CREAT | O_EXCL, mode);
        if (f >= 0) {
            *created = 1;
            if (fchmod(f, (mode_t)mode) != 0) {
                int e = errno;
                close(f);
                unlink(path);
                return -e;
            }
        } else if (errno != EEXIST) {
            break; /* EEXIST: someone made it meanwhile: open theirs */
        }
    }
    if (f < 0)
        return errno == ELOOP ? PLAT_ESYMLINK : -errno;
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return PLAT_ENOTREG;
    }
    if (own_only && st.st_uid != geteuid()) {
        close(f);
        return PLAT_EFOREIGN;
    }
    *fd = f;
    return 0;
}

int plat_file_linked(plat_fd fd, const char *path)
{
    (void)path;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    return st.st_nlink > 0;
}

int plat_open_rw(const char *path, plat_fd *fd)
{
    int f = open_flags(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
    if (f < 0)
        return errno == ELOOP ? PLAT_ESYMLINK : -errno;
    *fd = f;
    return 0;
}

int plat_allocate(plat_fd fd, uint64_t size)
{
#if defined(__linux__) || defined(__FreeBSD__)
    int rc;
    do {
        rc = posix_fallocate(fd, 0, (off_t)size);
    } while (rc == EINTR);
    if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL)
        return plat_set_size(fd, size); /* a file system that cannot: sparse then */
    return -rc;
#else
    /* no posix_fallocate (macOS): sized, and touched by writing its bytes */
    int rc = plat_set_size(fd, size);
    static const uint8_t zero[4096];
    for (uint64_t off = 0; rc == 0 && off < size; off += sizeof zero) {
        size_t n = size - off < sizeof zero ? (size_t)(size - off) : sizeof zero;
        if (pwrite(fd, zero, n, (off_t)off) != (ssize_t)n)
            rc = -errno;
    }
    return rc;
#endif
}

void plat_close(plat_fd fd)
{
    if (fd >= 0)
        close(fd);
}

int plat_file_size(plat_fd fd, uint64_t *size)
{
    /* lseek, not fstat: asking for the times makes the kernel (multigrain
     * timestamps) give the next write a fine-grained time stamp, which
     * dirties the inode on every write.  Nothing reads or writes through
     * these descriptors' offset, so moving it is harmless. */
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0)
        return -errno;
    *size = (uint64_t)end;
    return 0;
}

int plat_set_size(plat_fd fd, uint64_t size)
{
    int rc;
    do {
        rc = ftruncate(fd, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : -errno;
}

int plat_map(plat_fd fd, size_t size, void **addr)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

void plat_unmap(void *addr, size_t size)
{
    if (addr)
        munmap(addr, size);
}

/* ---- copies to and from mappings of files another process may truncate.
 * Touching a mapped page that lies wholly past the end of the file raises
 * SIGBUS.  A copy registers a jump buffer for its thread; the handler jumps
 * back into the copy, which reports the fault.  Every other SIGBUS goes to
 * the handler installed before ours (or kills the process, as it would
 * have). */

static struct sigaction bus_prev;
static _Thread_local sigjmp_buf *volatile bus_jump;
static _Thread_local volatile int bus_chaining;
static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    sigjmp_buf *j = bus_jump;
    if (j) {
        bus_jump = NULL;
        siglongjmp(*j, 1);
    }
    /* Not ours.  Hand it on once; if it comes back to us while we hand it on
     * (a handler installed between two of our installs can have us as its
     * own "previous"), stop the ring: take the default. */
    if (!bus_chaining) {
        bus_chaining = 1;
        if ((bus_prev.sa_flags & SA_SIGINFO) && bus_prev.sa_sigaction) {
            bus_prev.sa_sigaction(sig, si, uc);
            bus_chaining = 0;
            return;
        }
        if (!(bus_prev.sa_flags & SA_SIGINFO) && bus_prev.sa_handler != SIG_DFL &&
            bus_prev.sa_handler != SIG_IGN) {
            bus_prev.sa_handler(sig);
            bus_chaining = 0;
            return;
        }
        bus_chaining = 0;
    }
    /* Nobody else wants it: the faulting access repeats and takes the default. */
    signal(SIGBUS, SIG_DFL);
}

static bool bus_installed; /* once installed: only a default disposition is replaced */

/* Ours is the current handler, or was and another came after it (which
 * then probably hands the signal back to ours, as Python's faulthandler
 * does: installing ours on top of it again would make a ring). */
static bool bus_in_place(const struct sigaction *cur)
{
    if ((cur->sa_flags & SA_SIGINFO) && cur->sa_sigaction == on_sigbus)
        return true;
    bool none = !(cur->sa_flags & SA_SIGINFO) &&
                (cur->sa_handler == SIG_DFL || cur->sa_handler == SIG_IGN);
    return bus_installed && !none;
}

int plat_map_guard(void)
{
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return -errno;
    if (bus_in_place(&cur))
        return 0;
    pthread_mutex_lock(&bus_lock);
    int rc = 0;
    if (sigaction(SIGBUS, NULL, &cur) == 0 && !bus_in_place(&cur)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        /* NODEFER: the jump leaves the handler without sigreturn, and a
         * blocked SIGBUS would kill the thread at its next fault. */
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        bus_prev = cur;
        if (sigaction(SIGBUS, &sa, NULL) != 0)
            rc = -errno;
        else
            bus_installed = true;
    }
    pthread_mutex_unlock(&bus_lock);
    return rc;
}

int plat_map_run(void (*fn)(void *ctx), void *ctx)
{
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0)) {
        /* Left the handler by a jump, not by returning: if whoever called it
         * (a sanitizer's wrapper) blocked SIGBUS meanwhile, unblock it. */
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        return -EFAULT;
    }
    bus_jump = &jump;
    atomic_signal_fence(memory_order_seq_cst);
    fn(ctx);
    atomic_signal_fence(memory_order_seq_cst);
    bus_jump = NULL;
    return 0;
}

typedef struct {
    void *dst;
    const void *src;
    size_t n;
} copy_args;

static void copy_fn(void *ctx)
{
    copy_args *c = ctx;
    memcpy(c->dst, c->src, c->n);
}

int plat_map_copy(void *dst, const void *src, size_t n)
{
    copy_args c = {dst, src, n};
    return plat_map_run(copy_fn, &c);
}

int plat_datasync(plat_fd fd, void *addr, size_t size)
{
    /* a MAP_SHARED mapping is the page cache: syncing the file covers it */
    (void)addr;
    (void)size;
#if defined(__linux__)
    return fdatasync(fd) == 0 ? 0 : -errno;
#else
    return fsync(fd) == 0 ? 0 : -errno;
#endif
}

int plat_try_lock_file(plat_fd fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

void plat_unlock_file(plat_fd fd) { flock(fd, LOCK_UN); }

#if defined(__linux__)
static int wait_word(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = (time_t)(timeout_ms / 1000);
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    /* Shared (not private) futex: the word lives in a MAP_SHARED file mapping
     * that other processes map too. */
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (r == 0)
        return 0;
    if (errno == EAGAIN)
        return 0; /* the word had changed already */
    if (errno == ETIMEDOUT)
        return -ETIMEDOUT;
    if (errno == EINTR)
        return -EINTR;
    return -errno;
}

static void wake_word(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
#else
/* No futex: bounded polling of the same word. */
static int wait_word(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : plat_now_ns() + timeout_ms * 1000000;
    int64_t pause_us = 50;
    while (atomic_load(addr) == expected) {
        if (plat_now_ns() >= deadline)
            return -ETIMEDOUT;
        plat_sleep_us(pause_us);
        if (pause_us < 2000)
            pause_us *= 2;
    }
    return 0;
}

static void wake_word(_Atomic uint32_t *addr) { (void)addr; }
#endif

int plat_event_path(const char *path, char **out)
{
    char cwd[PATH_MAX];
    const char *pre = "";
    if (path[0] != '/') {
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        pre = cwd;
    }
    size_t a = strlen(pre), b = strlen(path);
    char *s = malloc(a + b + 2);
    if (!s)
        return -ENOMEM;
    snprintf(s, a + b + 2, "%s%s%s", pre, a ? "/" : "", path);
    for (char *c = s; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    *out = s;
    return 0;
}

/* Nothing to keep per notify file: the word is the whole mechanism. */
int plat_wakeups_open(const char *notify_path, plat_wakeups **out)
{
    (void)notify_path;
    *out = NULL;
    return 0;
}

void plat_wakeups_close(plat_wakeups *w) { (void)w; }

int plat_wakeups_listen(plat_wakeups *w, int slot)
{
    (void)w;
    (void)slot;
    return 0;
}

void plat_wakeups_wake(plat_wakeups *w, int slot, _Atomic uint32_t *word, int sleeper)
{
    (void)w;
    (void)slot;
    if (sleeper)
        wake_word(word);
}

int plat_wakeups_wait(plat_wakeups *w, int slot, _Atomic uint32_t *word, uint32_t expected,
                      int64_t timeout_ms)
{
    (void)w;
    (void)slot;
    return wait_word(word, expected, timeout_ms);
}

void plat_wakeups_ready(plat_wakeups *w, int live)
{
    (void)w;
    (void)live;
}

/* ---- many slots at once */

struct plat_multiwait {
    _Atomic uint32_t kick; /* counted up by kicks; a private futex word */
    uint32_t seen_kick;
    int poll;
};

int plat_multiwait_open(int poll, plat_multiwait **out)
{
    plat_multiwait *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->poll = poll;
    *out = m;
    return 0;
}

void plat_multiwait_close(plat_multiwait *m) { free(m); }

void plat_multiwait_kick(plat_multiwait *m)
{
    atomic_fetch_add(&m->kick, 1);
    wake_word(&m->kick);
}

static int kicked(plat_multiwait *m)
{
    uint32_t k = atomic_load(&m->kick);
    if (k == m->seen_kick)
        return 0;
    m->seen_kick = k;
    return 1;
}

#if defined(__linux__)
/* futex_waitv(2), Linux 5.16; declared here for older headers */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#define WAITV_MAX 128 /* FUTEX_WAITV_MAX */
#define WAITV_U32 0x02u /* FUTEX2_SIZE_U32 */
struct waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};
static _Atomic int waitv_missing; /* ENOSYS seen: an older kernel */

/* 0 woken or changed, -ETIMEDOUT, -EINTR, -ENOSYS */
static int waitv(plat_multiwait *m, const plat_waitspec *specs, int n, int64_t timeout_ms)
{
    struct waitv v[WAITV_MAX];
    /* every word shared (not FUTEX2_PRIVATE), the kick word too: kicks wake it
     * with the same FUTEX_WAKE as the fallback's FUTEX_WAIT, and a shared wake
     * does not match a private wait */
    v[0] = (struct waitv){m->seen_kick, (uint64_t)(uintptr_t)&m->kick, WAITV_U32, 0};
    for (int i = 0; i < n; i++)
        v[i + 1] = (struct waitv){specs[i].expected, (uint64_t)(uintptr_t)specs[i].word, WAITV_U32, 0};
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) { /* an absolute time on the monotonic clock */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(timeout_ms / 1000);
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        tsp = &ts;
    }
    long r = syscall(SYS_futex_waitv, v, (unsigned)(n + 1), 0u, tsp, CLOCK_MONOTONIC);
    if (r >= 0 || errno == EAGAIN)
        return 0;
    if (errno == ETIMEDOUT)
        return -ETIMEDOUT;
    if (errno == EINTR)
        return -EINTR;
    return -ENOSYS; /* ENOSYS, or EINVAL from a kernel without it */
}
#endif

int plat_multiwait_wait(plat_multiwait *m, const plat_waitspec *specs, int n, int64_t timeout_ms,
                        int *complete)
{
    if (kicked(m))
        return 1;
    for (int i = 0; i < n; i++)
        if (atomic_load(specs[i].word) != specs[i].expected)
            return 0;
#if defined(__linux__)
    if (!m->poll && !atomic_load_explicit(&waitv_missing, memory_order_relaxed)) {
        int k = n < WAITV_MAX - 1 ? n : WAITV_MAX - 1;
        *complete = k == n;
        int rc = waitv(m, specs, k, timeout_ms);
        if (rc != -ENOSYS)
            return kicked(m) ? 1 : rc;
        atomic_store(&waitv_missing, 1);
    }
#endif
    /* only the kick word ends the sleep early */
    *complete = n == 0;
    int rc = wait_word(&m->kick, m->seen_kick, timeout_ms);
    return kicked(m) ? 1 : rc;
}

int64_t plat_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void plat_sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

void plat_yield(void) { sched_yield(); }

/* getpid() is a system call with current glibc: keep it, renewed in a forked child. */
static _Atomic int32_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_after_fork(void) { atomic_store(&cached_pid, (int32_t)getpid()); }

static void pid_init(void)
{
    atomic_store(&cached_pid, (int32_t)getpid());
    pthread_atfork(NULL, NULL, pid_after_fork);
}

int32_t plat_getpid(void)
{
    pthread_once(&pid_once, pid_init);
    return atomic_load_explicit(&cached_pid, memory_order_relaxed);
}

int plat_pid_exists(int32_t pid)
{
    if (pid <= 0)
        return 0;
#if defined(__linux__)
    /* A zombie has exited: it is not alive (the C# peer checks HasExited). */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
        return 0;
    return 1;
#else
    return kill(pid, 0) == 0 || errno == EPERM;
#endif
}

#define TICKS_UNIX_EPOCH INT64_C(621355968000000000) /* .NET ticks at 1970-01-01 */

int64_t plat_process_start_ticks(int32_t pid)
{
#if defined(__linux__)
    /* What .NET computes on Linux: boot time (btime of /proc/stat) plus the
     * start offset (field 22 of /proc/<pid>/stat, in clock ticks). */
    static _Atomic int64_t btime_cache = 0;
    int64_t btime = atomic_load(&btime_cache);
    if (btime == 0) {
        FILE *f = fopen("/proc/stat", "re");
        if (!f)
            return 0;
        char line[256];
        while (fgets(line, sizeof line, f)) {
            long long v;
            if (sscanf(line, "btime %lld", &v) == 1) {
                btime = v;
                break;
            }
        }
        fclose(f);
        if (btime == 0)
            return 0;
        atomic_store(&btime_cache, btime);
    }
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* after ')' come fields 3.. ; starttime is field 22 */
    int field = 2;
    unsigned long long start = 0;
    while (*p && field < 22) {
        while (*p == ' ')
            p++;
        field++;
        if (field == 22) {
            start = strtoull(p, NULL, 10);
            break;
        }
        while (*p && *p != ' ')
            p++;
    }
    if (field != 22)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    int64_t ticks = (int64_t)(start / (unsigned long long)hz) * 10000000 +
                    (int64_t)(start % (unsigned long long)hz) * 10000000 / hz;
    return TICKS_UNIX_EPOCH + btime * 10000000 + ticks;
#else
    (void)pid;
    return 0;
#endif
}

void plat_random(void *buf, size_t n)
{
#if defined(__linux__)
    size_t done = 0;
    while (done < n) {
        ssize_t r = getrandom((char *)buf + done, n - done, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        done += (size_t)r;
    }
    if (done == n)
        return;
#endif
    /* Fallback: mix clock and pid (only for instance ids, not secrets). */
    uint64_t x = (uint64_t)plat_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint8_t *)buf)[i] = (uint8_t)x;
    }
}

struct plat_dirwatch {
    int fd;
};

#if defined(__linux__)
int plat_dirwatch_open(const char *dir, plat_dirwatch **out)
{
    plat_dirwatch *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0 || inotify_add_watch(w->fd, dir, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        int e = errno;
        if (w->fd >= 0)
            close(w->fd);
        free(w);
        return -e;
    }
    *out = w;
    return 0;
}

int plat_dirwatch_wait(plat_dirwatch *w, int64_t timeout_ms)
{
    struct pollfd p = {w->fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms < 0 ? -1 : (timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms));
    if (r < 0)
        return errno == EINTR ? -EINTR : -errno;
    if (r == 0)
        return -ETIMEDOUT;
    char buf[4096];
    while (read(w->fd, buf, sizeof buf) > 0)
        ;
    return 0;
}

void plat_dirwatch_close(plat_dirwatch *w)
{
    if (w) {
        close(w->fd);
        free(w);
    }
}
#else
int plat_dirwatch_open(const char *dir, plat_dirwatch **out)
{
    (void)dir;
    *out = NULL;
    return 0;
}

int plat_dirwatch_wait(plat_dirwatch *w, int64_t timeout_ms)
{
    (void)w;
    if (timeout_ms > 0)
        plat_sleep_us(timeout_ms * 1000);
    return -ETIMEDOUT;
}

void plat_dirwatch_close(plat_dirwatch *w) { (void)w; }
#endif
