/* SPDX-License-Identifier: MIT */
/* Watchdogs: long work is reported once it turns stale, short work never, and
 * the waiting thread parks and is kicked. */
#include "tiga.h"
#include "check.h"

static int64_t now_ms(void) { return tiga_now_ns() / 1000000; }

typedef struct {
    tiga_watchdog *wd;
    int32_t slot;
    int ms;
} job;

static void *work_for(void *p)
{
    job *j = p;
    tiga_watchdog_begin(j->wd, j->slot);
    sleep_ms(j->ms);
    tiga_watchdog_end(j->wd, j->slot);
    return NULL;
}

static void *kick_soon(void *p)
{
    sleep_ms(30);
    tiga_watchdog_kick(p);
    return NULL;
}

static void test_stale_work_is_reported(void)
{
    tiga_watchdog *wd = NULL;
    CHECK_RC(tiga_watchdog_open(8, &wd), TIGA_OK);
    if (!wd)
        return;
    int32_t slot = 99;
    /* nothing under way: a timeout */
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 20, &slot), TIGA_ETIMEDOUT);
    /* short work is never reported */
    for (int i = 0; i < 50; i++) {
        tiga_watchdog_begin(wd, 3);
        tiga_watchdog_end(wd, 3);
    }
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 20, &slot), TIGA_ETIMEDOUT);
    /* long work in another thread: reported after about stale_us */
    job j = {wd, 5, 300};
    test_thread t;
    CHECK(thread_start(&t, work_for, &j) == 0);
    int64_t t0 = now_ms();
    CHECK_RC(tiga_watchdog_wait(wd, 20000, 5000, &slot), TIGA_OK);
    int64_t took = now_ms() - t0;
    CHECK(slot == 5 && took >= 15 && took < 250);
    /* the same work again only after another stale_us */
    t0 = now_ms();
    CHECK_RC(tiga_watchdog_wait(wd, 20000, 5000, &slot), TIGA_OK);
    CHECK(slot == 5 && now_ms() - t0 >= 15);
    thread_join(t);
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 20, &slot), TIGA_ETIMEDOUT);
    /* out-of-range slots are ignored; bad arguments refused */
    tiga_watchdog_begin(wd, 8);
    tiga_watchdog_begin(wd, -1);
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 10, &slot), TIGA_ETIMEDOUT);
    CHECK_RC(tiga_watchdog_wait(wd, -1, 10, &slot), TIGA_EINVAL);
    CHECK_RC(tiga_watchdog_wait(NULL, 1, 10, &slot), TIGA_EINVAL);
    tiga_watchdog_close(wd);
    CHECK_RC(tiga_watchdog_open(0, &wd), TIGA_EINVAL);
    tiga_watchdog_close(NULL);
}

static void test_parked_waiter_is_woken(void)
{
    tiga_watchdog *wd = NULL;
    CHECK_RC(tiga_watchdog_open(4, &wd), TIGA_OK);
    if (!wd)
        return;
    int32_t slot = 99;
    /* a kick ends a wait at once, with no slot */
    test_thread t;
    CHECK(thread_start(&t, kick_soon, wd) == 0);
    int64_t t0 = now_ms();
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 5000, &slot), TIGA_OK);
    CHECK(slot == -1 && now_ms() - t0 < 2000);
    thread_join(t);
    /* quiet for longer than the linger: the waiter parks (no wake-ups), and a
     * begin wakes it to time the work */
    CHECK_RC(tiga_watchdog_wait(wd, 2000, 400, &slot), TIGA_ETIMEDOUT);
    job j = {wd, 1, 200};
    CHECK(thread_start(&t, work_for, &j) == 0);
    t0 = now_ms();
    CHECK_RC(tiga_watchdog_wait(wd, 10000, 5000, &slot), TIGA_OK);
    CHECK(slot == 1 && now_ms() - t0 < 150);
    thread_join(t);
    tiga_watchdog_close(wd);
}

TEST_MAIN(T(test_stale_work_is_reported), T(test_parked_waiter_is_woken))
