/* SPDX-License-Identifier: MIT */
/* Listener slots (the notify file): registration, liveness, signalling and
 * waiting.  On Linux the slot's 'reserved' word is a shared futex word:
 * bits 0..30 count signals, bit 31 says a listener may be asleep on it, so a
 * writer makes the FUTEX_WAKE system call only when someone may sleep. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SLEEPER 0x80000000u
#define COUNT_MASK 0x7fffffffu
#define START_TOLERANCE INT64_C(20000000) /* 2 s in 100 ns ticks, see PROTOCOL-NOTES */
#define QUIET_NS INT64_C(500000)          /* the last event took > 0.5 ms: do not spin */

static uint32_t marker_of(int64_t start)
{
    if (start == 0)
        return 0;
    uint64_t s = (uint64_t)start;
    return (uint32_t)(s ^ (s >> 32));
}

int64_t tiga_owner_token(int32_t pid, int64_t start)
{
    if (pid <= 0)
        pid = 1;
    int64_t t = (int64_t)(((uint64_t)(uint32_t)pid << 32) | marker_of(start));
    return t == 0 ? 1 : t;
}

int64_t tiga_process_start_ticks(int32_t pid) { return plat_process_start_ticks(pid); }

int tiga_process_alive(int32_t pid, int64_t owner_start)
{
    if (!plat_pid_exists(pid))
        return 0;
    if (owner_start == 0)
        return 1;
    int64_t actual = plat_process_start_ticks(pid);
    if (actual == 0)
        return 1; /* cannot tell: the pid exists */
    /* owner_start comes from a file: any value; the distance is taken
     * without signed overflow */
    uint64_t d = actual >= owner_start ? (uint64_t)actual - (uint64_t)owner_start
                                       : (uint64_t)owner_start - (uint64_t)actual;
    return d <= (uint64_t)START_TOLERANCE;
}

bool tiga_owner_alive(int32_t pid, int64_t start, int64_t token)
{
    if (pid != 0)
        return tiga_process_alive(pid, start) != 0;
    /* Fields not (yet) written: decode the token. */
    pid = (int32_t)((uint64_t)token >> 32);
    uint32_t marker = (uint32_t)token;
    if (!plat_pid_exists(pid))
        return false;
    if (marker == 0)
        return true;
    int64_t actual = plat_process_start_ticks(pid);
    return actual == 0 || marker_of(actual) == marker;
}

static bool slot_alive(tiga_slot *s, int64_t token)
{
    return tiga_owner_alive(atomic_load(&s->owner_pid), atomic_load(&s->owner_start), token);
}

static void clear_slot(tiga_slot *s, int64_t token)
{
    atomic_store(&s->owner_start, 0);
    atomic_store(&s->owner_pid, 0);
    int64_t t = token;
    atomic_compare_exchange_strong(&s->token, &t, 0);
}

int tiga_notify_live(tiga_slot *slots, int32_t *live)
{
    int32_t n = 0;
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++) {
        int64_t t = atomic_load(&slots[i].token);
        if (t == 0)
            continue;
        if (slot_alive(&slots[i], t))
            n++;
        else
            clear_slot(&slots[i], t);
    }
    *live = n;
    return 0;
}

int tiga_notify_signal(tiga_channel *ch, int32_t *woken)
{
    tiga_slot *slots = ch->slots;
    /* Every slot with a token is signalled, without a liveness test: a wake
     * word of a dead slot costs an increment, and the liveness test (which
     * reads /proc) stays off the write path.  Dead slots are cleared by
     * registration and by tiga_channel_live_listeners. */
    int32_t n = 0;
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++) {
        if (atomic_load_explicit(&slots[i].token, memory_order_relaxed) == 0)
            continue;
        _Atomic uint32_t *w = &slots[i].wake;
        uint32_t old = atomic_load(w);
        while (!atomic_compare_exchange_weak(w, &old, (old + 1) & COUNT_MASK))
            ;
        plat_wakeups_wake(ch->wakeups, i, w, (old & SLEEPER) != 0);
        n++;
    }
    if (woken)
        *woken = n;
    return 0;
}

int tiga_channel_signal(tiga_channel *ch, int32_t *woken)
{
    if (!ch)
        return tiga_fail(TIGA_EINVAL, "NULL channel");
    return tiga_notify_signal(ch, woken);
}

