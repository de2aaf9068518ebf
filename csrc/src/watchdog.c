/* SPDX-License-Identifier: MIT */
/* Watchdogs: noticing work that runs long without a thread that wakes while
 * nothing does (see tiga.h).  Marking work is a store (and, after a quiet
 * spell, one kick); the waiting thread sleeps until the earliest piece of
 * work under way would turn stale, and parks when none is under way. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define LINGER_NS INT64_C(250000000) /* quiet this long: park until the next begin */

struct tiga_watchdog {
    int32_t n;
    _Atomic int32_t hi;            /* slots below this were ever used */
    _Atomic int64_t *since;        /* when the work in a slot began; 0 when idle */
    int64_t *reported_since;       /* the work last reported, per slot (waiter only) */
    int64_t *reported_at;
    _Atomic int parked;            /* the waiter sleeps until a begin kicks it */
    _Atomic int kicked;            /* tiga_watchdog_kick was called */
    plat_multiwait *mw;
    int64_t quiet_since;
};

int tiga_watchdog_open(int32_t slots, tiga_watchdog **out)
{
    if (!out || slots < 1 || slots > 65536)
        return tiga_fail(TIGA_EINVAL, "slots must be 1 to 65536");
    tiga_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    wd->since = calloc((size_t)slots, sizeof *wd->since);
    wd->reported_since = calloc((size_t)slots, sizeof *wd->reported_since);
    wd->reported_at = calloc((size_t)slots, sizeof *wd->reported_at);
    int rc = (wd->since && wd->reported_since && wd->reported_at) ? 0 : -ENOMEM;
    if (rc == 0)
        rc = plat_multiwait_open(0, &wd->mw);
    if (rc) {
        wd->mw = NULL;
        tiga_watchdog_close(wd);
        return tiga_fail(rc == -ENOMEM ? TIGA_ENOMEM : rc, "cannot make a watchdog");
    }
    wd->n = slots;
    wd->quiet_since = plat_now_ns();
    *out = wd;
    return TIGA_OK;
}

void tiga_watchdog_close(tiga_watchdog *wd)
{
    if (!wd)
        return;
    if (wd->mw)
        plat_multiwait_close(wd->mw);
    free((void *)wd->since);
    free(wd->reported_since);
    free(wd->reported_at);
    free(wd);
}

void tiga_watchdog_begin(tiga_watchdog *wd, int32_t slot)
{
    if (!wd || slot < 0 || slot >= wd->n)
        return;
    int64_t now = plat_now_ns();
    atomic_store(&wd->since[slot], now > 0 ? now : 1);
    int32_t hi = atomic_load(&wd->hi);
    while (hi <= slot && !atomic_compare_exchange_weak(&wd->hi, &hi, slot + 1))
        ;
    if (atomic_load(&wd->parked))
        plat_multiwait_kick(wd->mw);
}

void tiga_watchdog_end(tiga_watchdog *wd, int32_t slot)
{
    if (wd && slot >= 0 && slot < wd->n)
        atomic_store(&wd->since[slot], 0);
}

void tiga_watchdog_kick(tiga_watchdog *wd)
{
    if (!wd)
        return;
    atomic_store(&wd->kicked, 1);
    plat_multiwait_kick(wd->mw);
}

/* The earliest time any slot turns stale (INT64_MAX: none busy), or a stale
 * slot in *slot (>= 0). */
static int64_t scan(tiga_watchdog *wd, int64_t now, int64_t stale_ns, int32_t *slot)
{
    int64_t earliest = INT64_MAX;
    int32_t hi = atomic_load(&wd->hi);
    *slot = -1;
    for (int32_t i = 0; i < hi; i++) {
        int64_t s = atomic_load(&wd->since[i]);
        if (!s)
            continue;
        /* work that was reported already is reported again only after another
         * stale_ns (the caller could not act on it then) */
        int64_t due = s > INT64_MAX - stale_ns ? INT64_MAX : s + stale_ns;
        if (wd->reported_since[i] == s && wd->reported_at[i] < INT64_MAX - stale_ns &&
            wd->reported_at[i] + stale_ns > due)
            due = wd->reported_at[i] + stale_ns;
        if (now >= due) {
            wd->reported_since[i] = s;
            wd->reported_at[i] = now;
            *slot = i;
            return now;
        }
        if (due < earliest)
            earliest = due;
    }
    return earliest;
}

int tiga_watchdog_wait(tiga_watchdog *wd, int64_t stale_us, int64_t timeout_ms, int32_t *slot)
{
    if (!wd || !slot || stale_us < 0 || stale_us > INT64_C(3600000000))
        return tiga_fail(TIGA_EINVAL, "NULL argument or stale_us out of range");
    int64_t stale_ns = stale_us * 1000;
    int64_t start = plat_now_ns();
    int64_t deadline = timeout_ms < 0 || timeout_ms > INT64_C(3600000000)
                           ? INT64_MAX : start + timeout_ms * 1000000;
    for (;;) {
        if (atomic_exchange(&wd->kicked, 0)) {
            *slot = -1;
            return TIGA_OK;
        }
        int64_t now = plat_now_ns();
        int64_t until = scan(wd, now, stale_ns, slot);
        if (*slot >= 0)
            return TIGA_OK;
        if (until != INT64_MAX)
            wd->quiet_since = now;
        if (now >= deadline)
            return TIGA_ETIMEDOUT;
        if (until == INT64_MAX) {
            if (now - wd->quiet_since < LINGER_NS) {
                until = now + stale_ns; /* look again soon: work is likely */
            } else {
                /* park: a begin from now on kicks; one that came before the
                 * flag was up is seen by this second look */
                atomic_store(&wd->parked, 1);
                int32_t ignored;
                if (scan(wd, now, stale_ns, &ignored) != INT64_MAX || ignored >= 0) {
                    atomic_store(&wd->parked, 0);
                    continue;
                }
            }
        }
        if (until > deadline)
            until = deadline;
        int64_t ms = until == INT64_MAX ? -1 : (until - now + 999999) / 1000000;
        int complete;
        plat_multiwait_wait(wd->mw, NULL, 0, ms < 1 && ms >= 0 ? 1 : ms, &complete);
        atomic_store(&wd->parked, 0);
    }
}
