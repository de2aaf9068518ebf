/* SPDX-License-Identifier: MIT */
/* Win32 implementation of platform.h (mingw-w64 and MSVC; Windows 8 and
 * later).  What differs from POSIX, and why, is in docs/PROTOCOL-NOTES.md
 * ("Windows"): named events instead of futex words, LockFileEx instead of
 * flock, no SIGBUS guard (a file with a view cannot be shortened). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0602
#endif
#include <windows.h>
#include <aclapi.h>
#include <bcrypt.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "tiga.h"

_Static_assert(sizeof(SRWLOCK) == sizeof(void *), "plat_mutex holds an SRWLOCK");
_Static_assert(sizeof(CONDITION_VARIABLE) == sizeof(void *), "plat_cond holds a CONDITION_VARIABLE");
_Static_assert(sizeof(HANDLE) == sizeof(plat_fd), "plat_fd holds a HANDLE");

#define H(fd) ((HANDLE)(fd))

/* ---- errors */

static int err_of(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH:
        return -ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_PRIVILEGE_NOT_HELD:
        return -EACCES;
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
    case ERROR_USER_MAPPED_FILE:
        return -EBUSY;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return -EEXIST;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return -ENOSPC;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_COMMITMENT_LIMIT:
        return -ENOMEM;
    case ERROR_FILENAME_EXCED_RANGE:
        return -ENAMETOOLONG;
    case ERROR_DIRECTORY:
        return -ENOTDIR;
    case ERROR_INVALID_NAME:
    case ERROR_INVALID_PARAMETER:
    case ERROR_BAD_PATHNAME:
        return -EINVAL;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED:
        return -ENOSYS;
    default:
        return -EIO;
    }
}

static int last_err(void) { return err_of(GetLastError()); }

/* UTF-8 to UTF-16, malloc'd; NULL when out of memory or not UTF-8 (errno-style
 * code in *rc). */
static wchar_t *widen(const char *s, int *rc)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        *rc = -EINVAL;
        return NULL;
    }
    wchar_t *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        *rc = -ENOMEM;
        return NULL;
    }
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
    *rc = 0;
    return w;
}

/* A file path as UTF-16.  A path of MAX_PATH characters or more takes the
 * \\?\ form (made absolute first; UNC paths as \\?\UNC\), which the
 * wide file functions accept up to 32767 characters without the
 * long-path opt-in of Windows 10. */
static wchar_t *widen_path(const char *s, int *rc)
{
    wchar_t *w = widen(s, rc);
    if (!w || wcslen(w) < MAX_PATH || wcsncmp(w, L"\\\\?\\", 4) == 0)
        return w;
    DWORD n = GetFullPathNameW(w, 0, NULL, NULL);
    wchar_t *full = n ? malloc(((size_t)n + 8) * sizeof *full) : NULL;
    if (!full) {
        *rc = n ? -ENOMEM : last_err();
        free(w);
        return NULL;
    }
    bool unc = false;
    DWORD got = GetFullPathNameW(w, n, full + 8, NULL);
    free(w);
    if (!got || got >= n) {
        *rc = last_err();
        free(full);
        return NULL;
    }
    wchar_t *body = full + 8;
    if (body[0] == L'\\' && body[1] == L'\\') {
        unc = true;
        body += 2;
    }
    const wchar_t *pre = unc ? L"\\\\?\\UNC\\" : L"\\\\?\\";
    size_t pl = wcslen(pre);
    memmove(full + pl, body, (wcslen(body) + 1) * sizeof *full);
    memcpy(full, pre, pl * sizeof *full);
    return full;
}

/* ---- threads */

