/* SPDX-License-Identifier: MIT */
/* A minimal test harness: CHECK(cond) reports and counts; TEST_MAIN runs the list. */
#ifndef TIGA_CHECK_H
#define TIGA_CHECK_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the tests need from the system, for POSIX and for Windows (the only
 * place in the tests that tells them apart): temporary directories, files
 * poked from outside, threads, and child processes.  A child is the test
 * program itself run again with "--child <name> <args>" (on POSIX a fork
 * that calls the same function, so the sanitizers see it). */
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#define TEST_WINDOWS 1
typedef HANDLE test_proc;
typedef HANDLE test_thread;
#else
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define TEST_WINDOWS 0
typedef pid_t test_proc;
typedef pthread_t test_thread;
#endif

static int check_failures, check_count;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(c)) {                                                                                \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s (detail: %s)\n", __FILE__, __LINE__, #c,      \
                    tiga_last_error());                                                            \
        }                                                                                          \
    } while (0)
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        check_count++;                                                                             \
        if (rc_ != (want)) {                                                                       \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (detail: %s)\n", __FILE__,    \
                    __LINE__, #expr, rc_, tiga_strerror(rc_), (int)(want), tiga_last_error());     \
        }                                                                                          \
    } while (0)


/* A fresh temporary directory for a test. */
static inline char *temp_dir(void)
{
    static char buf[300];
#if TEST_WINDOWS
    char base[MAX_PATH];
    DWORD n = GetTempPathA(sizeof base, base);
    for (unsigned k = 0; n > 0 && k < 1000; k++) {
        snprintf(buf, sizeof buf, "%stiga-ctest-%lu-%u", base, GetCurrentProcessId(), k);
        if (CreateDirectoryA(buf, NULL))
            return buf;
        if (GetLastError() != ERROR_ALREADY_EXISTS)
            break;
    }
    fprintf(stderr, "cannot make a temporary directory\n");
    exit(2);
#else
    strcpy(buf, "/tmp/tiga-ctest-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
#endif
}

#if TEST_WINDOWS
static inline void remove_tree(const char *dir)
{
    char pat[600], f[700];
    snprintf(pat, sizeof pat, "%s\\*", dir);
    WIN32_FIND_DATAA d;
    HANDLE h = FindFirstFileA(pat, &d);
    if (h != INVALID_HANDLE_VALUE) {
        do {
            if (!strcmp(d.cFileName, ".") || !strcmp(d.cFileName, ".."))
                continue;
            snprintf(f, sizeof f, "%s\\%s", dir, d.cFileName);
            if (d.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) {
                remove_tree(f);
            } else {
                /* the \\?\ form: a channel name may take a path past MAX_PATH */
                wchar_t wf[700] = L"\\\\?\\";
                MultiByteToWideChar(CP_ACP, 0, f, -1, wf + 4, 690);
                DeleteFileW(wf);
            }
        } while (FindNextFileA(h, &d));
        FindClose(h);
    }
    RemoveDirectoryA(dir);
}
#endif

static inline void remove_dir(const char *dir)
{
#if TEST_WINDOWS
    remove_tree(dir);
    if (GetFileAttributesA(dir) != INVALID_FILE_ATTRIBUTES)
        fprintf(stderr, "could not remove %s\n", dir);
#else
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
#endif
}

/* Files as another process would touch them: size, set size, read, write. */
static inline long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return -1;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    return n;
}

/* 0 on success; on Windows this fails for a file that someone has mapped
 * and that would get shorter. */
static inline int set_file_size(const char *p, long long size)
{
#if TEST_WINDOWS
    HANDLE h = CreateFileA(p, GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return -1;
    FILE_END_OF_FILE_INFO eof;
    eof.EndOfFile.QuadPart = size;
    int ok = SetFileInformationByHandle(h, FileEndOfFileInfo, &eof, sizeof eof);
    CloseHandle(h);
    return ok ? 0 : -1;
#else
    return truncate(p, (off_t)size);
#endif
}

static inline int file_rw_at(const char *p, long off, void *buf, size_t n, int write)
{
    FILE *f = fopen(p, "r+b");
    if (!f)
        return -1;
    int ok = fseek(f, off, SEEK_SET) == 0 &&
             (write ? fwrite(buf, 1, n, f) : fread(buf, 1, n, f)) == n;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}
#define read_at(p, off, buf, n) file_rw_at(p, off, buf, n, 0)
#define write_at(p, off, buf, n) file_rw_at(p, off, (void *)(buf), n, 1)

static inline void sleep_ms(int ms)
{
#if TEST_WINDOWS
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

/* A monotonic clock, in milliseconds. */
static inline int64_t test_now_ms(void)
{
#if TEST_WINDOWS
    return (int64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

static inline int32_t test_pid(void)
{
#if TEST_WINDOWS
    return (int32_t)GetCurrentProcessId();
#else
    return (int32_t)getpid();
#endif
}

/* ---- threads */
typedef void *(*test_thread_fn)(void *);
#if TEST_WINDOWS
typedef struct {
    test_thread_fn fn;
    void *arg;
} test_thread_start;
static DWORD WINAPI test_thread_main(void *p)
{
    test_thread_start s = *(test_thread_start *)p;
    free(p);
    s.fn(s.arg);
    return 0;
}
#endif
static inline int thread_start(test_thread *t, test_thread_fn fn, void *arg)
{
#if TEST_WINDOWS
    test_thread_start *s = malloc(sizeof *s);
    if (!s)
        return -1;
    s->fn = fn;
    s->arg = arg;
    *t = CreateThread(NULL, 0, test_thread_main, s, 0, NULL);
    return *t ? 0 : -1;
#else
    return pthread_create(t, NULL, fn, arg);
#endif
}

static inline void thread_join(test_thread t)
{
#if TEST_WINDOWS
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
#else
    pthread_join(t, NULL);
#endif
}

/* ---- child processes */
typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv); /* returns the child's exit code */
} test_child;
#define CHILD(f) {#f, f}
static const char *test_argv0;
static const test_child *test_child_list;

/* Start child `name` with up to 4 string arguments (NULL ends them early). */
static inline test_proc spawn_child(const char *name, const char *a1, const char *a2,
                                    const char *a3, const char *a4)
{
    const char *args[5] = {a1, a2, a3, a4, NULL};
    int argc = 0;
    while (argc < 4 && args[argc])
        argc++;
    fflush(stdout);
    fflush(stderr);
#if TEST_WINDOWS
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "\"%s\" --child %s", test_argv0, name);
    for (int i = 0; i < argc; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " \"%s\"", args[i]);
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
        fprintf(stderr, "cannot start %s\n", cmd);
        exit(2);
    }
    CloseHandle(pi.hThread);
    return pi.hProcess;
#else
    pid_t pid = fork();
    if (pid == 0) {
        for (const test_child *c = test_child_list; c && c->name; c++)
            if (strcmp(c->name, name) == 0)
                _exit(c->fn(argc, (char **)args));
        _exit(127);
    }
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    return pid;
#endif
}

/* The child's exit code; 128 + the signal when a signal ended it. */
static inline int wait_child(test_proc p)
{
#if TEST_WINDOWS
    DWORD code = 255;
    WaitForSingleObject(p, INFINITE);
    GetExitCodeProcess(p, &code);
    CloseHandle(p);
    return (int)code;
#else
    int st = 0;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
#endif
}

/* Kill it the hard way (SIGKILL, TerminateProcess): no cleanup of its runs. */
static inline void kill_child(test_proc p)
{
#if TEST_WINDOWS
    TerminateProcess(p, 137);
#else
    kill(p, SIGKILL);
#endif
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

/* TEST_MAIN(T(a), T(b)) runs the tests; TEST_MAIN_CHILDREN(children, ...)
 * also knows the child processes in `children` (ended by {NULL, NULL}). */
#define TEST_MAIN_CHILDREN(children, ...)                                                          \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        test_argv0 = argv[0];                                                                      \
        test_child_list = children;                                                                \
        if (argc >= 3 && strcmp(argv[1], "--child") == 0) {                                        \
            for (const test_child *c = test_child_list; c && c->name; c++)                         \
                if (strcmp(c->name, argv[2]) == 0)                                                 \
                    return c->fn(argc - 3, argv + 3);                                              \
            return 127;                                                                            \
        }                                                                                          \
        test_case cases[] = {__VA_ARGS__};                                                         \
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {                              \
            int before = check_failures;                                                           \
            cases[i].fn();                                                                         \
            printf("%s %s\n", check_failures == before ? "ok  " : "FAIL", cases[i].name);          \
            fflush(stdout);                                                                        \
        }                                                                                          \
        printf("%d checks, %d failed\n", check_count, check_failures);                             \
        return check_failures ? 1 : 0;                                                             \
    }
#define TEST_MAIN(...) TEST_MAIN_CHILDREN(NULL, __VA_ARGS__)
#define T(f) {#f, f}
/* A test that cannot apply here says so in the log instead of passing quietly. */
#define SKIP(why) printf("skip %s: %s\n", __func__, why)
#endif