int tiga_channel_live_listeners(tiga_channel *ch, int32_t *out)
{
    if (!ch || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    return tiga_notify_live(ch->slots, out);
}

int tiga_channel_wait_listener(tiga_channel *ch, int64_t timeout_ms)
{
    if (!ch)
        return tiga_fail(TIGA_EINVAL, "NULL channel");
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : plat_now_ns() + timeout_ms * 1000000;
    int64_t pause_us = 200;
    for (;;) {
        int32_t live;
        tiga_notify_live(ch->slots, &live);
        if (live > 0)
            return TIGA_OK;
        int64_t left = deadline - plat_now_ns();
        if (left <= 0)
            return tiga_fail(TIGA_ENOTREADY, "no live listener on %s within %lld ms", ch->base,
                             (long long)timeout_ms);
        int64_t us = pause_us < left / 1000 ? pause_us : left / 1000;
        plat_sleep_us(us > 0 ? us : 1);
        if (pause_us < 20000)
            pause_us *= 2;
    }
}

/* ------------------------------------------------------------ listener */

struct tiga_listener {
    tiga_channel *ch;
    int32_t slot;
    int32_t pid;
    int64_t start;
    int64_t token;
    uint32_t seen_wake;
    uint64_t seen_version;
    int64_t idle_ms; /* current polling slice */
    int64_t wait_started; /* when the current wait began */
    int64_t last_wait_ns; /* how long the previous wait waited for its news */
};

/* Give our slot back if it is still ours. */
static void release_slot(tiga_listener *l)
{
    tiga_slot *s = &l->ch->slots[l->slot];
    if (atomic_load(&s->token) == l->token && l->pid == plat_getpid()) {
        atomic_store(&s->owner_start, 0);
        atomic_store(&s->owner_pid, 0);
        int64_t t = l->token;
        atomic_compare_exchange_strong(&s->token, &t, 0);
    }
}

static int take_slot(tiga_listener *l)
{
    tiga_slot *slots = l->ch->slots;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++) {
            int64_t t = atomic_load(&slots[i].token);
            if (pass == 0 && t != 0)
                continue;
            if (pass == 1 && (t == 0 || slot_alive(&slots[i], t)))
                continue;
            if (!atomic_compare_exchange_strong(&slots[i].token, &t, l->token))
                continue;
            atomic_store(&slots[i].owner_start, l->start);
            atomic_store(&slots[i].owner_pid, l->pid);
            l->slot = i;
            l->seen_wake = atomic_load(&slots[i].wake) & COUNT_MASK;
            int rc = plat_wakeups_listen(l->ch->wakeups, i);
            if (rc) {
                release_slot(l);
                return tiga_fail(rc, "cannot create the wake-up of slot %d of %s_notify: %s", i,
                                 l->ch->base, tiga_strerror(rc));
            }
            plat_wakeups_ready(l->ch->wakeups, 1);
            return TIGA_OK;
        }
    }
    return tiga_fail(TIGA_ENOSLOT, "all %d listener slots of %s_notify are held by live processes",
                     TIGA_NOTIFY_SLOTS, l->ch->base);
}

int tiga_listener_open(const char *dir, const char *name, const tiga_channel_options *opt,
                       tiga_listener **out)
{
    if (!out)
        return tiga_fail(TIGA_EINVAL, "out is NULL");
    tiga_listener *l = calloc(1, sizeof *l);
    if (!l)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    int rc = tiga_channel_open(dir, name, opt, &l->ch);
    if (rc) {
        free(l);
        return rc;
    }
    l->pid = plat_getpid();
    l->start = plat_process_start_ticks(l->pid);
    l->token = tiga_owner_token(l->pid, l->start);
    l->idle_ms = 1;
    if ((rc = take_slot(l))) {
        tiga_channel_close(l->ch);
        free(l);
        return rc;
    }
    l->seen_version = atomic_load(l->ch->version);
    *out = l;
    return TIGA_OK;
}

void tiga_listener_close(tiga_listener *l)
{
    if (!l)
        return;
    release_slot(l);
    /* the readiness event says whether a listener is left (PROTOCOL section 5) */
    if (l->ch->wakeups) { /* (none kept where there is no such event) */
        int32_t live = 0;
        tiga_notify_live(l->ch->slots, &live);
        plat_wakeups_ready(l->ch->wakeups, live > 0);
    }
    tiga_channel_close(l->ch);
    free(l);
}

int32_t tiga_listener_slot(const tiga_listener *l) { return l->slot; }