int plat_mutex_init(plat_mutex *m)
{
    InitializeSRWLock((PSRWLOCK)m);
    return 0;
}
void plat_mutex_destroy(plat_mutex *m) { (void)m; }
void plat_mutex_lock(plat_mutex *m) { AcquireSRWLockExclusive((PSRWLOCK)m); }
void plat_mutex_unlock(plat_mutex *m) { ReleaseSRWLockExclusive((PSRWLOCK)m); }
int plat_cond_init(plat_cond *c)
{
    InitializeConditionVariable((PCONDITION_VARIABLE)c);
    return 0;
}
void plat_cond_destroy(plat_cond *c) { (void)c; }
void plat_cond_wait(plat_cond *c, plat_mutex *m)
{
    SleepConditionVariableSRW((PCONDITION_VARIABLE)c, (PSRWLOCK)m, INFINITE, 0);
}
void plat_cond_signal(plat_cond *c) { WakeConditionVariable((PCONDITION_VARIABLE)c); }

/* ---- files */

static bool is_sep(wchar_t c) { return c == L'/' || c == L'\\'; }

int plat_mkdirs(const char *path, unsigned mode)
{
    /* Windows has no mode bits: a directory gets the ACL it inherits from
     * its parent (a user's %TEMP% and %LOCALAPPDATA% are the user's own). */
    (void)mode;
    int rc;
    wchar_t *w = widen(path, &rc);
    if (!w)
        return rc;
    size_t n = wcslen(w);
    /* skip what cannot be created: a drive ("C:\"), a UNC share
     * ("\\server\share\"), the \\?\ prefix */
    size_t i = 0;
    if (n >= 2 && w[1] == L':')
        i = 2;
    else if (n >= 2 && is_sep(w[0]) && is_sep(w[1])) {
        int seps = 0;
        for (i = 2; i < n && seps < 2; i++)
            if (is_sep(w[i]))
                seps++;
    }
    while (i < n && is_sep(w[i]))
        i++;
    for (; i <= n; i++) {
        if (i < n && !is_sep(w[i]))
            continue;
        wchar_t saved = w[i];
        w[i] = L'\0';
        if (!CreateDirectoryW(w, NULL)) {
            DWORD e = GetLastError();
            DWORD a = GetFileAttributesW(w);
            if (e != ERROR_ALREADY_EXISTS && !(a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY))) {
                rc = err_of(e);
                w[i] = saved;
                break;
            }
        }
        w[i] = saved;
        while (i + 1 < n && is_sep(w[i + 1]))
            i++;
    }
    if (rc == 0) {
        DWORD a = GetFileAttributesW(w);
        if (a == INVALID_FILE_ATTRIBUTES)
            rc = last_err();
        else if (!(a & FILE_ATTRIBUTE_DIRECTORY))
            rc = -ENOTDIR;
    }
    free(w);
    return rc;
}

/* The owner of the file is the user this process runs as (or the default
 * owner its token gives new objects: an elevated administrator's files
 * belong to the Administrators group). */
static int owned_by_us(HANDLE h)
{
    PSID owner = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    if (GetSecurityInfo(h, SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION, &owner, NULL, NULL, NULL,
                        &sd) != ERROR_SUCCESS)
        return 1; /* a file system without owners (FAT): nobody else's either */
    HANDLE tok;
    int yes = 0;
    if (OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) {
        union {
            TOKEN_USER user;
            TOKEN_OWNER own;
            char space[256];
        } u;
        DWORD len;
        if (GetTokenInformation(tok, TokenUser, &u, sizeof u, &len) && EqualSid(owner, u.user.User.Sid))
            yes = 1;
        else if (GetTokenInformation(tok, TokenOwner, &u, sizeof u, &len) &&
                 EqualSid(owner, u.own.Owner))
            yes = 1;
        CloseHandle(tok);
    }
    LocalFree(sd);
    return yes;
}

/* A regular file, not reached through a link (a reparse point), maybe ours. */
static int check_opened(HANDLE h, int own_only)
{
    BY_HANDLE_FILE_INFORMATION info;
    if (!GetFileInformationByHandle(h, &info))
        return last_err();
    if (info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT)
        return PLAT_ESYMLINK;
    if ((info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) || GetFileType(h) != FILE_TYPE_DISK)
        return PLAT_ENOTREG;
    if (own_only && !owned_by_us(h))
        return PLAT_EFOREIGN;
    return 0;
}

/* Shared as the peers share (read, write and delete: a scavenger may unlink
 * a channel whose files others still have open); the reparse-point flag
 * opens a link itself, which check_opened then refuses. */
