/* SPDX-License-Identifier: MIT */
/* A minimal test harness: CHECK(cond) reports and counts; TEST_MAIN runs the list. */
#ifndef TIGA_CHECK_H
#define TIGA_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    static char buf[64];
    strcpy(buf, "/tmp/tiga-ctest-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

static inline void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

#define TEST_MAIN(...)                                                                             \
    int main(void)                                                                                 \
    {                                                                                              \
        test_case cases[] = {__VA_ARGS__};                                                         \
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {                              \
            int before = check_failures;                                                           \
            cases[i].fn();                                                                         \
            printf("%s %s\n", check_failures == before ? "ok  " : "FAIL", cases[i].name);          \
        }                                                                                          \
        printf("%d checks, %d failed\n", check_count, check_failures);                             \
        return check_failures ? 1 : 0;                                                             \
    }
#define T(f) {#f, f}
#endif