tiga_channel *tiga_listener_channel(tiga_listener *l) { return l->ch; }

/* Something new since the last wait?  Updates what was seen. */
static bool news(tiga_listener *l, tiga_slot *s)
{
    uint64_t v = atomic_load(l->ch->version);
    uint32_t w = atomic_load(&s->wake) & COUNT_MASK;
    if (v == l->seen_version && w == l->seen_wake)
        return false;
    l->seen_version = v;
    l->seen_wake = w;
    l->idle_ms = 1;
    l->last_wait_ns = plat_now_ns() - l->wait_started;
    return true;
}

int tiga_listener_wait(tiga_listener *l, int64_t timeout_ms, int64_t spin_us)
{
    if (!l)
        return tiga_fail(TIGA_EINVAL, "NULL listener");
    tiga_slot *s = &l->ch->slots[l->slot];
    if (atomic_load(&s->token) != l->token || atomic_load(&s->owner_pid) != l->pid) {
        /* Someone took the slot over (took us for dead, or the file was
         * reset): register again. */
        int rc = take_slot(l);
        if (rc)
            return rc;
        s = &l->ch->slots[l->slot];
    }
    int64_t quiet = l->last_wait_ns; /* how long the last event took to come */
    l->wait_started = plat_now_ns();
    if (news(l, s))
        return TIGA_OK;
    int64_t now = plat_now_ns();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now + timeout_ms * 1000000;
    /* Spin only while events come close together.  After a quiet spell the
     * next event is not due within a spin, and spinning right after our own
     * write would hold the CPU that the peer we just woke wants. */
    if (quiet > QUIET_NS)
        spin_us = 0;
    if (spin_us > 0) {
        int64_t spin_end = now + spin_us * 1000;
        if (spin_end > deadline)
            spin_end = deadline;
        for (unsigned round = 1; plat_now_ns() < spin_end; round++) {
            for (int i = 0; i < 32; i++)
                plat_cpu_relax();
            if (news(l, s))
                return TIGA_OK;
            /* The peer we just woke may have been queued on this very CPU
             * (the scheduler places a wakee near its waker): give it the CPU
             * now and then instead of spinning in its way. */
            if ((round & 3) == 0)
                plat_yield();
        }
    }
    for (;;) {
        /* Announce a sleeper, then re-check before sleeping. */
        uint32_t w = atomic_load(&s->wake);
        if ((w & COUNT_MASK) != l->seen_wake) {
            news(l, s);
            return TIGA_OK;
        }
        if (!(w & SLEEPER)) {
            if (!atomic_compare_exchange_strong(&s->wake, &w, w | SLEEPER))
                continue;
            w |= SLEEPER;
        }
        if (news(l, s))
            return TIGA_OK;
        now = plat_now_ns();
        if (now >= deadline)
            return TIGA_ETIMEDOUT;
        /* Sleep in slices so that writers that do not signal (the peers'
         * non-Windows builds, a writer that died before signalling) are seen
         * too; the slice grows while nothing happens. */
        int64_t left_ms = (deadline - now + 999999) / 1000000;
        int64_t slice = l->idle_ms < left_ms ? l->idle_ms : left_ms;
        int rc = plat_wakeups_wait(l->ch->wakeups, l->slot, &s->wake, w, slice);
        if (news(l, s))
            return TIGA_OK;
        if (rc == -EINTR)
            return TIGA_EINTR;
        if (rc == -ETIMEDOUT && l->idle_ms < 50)
            l->idle_ms *= 2;
    }
}

/* ------------------------------------------------------------ wait sets */

static plat_wakeups *l_wakeups(tiga_listener *l) { return l->ch->wakeups; }

#define SET_IDLE_MAX_MS 50    /* longest slice while every slot is waited on */
#define SET_POLL_MAX_MS 8     /* longest slice while some are only polled */

typedef struct watch {
    uint64_t key;
    tiga_listener *l;
    int consume;
    int32_t slot;           /* the listener's slot when added */
    uint32_t seen_wake;     /* (consume: the listener's own are used) */
    uint64_t seen_version;
} watch;

struct tiga_waitset {
    plat_multiwait *mw;
    watch *w;
    plat_waitspec *specs;
    int32_t n, cap;
    int64_t idle_ms;
};