static HANDLE open_w(const wchar_t *w, DWORD disposition)
{
    return CreateFileW(w, GENERIC_READ | GENERIC_WRITE,
                       FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, disposition,
                       FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
}

int plat_open_file(const char *path, unsigned mode, int own_only, int *created, plat_fd *fd)
{
    (void)mode; /* no mode bits: the directory's inherited ACL decides */
    int rc;
    wchar_t *w = widen_path(path, &rc);
    if (!w)
        return rc;
    *created = 0;
    HANDLE h = INVALID_HANDLE_VALUE;
    for (int tries = 0; h == INVALID_HANDLE_VALUE && tries < 8; tries++) {
        h = open_w(w, OPEN_EXISTING);
        if (h != INVALID_HANDLE_VALUE || GetLastError() != ERROR_FILE_NOT_FOUND)
            break;
        h = open_w(w, CREATE_NEW);
        if (h != INVALID_HANDLE_VALUE)
            *created = 1;
        else if (GetLastError() != ERROR_FILE_EXISTS)
            break; /* exists: someone made it meanwhile, open theirs */
    }
    rc = h == INVALID_HANDLE_VALUE ? last_err() : 0;
    free(w);
    if (rc)
        return rc;
    if ((rc = check_opened(h, own_only))) {
        CloseHandle(h);
        return rc;
    }
    *fd = (plat_fd)h;
    return 0;
}

int plat_file_linked(plat_fd fd, const char *path)
{
    FILE_STANDARD_INFO info;
    if (!GetFileInformationByHandleEx(H(fd), FileStandardInfo, &info, sizeof info))
        return last_err();
    if (info.DeletePending || info.NumberOfLinks == 0)
        return 0;
    /* Not every implementation reports a pending deletion (wine does not):
     * the name must still lead to this file.  A file pending deletion does
     * not open (access denied), a new one is another file. */
    BY_HANDLE_FILE_INFORMATION mine, theirs;
    if (!GetFileInformationByHandle(H(fd), &mine))
        return last_err();
    int rc;
    wchar_t *w = widen_path(path, &rc);
    if (!w)
        return rc;
    HANDLE h = CreateFileW(w, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    DWORD e = GetLastError();
    free(w);
    if (h == INVALID_HANDLE_VALUE)
        return (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND || e == ERROR_ACCESS_DENIED)
                   ? 0
                   : err_of(e);
    int same = GetFileInformationByHandle(h, &theirs) &&
               theirs.dwVolumeSerialNumber == mine.dwVolumeSerialNumber &&
               theirs.nFileIndexHigh == mine.nFileIndexHigh &&
               theirs.nFileIndexLow == mine.nFileIndexLow;
    CloseHandle(h);
    return same;
}

int plat_open_rw(const char *path, plat_fd *fd)
{
    int rc;
    wchar_t *w = widen_path(path, &rc);
    if (!w)
        return rc;
    HANDLE h = open_w(w, OPEN_EXISTING);
    rc = h == INVALID_HANDLE_VALUE ? last_err() : 0;
    free(w);
    if (rc)
        return rc;
    if ((rc = check_opened(h, 0))) {
        CloseHandle(h);
        return rc;
    }
    *fd = (plat_fd)h;
    return 0;
}

int plat_set_size(plat_fd fd, uint64_t size)
{
    FILE_END_OF_FILE_INFO eof;
    eof.EndOfFile.QuadPart = (LONGLONG)size;
    return SetFileInformationByHandle(H(fd), FileEndOfFileInfo, &eof, sizeof eof) ? 0 : last_err();
}

int plat_allocate(plat_fd fd, uint64_t size)
{
    /* Reserve the clusters too, so a full volume fails here. */
    FILE_ALLOCATION_INFO a;
    a.AllocationSize.QuadPart = (LONGLONG)size;
    if (!SetFileInformationByHandle(H(fd), FileAllocationInfo, &a, sizeof a)) {
        DWORD e = GetLastError();
        if (e == ERROR_DISK_FULL || e == ERROR_HANDLE_DISK_FULL)
            return -ENOSPC;
        /* a file system that cannot: just sized then */
    }
    uint64_t have = 0;
    int rc = plat_file_size(fd, &have);
    if (rc == 0 && have < size)
        rc = plat_set_size(fd, size);
    return rc;
}

void plat_close(plat_fd fd)
{
    if (fd != PLAT_NO_FD && fd != 0)
        CloseHandle(H(fd));
}

int plat_file_size(plat_fd fd, uint64_t *size)
{
    LARGE_INTEGER n;
    if (!GetFileSizeEx(H(fd), &n))
        return last_err();
    *size = (uint64_t)n.QuadPart;
    return 0;
}

int plat_map(plat_fd fd, size_t size, void **addr)
{
    /* A section of the file's own size (never one that would grow it), and a
     * view of its first `size` bytes; the view keeps the section alive. */
    HANDLE m = CreateFileMappingW(H(fd), NULL, PAGE_READWRITE, 0, 0, NULL);
    if (!m)
        return last_err();
    void *p = MapViewOfFile(m, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, size);
    int rc = p ? 0 : last_err();
    CloseHandle(m);
    if (rc)
        return rc;
    *addr = p;
    return 0;
}

void plat_unmap(void *addr, size_t size)
{
    (void)size;
    if (addr)
        UnmapViewOfFile(addr);
}

int plat_datasync(plat_fd fd, void *addr, size_t size)
{
    if (addr && !FlushViewOfFile(addr, size))
        return last_err();
    return FlushFileBuffers(H(fd)) ? 0 : last_err();
}

/* Windows refuses to shorten a file while a view of it exists
 * (ERROR_USER_MAPPED_FILE), so no access through our views can fault on a
 * vanished page: a plain copy. */
int plat_map_copy(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
    return 0;
}

int plat_map_run(void (*fn)(void *ctx), void *ctx)
{
    fn(ctx);
    return 0;
}

int plat_map_guard(void) { return 0; }

/* The append lock: one byte at 2^62, far past the end of any state file.
 * Byte-range locks on Windows are mandatory for ReadFile/WriteFile on the
 * range they cover; a range no one reads keeps them advisory.  The peers
 * take no lock on Windows (PROTOCOL section 3). */
#define LOCK_OFFSET_HIGH 0x40000000u

int plat_try_lock_file(plat_fd fd)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.OffsetHigh = LOCK_OFFSET_HIGH;
    if (LockFileEx(H(fd), LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov))
        return 0;
    DWORD e = GetLastError();
    return e == ERROR_LOCK_VIOLATION || e == ERROR_IO_PENDING ? -EAGAIN : err_of(e);
}

void plat_unlock_file(plat_fd fd)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.OffsetHigh = LOCK_OFFSET_HIGH;
    UnlockFileEx(H(fd), 0, 1, 0, &ov);
}

