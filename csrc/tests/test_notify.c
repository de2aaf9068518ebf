/* SPDX-License-Identifier: MIT */
/* Listener slots and wake-ups. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "tiga.h"
#include "check.h"

static int64_t ms_now(void) { return tiga_now_ns() / 1000000; }

static void test_register_and_live(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "n", NULL, &ch), TIGA_OK);
    int32_t live = -1;
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 0);
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "n", NULL, &l), TIGA_OK);
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 1);
    CHECK_RC(tiga_channel_wait_listener(ch, 0), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_ETIMEDOUT);
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 10, 0), TIGA_ETIMEDOUT);
    tiga_listener_close(l);
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 0);
    CHECK_RC(tiga_channel_wait_listener(ch, 20), TIGA_ENOTREADY);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_full_table(void)
{
    char *dir = temp_dir();
    tiga_listener *ls[TIGA_NOTIFY_SLOTS];
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        CHECK_RC(tiga_listener_open(dir, "full", NULL, &ls[i]), TIGA_OK);
    tiga_listener *extra = NULL;
    CHECK_RC(tiga_listener_open(dir, "full", NULL, &extra), TIGA_ENOSLOT);
    tiga_listener_close(ls[5]);
    CHECK_RC(tiga_listener_open(dir, "full", NULL, &extra), TIGA_OK);
    CHECK(tiga_listener_slot(extra) == 5);
    tiga_listener_close(extra);
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        if (i != 5)
            tiga_listener_close(ls[i]);
    remove_dir(dir);
}

static void test_dead_owner_taken_over(void)
{
    char *dir = temp_dir();
    pid_t kid = fork();
    if (kid == 0) {
        tiga_listener *l = NULL;
        if (tiga_listener_open(dir, "dead", NULL, &l))
            _exit(3);
        _exit(0); /* dies holding the slot */
    }
    int st;
    waitpid(kid, &st, 0);
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "dead", NULL, &ch), TIGA_OK);
    int32_t live = -1;
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 0);
    tiga_channel_close(ch);
    /* liveness: our pid with another start time is dead */
    int32_t me = (int32_t)getpid();
    int64_t start = tiga_process_start_ticks(me);
    CHECK(start > 0);
    CHECK(tiga_process_alive(me, start) == 1);
    CHECK(tiga_process_alive(me, 0) == 1);
    CHECK(tiga_process_alive(me, start - INT64_C(36000000000)) == 0);
    remove_dir(dir);
}

static void test_wake_across_processes(void)
{
    char *dir = temp_dir();
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "w", NULL, &l), TIGA_OK);
    pid_t kid = fork();
    if (kid == 0) {
        tiga_channel *ch = NULL;
        if (tiga_channel_open(dir, "w", NULL, &ch))
            _exit(3);
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
        tiga_message m = {(const uint8_t *)"ping", 4, NULL};
        _exit(tiga_channel_append(ch, &m, 1, NULL) ? 4 : 0);
    }
    int64_t t0 = ms_now();
    CHECK_RC(tiga_listener_wait(l, 5000, 0), TIGA_OK);
    int64_t waited = ms_now() - t0;
    CHECK(waited < 2000);
    int st;
    waitpid(kid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tiga_listener_close(l);
    remove_dir(dir);
}

/* Hostile numbers in the notify and state files (under UBSan a signed
 * overflow aborts): owner_start at the extremes, counters at INT32_MAX. */
static void test_hostile_numbers(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.reader_grace_ms = 20;
    CHECK_RC(tiga_channel_open(dir, "h", &o, &ch), TIGA_OK);
    char p[512];
    snprintf(p, sizeof p, "%s/tiga_h_notify", dir);
    const int64_t starts[] = {INT64_MIN, INT64_MAX, -1, 1};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        FILE *f = fopen(p, "r+b");
        int64_t slot[2] = {((int64_t)getpid() << 32) | 1, starts[i]};
        int32_t pid[2] = {(int32_t)getpid(), 0};
        CHECK(f && fwrite(slot, 8, 2, f) == 2 && fwrite(pid, 4, 2, f) == 2);
        fclose(f);
        int32_t live = -1;
        CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
        CHECK(live == 0 || live == 1);
        CHECK(tiga_process_alive(getpid(), starts[i]) == 0 || starts[i] == 1 ||
              tiga_process_alive(getpid(), starts[i]) == 1);
    }
    snprintf(p, sizeof p, "%s/tiga_h_state", dir);
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    FILE *f = fopen(p, "r+b");
    int32_t counters[2] = {INT32_MAX, INT32_MAX};
    CHECK(f && fseek(f, 8, SEEK_SET) == 0 && fwrite(counters, 4, 2, f) == 2);
    fclose(f);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r && r->count == 1);
    tiga_read_result_free(r);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK); /* forces after the grace */
    tiga_channel_close(ch);
    remove_dir(dir);
}

TEST_MAIN(T(test_register_and_live), T(test_hostile_numbers), T(test_full_table), T(test_dead_owner_taken_over),
          T(test_wake_across_processes))