int tiga_waitset_open(int32_t flags, tiga_waitset **out)
{
    if (!out || (flags & ~TIGA_WAITSET_POLL))
        return tiga_fail(TIGA_EINVAL, "out is NULL or unknown flags");
    tiga_waitset *ws = calloc(1, sizeof *ws);
    if (!ws)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    int rc = plat_multiwait_open((flags & TIGA_WAITSET_POLL) != 0, &ws->mw);
    if (rc) {
        free(ws);
        return tiga_fail(rc, "cannot make a wait set: %s", tiga_strerror(rc));
    }
    ws->idle_ms = 1;
    *out = ws;
    return TIGA_OK;
}

void tiga_waitset_close(tiga_waitset *ws)
{
    if (!ws)
        return;
    plat_multiwait_close(ws->mw);
    free(ws->w);
    free(ws->specs);
    free(ws);
}

void tiga_waitset_kick(tiga_waitset *ws)
{
    if (ws)
        plat_multiwait_kick(ws->mw);
}

int32_t tiga_waitset_size(const tiga_waitset *ws) { return ws ? ws->n : 0; }

static tiga_slot *watch_slot(const watch *w)
{
    return &w->l->ch->slots[w->consume ? w->l->slot : w->slot];
}

/* Something new for this watch since it last said so?  Updates what it saw. */
static bool watch_news(watch *w)
{
    tiga_slot *s = watch_slot(w);
    if (w->consume)
        return news(w->l, s);
    uint64_t v = atomic_load(w->l->ch->version);
    uint32_t k = atomic_load(&s->wake) & COUNT_MASK;
    if (v == w->seen_version && k == w->seen_wake)
        return false;
    w->seen_version = v;
    w->seen_wake = k;
    return true;
}

int tiga_waitset_add(tiga_waitset *ws, tiga_listener *l, uint64_t key, int32_t flags,
                     int32_t *ready)
{
    if (!ws || !l || (flags & ~TIGA_WATCH_CONSUME))
        return tiga_fail(TIGA_EINVAL, "NULL argument or unknown flags");
    for (int32_t i = 0; i < ws->n; i++)
        if (ws->w[i].key == key)
            return tiga_fail(TIGA_EINVAL, "key %llu is watched already", (unsigned long long)key);
    if (ws->n == ws->cap) {
        if (ws->cap >= INT32_MAX / 2)
            return tiga_fail(TIGA_ENOMEM, "too many watches");
        int32_t cap = ws->cap ? ws->cap * 2 : 16;
        watch *nw = realloc(ws->w, (size_t)cap * sizeof *nw);
        if (!nw)
            return tiga_fail(TIGA_ENOMEM, "out of memory");
        ws->w = nw;
        plat_waitspec *ns = realloc(ws->specs, (size_t)cap * sizeof *ns);
        if (!ns)
            return tiga_fail(TIGA_ENOMEM, "out of memory");
        ws->specs = ns;
        ws->cap = cap;
    }
    watch *w = &ws->w[ws->n];
    *w = (watch){.key = key, .l = l, .consume = (flags & TIGA_WATCH_CONSUME) != 0, .slot = l->slot};
    w->seen_wake = atomic_load(&l->ch->slots[l->slot].wake) & COUNT_MASK;
    w->seen_version = atomic_load(l->ch->version);
    ws->n++;
    if (ready) {
        /* a consuming watch carries the listener's past: news since the
         * listener's last wait count, and are taken now */
        *ready = w->consume && news(l, watch_slot(w));
    }
    return TIGA_OK;
}

int tiga_waitset_remove(tiga_waitset *ws, uint64_t key)
{
    if (!ws)
        return tiga_fail(TIGA_EINVAL, "NULL wait set");
    for (int32_t i = 0; i < ws->n; i++)
        if (ws->w[i].key == key) {
            ws->w[i] = ws->w[--ws->n];
            return TIGA_OK;
        }
    return tiga_fail(TIGA_EINVAL, "key %llu is not watched", (unsigned long long)key);
}

static int32_t collect(tiga_waitset *ws, uint64_t *keys, int32_t cap)
{
    int32_t c = 0;
    for (int32_t i = 0; i < ws->n && c < cap; i++)
        if (watch_news(&ws->w[i]))
            keys[c++] = ws->w[i].key;
    return c;
}