/* ---- wake-ups: the peers' named events (PROTOCOL section 5) */

int plat_event_path(const char *path, char **out)
{
    /* What the C# peer hashes: the .NET full path (GetFullPathName: `..`
     * resolved, separators made backslashes), in upper case. */
    int rc;
    wchar_t *w = widen(path, &rc);
    if (!w)
        return rc;
    DWORD n = GetFullPathNameW(w, 0, NULL, NULL);
    wchar_t *full = n ? malloc((size_t)n * sizeof *full) : NULL;
    if (!full || !(n = GetFullPathNameW(w, n, full, NULL))) {
        rc = full ? last_err() : -ENOMEM;
        free(full);
        free(w);
        return rc;
    }
    free(w);
    /* invariant upper case, as .NET's ToUpperInvariant (kernel32, not user32) */
    LCMapStringEx(LOCALE_NAME_INVARIANT, LCMAP_UPPERCASE, full, (int)n, full, (int)n, NULL, NULL, 0);
    int u = WideCharToMultiByte(CP_UTF8, 0, full, (int)n, NULL, 0, NULL, NULL);
    char *s = u > 0 ? malloc((size_t)u + 1) : NULL;
    if (!s) {
        free(full);
        return -ENOMEM;
    }
    WideCharToMultiByte(CP_UTF8, 0, full, (int)n, s, u, NULL, NULL);
    s[u] = '\0';
    free(full);
    *out = s;
    return 0;
}

struct plat_wakeups {
    wchar_t slot_prefix[64]; /* tiga_wait_handle_file_<h>_slot_ */
    wchar_t ready[80];       /* tiga_wait_handle_file_<h>_listener_ready */
    HANDLE ready_event;
    HANDLE events[TIGA_NOTIFY_SLOTS]; /* opened lazily, kept until close */
};
typedef struct plat_wakeups wakeups;

int plat_wakeups_open(const char *notify_path, plat_wakeups **out)
{
    char name[96];
    int rc = tiga_event_name(notify_path, -1, name, sizeof name);
    if (rc)
        return rc;
    wakeups *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    /* "..._listener_ready" -> "..._slot_" */
    size_t n = strlen(name) - strlen("listener_ready");
    for (size_t i = 0; i < n; i++)
        w->slot_prefix[i] = (wchar_t)name[i];
    wcscpy(w->slot_prefix + n, L"slot_");
    for (size_t i = 0; name[i]; i++)
        w->ready[i] = (wchar_t)name[i];
    *out = w;
    return 0;
}

void plat_wakeups_close(plat_wakeups *w)
{
    if (!w)
        return;
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        if (w->events[i])
            CloseHandle(w->events[i]);
    if (w->ready_event)
        CloseHandle(w->ready_event);
    free(w);
}

/* Create or open (the same call does both) and keep; a racing thread's
 * duplicate is closed. */
static HANDLE keep_event(HANDLE *slot, const wchar_t *name, BOOL manual)
{
    HANDLE h = *(HANDLE volatile *)slot;
    if (h)
        return h;
    h = CreateEventW(NULL, manual, FALSE, name);
    if (!h)
        return NULL;
    HANDLE prev = InterlockedCompareExchangePointer(slot, h, NULL);
    if (prev) {
        CloseHandle(h);
        return prev;
    }
    return h;
}

static HANDLE slot_event(wakeups *w, int slot)
{
    wchar_t name[80];
    swprintf(name, sizeof name / sizeof name[0], L"%ls%d", w->slot_prefix, slot);
    return keep_event(&w->events[slot], name, FALSE);
}

int plat_wakeups_listen(plat_wakeups *pw, int slot)
{
    wakeups *w = pw;
    return slot_event(w, slot) ? 0 : last_err();
}

void plat_wakeups_wake(plat_wakeups *pw, int slot, _Atomic uint32_t *word, int sleeper)
{
    /* Always: the peers' listeners sleep on the event without announcing
     * themselves in the word. */
    (void)word;
    (void)sleeper;
    HANDLE h = slot_event(pw, slot);
    if (h)
        SetEvent(h);
}

int plat_wakeups_wait(plat_wakeups *pw, int slot, _Atomic uint32_t *word, uint32_t expected,
                      int64_t timeout_ms)
{
    HANDLE h = slot_event(pw, slot);
    if (!h)
        return last_err();
    if (atomic_load(word) != expected)
        return 0;
    DWORD ms = timeout_ms < 0 ? INFINITE
                              : (timeout_ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)timeout_ms);
    DWORD r = WaitForSingleObject(h, ms);
    if (r == WAIT_OBJECT_0)
        return 0;
    if (r == WAIT_TIMEOUT)
        return -ETIMEDOUT;
    return last_err();
}

void plat_wakeups_ready(plat_wakeups *pw, int live)
{
    wakeups *w = pw;
    HANDLE h = keep_event(&w->ready_event, w->ready, TRUE);
    if (!h)
        return;
    if (live)
        SetEvent(h);
    else
        ResetEvent(h);
}

/* ---- many slots at once: WaitForMultipleObjects on the slots' events and
 * an unnamed kick event (the first handle). */

struct plat_multiwait {
    HANDLE kick_event;
    volatile LONG kick;
    LONG seen_kick;
    int poll;
};