int tiga_waitset_wait(tiga_waitset *ws, int64_t timeout_ms, uint64_t *keys, int32_t cap,
                      int32_t *n)
{
    if (!ws || !n || cap < 0 || (cap > 0 && !keys))
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    *n = 0;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : plat_now_ns() + timeout_ms * 1000000;
    for (;;) {
        if ((*n = collect(ws, keys, cap)) > 0) {
            ws->idle_ms = 1;
            return TIGA_OK;
        }
        /* announce a sleeper on every word, then look again before sleeping */
        for (int32_t i = 0; i < ws->n; i++) {
            watch *w = &ws->w[i];
            tiga_slot *s = watch_slot(w);
            uint32_t v = atomic_load(&s->wake);
            while (!(v & SLEEPER) && !atomic_compare_exchange_weak(&s->wake, &v, v | SLEEPER))
                ;
            ws->specs[i] = (plat_waitspec){l_wakeups(w->l), w->consume ? w->l->slot : w->slot,
                                           &s->wake, v | SLEEPER};
        }
        if ((*n = collect(ws, keys, cap)) > 0) {
            ws->idle_ms = 1;
            return TIGA_OK;
        }
        int64_t now = plat_now_ns();
        if (now >= deadline)
            return TIGA_ETIMEDOUT;
        int64_t left_ms = deadline == INT64_MAX ? INT64_MAX : (deadline - now + 999999) / 1000000;
        /* with nothing watched only a kick or the deadline can end the wait */
        int64_t slice = ws->n == 0 ? (deadline == INT64_MAX ? -1 : left_ms)
                                   : (ws->idle_ms < left_ms ? ws->idle_ms : left_ms);
        int complete = 1;
        int rc = plat_multiwait_wait(ws->mw, ws->specs, ws->n, slice, &complete);
        if (rc == 1) {
            *n = collect(ws, keys, cap);
            return TIGA_OK;
        }
        if (rc == -ETIMEDOUT) {
            /* writers that do not signal are seen by the version word, within a
             * slice that grows while nothing happens */
            int64_t most = complete ? SET_IDLE_MAX_MS : SET_POLL_MAX_MS;
            ws->idle_ms = ws->idle_ms * 2 < most ? ws->idle_ms * 2 : most;
        }
    }
}

/* ------------------------------------------------------------ event names */

int tiga_event_name(const char *notify_path, int32_t slot, char *out, size_t cap)
{
    if (!notify_path || !out || slot < -1 || slot >= TIGA_NOTIFY_SLOTS)
        return tiga_fail(TIGA_EINVAL, "notify_path and out are needed, slot is -1..%d",
                         TIGA_NOTIFY_SLOTS - 1);
    char *p = NULL;
    int rc = plat_event_path(notify_path, &p);
    if (rc)
        return tiga_fail(rc, "cannot make %s absolute: %s", notify_path, tiga_strerror(rc));
    uint64_t h = tiga_wyhash(p, strlen(p), 0);
    free(p);
    int n = slot < 0 ? snprintf(out, cap, "tiga_wait_handle_file_%016llx_listener_ready",
                                (unsigned long long)h)
                     : snprintf(out, cap, "tiga_wait_handle_file_%016llx_slot_%d",
                                (unsigned long long)h, (int)slot);
    if (n < 0 || (size_t)n >= cap)
        return tiga_fail(TIGA_EINVAL, "an event name needs %d bytes, %zu given", n + 1, cap);
    return TIGA_OK;
}

/* ------------------------------------------------------------ directory watch */

struct tiga_dirwatch {
    plat_dirwatch *pw;
};

int tiga_dirwatch_open(const char *dir, tiga_dirwatch **out)
{
    if (!dir || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    tiga_dirwatch *w = calloc(1, sizeof *w);
    if (!w)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    int rc = plat_dirwatch_open(dir, &w->pw);
    if (rc) {
        free(w);
        return tiga_fail(rc, "cannot watch %s: %s", dir, tiga_strerror(rc));
    }
    *out = w;
    return TIGA_OK;
}

int tiga_dirwatch_wait(tiga_dirwatch *w, int64_t timeout_ms)
{
    if (!w)
        return tiga_fail(TIGA_EINVAL, "NULL watch");
    int rc = plat_dirwatch_wait(w->pw, timeout_ms);
    if (rc == 0)
        return TIGA_OK;
    if (rc == -ETIMEDOUT)
        return TIGA_ETIMEDOUT;
    if (rc == -EINTR)
        return TIGA_EINTR;
    return tiga_fail(rc, "watching a directory failed: %s", tiga_strerror(rc));
}

void tiga_dirwatch_close(tiga_dirwatch *w)
{
    if (!w)
        return;
    plat_dirwatch_close(w->pw);
    free(w);
}