int plat_multiwait_open(int poll, plat_multiwait **out)
{
    plat_multiwait *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->kick_event = CreateEventW(NULL, FALSE, FALSE, NULL);
    if (!m->kick_event) {
        int rc = last_err();
        free(m);
        return rc;
    }
    m->poll = poll;
    *out = m;
    return 0;
}

void plat_multiwait_close(plat_multiwait *m)
{
    if (!m)
        return;
    CloseHandle(m->kick_event);
    free(m);
}

void plat_multiwait_kick(plat_multiwait *m)
{
    InterlockedIncrement(&m->kick);
    SetEvent(m->kick_event);
}

static int kicked(plat_multiwait *m)
{
    LONG k = InterlockedCompareExchange(&m->kick, 0, 0);
    if (k == m->seen_kick)
        return 0;
    m->seen_kick = k;
    return 1;
}

int plat_multiwait_wait(plat_multiwait *m, const plat_waitspec *specs, int n, int64_t timeout_ms,
                        int *complete)
{
    if (kicked(m))
        return 1;
    for (int i = 0; i < n; i++)
        if (atomic_load(specs[i].word) != specs[i].expected)
            return 0;
    HANDLE hs[MAXIMUM_WAIT_OBJECTS];
    DWORD count = 1;
    hs[0] = m->kick_event;
    if (!m->poll)
        for (int i = 0; i < n && count < MAXIMUM_WAIT_OBJECTS; i++) {
            HANDLE h = slot_event(specs[i].wakeups, specs[i].slot);
            if (h)
                hs[count++] = h;
        }
    *complete = count == (DWORD)n + 1;
    DWORD ms = timeout_ms < 0 ? INFINITE
                              : (timeout_ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)timeout_ms);
    DWORD r = WaitForMultipleObjects(count, hs, FALSE, ms);
    if (kicked(m))
        return 1;
    if (r == WAIT_TIMEOUT)
        return -ETIMEDOUT;
    if (r - WAIT_OBJECT_0 < count) /* (WAIT_OBJECT_0 is 0) */
        return 0;
    return last_err();
}

/* ---- directory watch: ReadDirectoryChangesW with an overlapped read kept
 * outstanding; a completion (or an overflow) is "something changed". */

struct plat_dirwatch {
    HANDLE dir, event;
    OVERLAPPED ov;
    bool pending;
    DWORD buf[2048];
};

static int dirwatch_arm(plat_dirwatch *w)
{
    memset(&w->ov, 0, sizeof w->ov);
    w->ov.hEvent = w->event;
    ResetEvent(w->event);
    if (!ReadDirectoryChangesW(w->dir, w->buf, sizeof w->buf, FALSE,
                               FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE |
                                   FILE_NOTIFY_CHANGE_SIZE,
                               NULL, &w->ov, NULL))
        return last_err();
    w->pending = true;
    return 0;
}

int plat_dirwatch_open(const char *dir, plat_dirwatch **out)
{
    int rc;
    wchar_t *wd = widen_path(dir, &rc);
    if (!wd)
        return rc;
    plat_dirwatch *w = calloc(1, sizeof *w);
    if (!w) {
        free(wd);
        return -ENOMEM;
    }
    w->dir = CreateFileW(wd, FILE_LIST_DIRECTORY,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                         OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED, NULL);
    free(wd);
    if (w->dir == INVALID_HANDLE_VALUE) {
        rc = last_err();
        free(w);
        return rc;
    }
    w->event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!w->event || (rc = dirwatch_arm(w))) {
        rc = w->event ? rc : last_err();
        plat_dirwatch_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int plat_dirwatch_wait(plat_dirwatch *w, int64_t timeout_ms)
{
    if (!w->pending) {
        int rc = dirwatch_arm(w);
        if (rc)
            return rc;
    }
    DWORD ms = timeout_ms < 0 ? INFINITE
                              : (timeout_ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)timeout_ms);
    DWORD r = WaitForSingleObject(w->event, ms);
    if (r == WAIT_TIMEOUT)
        return -ETIMEDOUT;
    if (r != WAIT_OBJECT_0)
        return last_err();
    DWORD got;
    GetOverlappedResult(w->dir, &w->ov, &got, FALSE);
    w->pending = false;
    int rc = dirwatch_arm(w); /* keep watching from now on */
    (void)rc;                 /* a failure shows at the next wait */
    return 0;
}

void plat_dirwatch_close(plat_dirwatch *w)
{
    if (!w)
        return;
    if (w->pending) {
        DWORD got;
        CancelIoEx(w->dir, &w->ov);
        GetOverlappedResult(w->dir, &w->ov, &got, TRUE);
    }
    if (w->dir != INVALID_HANDLE_VALUE)
        CloseHandle(w->dir);
    if (w->event)
        CloseHandle(w->event);
    free(w);
}

/* ---- time and processes */

int64_t plat_now_ns(void)
{
    static LARGE_INTEGER freq; /* fixed at boot: a benign race */
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    LARGE_INTEGER c;
    QueryPerformanceCounter(&c);
    int64_t f = freq.QuadPart;
    return (c.QuadPart / f) * 1000000000 + (c.QuadPart % f) * 1000000000 / f;
}

#ifndef CREATE_WAITABLE_TIMER_HIGH_RESOLUTION
#define CREATE_WAITABLE_TIMER_HIGH_RESOLUTION 0x00000002
#endif

void plat_sleep_us(int64_t us)
{
    if (us <= 0) {
        SwitchToThread();
        return;
    }
    /* Sleep() rounds up to the timer tick (15.6 ms by default); a
     * high-resolution waitable timer (Windows 10 1803+) does not. */
    HANDLE t = CreateWaitableTimerExW(NULL, NULL, CREATE_WAITABLE_TIMER_HIGH_RESOLUTION,
                                      TIMER_ALL_ACCESS);
    if (!t)
        t = CreateWaitableTimerW(NULL, TRUE, NULL);
    LARGE_INTEGER due;
    due.QuadPart = -us * 10; /* relative, 100 ns units */
    if (t && SetWaitableTimer(t, &due, 0, NULL, NULL, FALSE))
        WaitForSingleObject(t, INFINITE);
    else
        Sleep((DWORD)((us + 999) / 1000));
    if (t)
        CloseHandle(t);
}

void plat_yield(void) { SwitchToThread(); }

int32_t plat_getpid(void) { return (int32_t)GetCurrentProcessId(); }

/* FILETIME (100 ns since 1601) to .NET ticks (100 ns since 0001). */
#define FILETIME_TO_TICKS INT64_C(504911232000000000)

int64_t plat_process_start_ticks(int32_t pid)
{
    if (pid <= 0)
        return 0;
    bool self = (DWORD)pid == GetCurrentProcessId();
    HANDLE p = self ? GetCurrentProcess()
                    : OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (!p)
        return 0;
    FILETIME created, exited, kernel, user;
    int64_t ticks = 0;
    if (GetProcessTimes(p, &created, &exited, &kernel, &user))
        ticks = (int64_t)(((uint64_t)created.dwHighDateTime << 32) | created.dwLowDateTime) +
                FILETIME_TO_TICKS;
    if (!self)
        CloseHandle(p);
    return ticks;
}

int plat_pid_exists(int32_t pid)
{
    if (pid <= 0)
        return 0;
    HANDLE p = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, FALSE, (DWORD)pid);
    if (!p) {
        /* another user's (or a protected) process exists but is closed to us */
        return GetLastError() == ERROR_ACCESS_DENIED;
    }
    /* an exited process whose handle someone still holds is not alive
     * (the C# peer checks HasExited) */
    int alive = WaitForSingleObject(p, 0) == WAIT_TIMEOUT;
    CloseHandle(p);
    return alive;
}

void plat_random(void *buf, size_t n)
{
    if (n <= ULONG_MAX &&
        BCryptGenRandom(NULL, buf, (ULONG)n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0)
        return;
    /* fallback: mix clock and pid (only for instance ids, not secrets) */
    uint64_t x = (uint64_t)plat_now_ns() ^ ((uint64_t)GetCurrentProcessId() << 32) ^
                 (uint64_t)(uintptr_t)buf;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint8_t *)buf)[i] = (uint8_t)x;
    }
}
