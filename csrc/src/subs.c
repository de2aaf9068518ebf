/* SPDX-License-Identifier: MIT */
/* Declared subscribers: an extension of ours, in a fifth file that the peers
 * never open, tiga_<name>_subs (docs/PROTOCOL-NOTES.md, "Declared
 * subscribers").  A subscriber publishes there the last id it has read; our
 * writers keep every entry a live declared subscriber has not read yet, up to
 * the capacity, and may trim the ones all of them have read sooner than the
 * minimum age (down to the writer's read_min_age).
 *
 * Layout: a 64-byte header (magic "TIGASUB1", u32 slot count 128, u32 slot
 * size 64, zeros) and 128 slots of 64 bytes:
 *   0  i64 token        0 = free; taken and given back like a listener slot
 *   8  i64 owner_start  .NET UTC ticks, as in the notify file
 *   16 i32 owner_pid
 *   20 i32 (zero)
 *   24 i64 position     the last id the subscriber has read
 *   32..63  zeros
 * A file whose header is not that is ignored by writers (the minimum age
 * alone decides) and refused to subscribers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SUBS_MAGIC "TIGASUB1"
#define SUBS_HEADER 64
#define SUBS_SWEEP_NS INT64_C(250000000)  /* dead subscribers are looked for this often */
#define SUBS_LOOK_NS INT64_C(10000000)    /* a missing file is looked for this often */
#define SUBS_SIG_NS INT64_C(1000000)      /* and the listener slots looked at this often */

typedef struct subs_slot {
    _Atomic int64_t token;
    _Atomic int64_t owner_start;
    _Atomic int32_t owner_pid;
    int32_t zero;
    _Atomic int64_t position;
    uint8_t reserved[32];
} subs_slot;

_Static_assert(sizeof(subs_slot) == TIGA_SUBS_SLOT_SIZE, "a subscriber slot is 64 bytes");

struct tiga_subs {
    plat_fd fd;
    uint8_t *map;
    subs_slot *slots;
    char *path;
};

static char *subs_path(const char *base)
{
    size_t n = strlen(base);
    char *p = malloc(n + 6);
    if (p) {
        memcpy(p, base, n);
        memcpy(p + n, "_subs", 6);
    }
    return p;
}

static bool header_ok(const uint8_t *h)
{
    uint32_t count, size;
    memcpy(&count, h + 8, 4);
    memcpy(&size, h + 12, 4);
    return memcmp(h, SUBS_MAGIC, 8) == 0 && count == TIGA_SUBS_SLOTS &&
           size == TIGA_SUBS_SLOT_SIZE;
}

static void subs_free(tiga_subs *s)
{
    if (!s)
        return;
    if (s->map)
        plat_unmap(s->map, TIGA_SUBS_SIZE);
    plat_close(s->fd);
    free(s->path);
    free(s);
}

/* Map the subscribers file of channel `base`.  create: make it when missing
 * (a subscriber); otherwise only an existing one (a writer).  A file that is
 * not one of ours fails with TIGA_ECORRUPT. */
static int subs_open(const char *base, const tiga_channel_options *o, bool create,
                     tiga_subs **out)
{
    *out = NULL;
    tiga_subs *s = calloc(1, sizeof *s);
    if (!s)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    s->fd = PLAT_NO_FD;
    s->path = subs_path(base);
    if (!s->path) {
        free(s);
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    }
    int created = 0, rc;
    rc = create ? plat_open_file(s->path, o->mode, o->private_files, &created, &s->fd)
                : plat_open_rw(s->path, &s->fd);
    if (rc) {
        if (rc == PLAT_ESYMLINK)
            rc = tiga_fail(-ELOOP, "%s is a symbolic link: never opened through links", s->path);
        else if (rc == PLAT_ENOTREG)
            rc = tiga_fail(-EINVAL, "%s is not a regular file", s->path);
        else if (rc == PLAT_EFOREIGN)
            rc = tiga_fail(-EPERM, "%s belongs to another user (private directory)", s->path);
        else
            rc = tiga_fail(rc, "cannot open %s: %s", s->path, tiga_strerror(rc));
        subs_free(s);
        return rc;
    }
    uint64_t size = 0;
    rc = plat_file_size(s->fd, &size);
    if (rc == 0 && size == 0 && create) /* ours, or another subscriber's just made */
        rc = plat_allocate(s->fd, TIGA_SUBS_SIZE);
    if (rc == 0)
        rc = plat_file_size(s->fd, &size);
    if (rc) {
        rc = tiga_fail(rc, "cannot size %s: %s", s->path, tiga_strerror(rc));
        subs_free(s);
        return rc;
    }
    if (size < TIGA_SUBS_SIZE) {
        rc = tiga_fail(size == 0 ? TIGA_ETRUNCATED : TIGA_ECORRUPT,
                       "%s has %llu bytes, a subscribers file has %d", s->path,
                       (unsigned long long)size, TIGA_SUBS_SIZE);
        subs_free(s);
        return rc;
    }
    void *m;
    if ((rc = plat_map(s->fd, TIGA_SUBS_SIZE, &m))) {
        rc = tiga_fail(rc, "cannot map %s: %s", s->path, tiga_strerror(rc));
        subs_free(s);
        return rc;
    }
    s->map = m;
    s->slots = (subs_slot *)(s->map + SUBS_HEADER);
    if (!header_ok(s->map)) {
        static const uint8_t zeros[SUBS_HEADER];
        if (create && memcmp(s->map, zeros, SUBS_HEADER) == 0) {
            /* new (ours or a racing subscriber's): the same bytes either way */
            uint8_t h[SUBS_HEADER] = {0};
            uint32_t count = TIGA_SUBS_SLOTS, slot = TIGA_SUBS_SLOT_SIZE;
            memcpy(h, SUBS_MAGIC, 8);
            memcpy(h + 8, &count, 4);
            memcpy(h + 12, &slot, 4);
            memcpy(s->map, h, SUBS_HEADER);
        } else if (!create && memcmp(s->map, zeros, SUBS_HEADER) == 0) {
            /* being made: nobody is in it yet */
        } else {
            rc = tiga_fail(TIGA_ECORRUPT, "%s is not a subscribers file (its header is not ours)",
                           s->path);
            subs_free(s);
            return rc;
        }
    }
    *out = s;
    return TIGA_OK;
}

static void clear_subs_slot(subs_slot *s, int64_t token)
{
    atomic_store(&s->owner_start, 0);
    atomic_store(&s->owner_pid, 0);
    int64_t t = token;
    atomic_compare_exchange_strong(&s->token, &t, 0);
}

/* ------------------------------------------------------------ the writer's side */

/* A cheap signature of the notify file's tokens: it changes when a listener
 * comes or goes, and a new subscriber takes a listener slot. */
static uint64_t notify_signature(const tiga_channel *ch)
{
    uint64_t sig = 0;
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        sig = sig * 31 + (uint64_t)atomic_load_explicit(&ch->slots[i].token,
                                                        memory_order_relaxed);
    return sig;
}

void ch_subs_close(tiga_channel *ch)
{
    subs_free(ch->subs);
    ch->subs = NULL;
}

/* Clear the slots of subscribers that are gone; a file that lost its name
 * (deleted: a new one may come) is let go of. */
static void sweep(tiga_channel *ch)
{
    tiga_subs *s = ch->subs;
    if (plat_file_linked(s->fd, s->path) == 0) {
        ch_subs_close(ch);
        return;
    }
    for (int i = 0; i < TIGA_SUBS_SLOTS; i++) {
        int64_t t = atomic_load(&s->slots[i].token);
        if (t == 0)
            continue;
        if (!tiga_owner_alive(atomic_load(&s->slots[i].owner_pid),
                              atomic_load(&s->slots[i].owner_start), t))
            clear_subs_slot(&s->slots[i], t);
    }
}

int ch_subs_keep_from(tiga_channel *ch, int64_t last_id, bool force_sweep, int64_t *keep_from,
                      int32_t *live)
{
    *keep_from = 0;
    *live = 0;
    int64_t now = plat_now_ns();
    if (!ch->subs) {
        if (now - ch->subs_sig_at < SUBS_SIG_NS && !force_sweep)
            return 0; /* looked a moment ago: writes in a burst pay nothing */
        ch->subs_sig_at = now;
        uint64_t sig = notify_signature(ch);
        if (sig == ch->subs_sig && now - ch->subs_looked < SUBS_LOOK_NS && !force_sweep)
            return 0;
        ch->subs_sig = sig;
        ch->subs_looked = now;
        tiga_subs *s;
        if (subs_open(ch->base, &ch->opt, false, &s) != 0) {
            tiga_clear_error(); /* none (or not ours): the minimum age alone decides */
            return 0;
        }
        ch->subs = s;
        ch->subs_swept = now;
    }
    if (force_sweep || now - ch->subs_swept >= SUBS_SWEEP_NS) {
        ch->subs_swept = now;
        sweep(ch);
        if (!ch->subs)
            return 0;
    }
    int64_t low = INT64_MAX;
    int32_t n = 0;
    for (int i = 0; i < TIGA_SUBS_SLOTS; i++) {
        subs_slot *s = &ch->subs->slots[i];
        if (atomic_load(&s->token) == 0)
            continue;
        int64_t p = atomic_load(&s->position);
        /* any number from a file: a position outside the log (a reset log's
         * old ids, garbage) counts as nothing read, which only keeps more */
        if (p < 0 || p > last_id)
            p = 0;
        if (p < low)
            low = p;
        n++;
    }
    *live = n;
    *keep_from = n ? low + 1 : 0;
    return 0;
}

/* Pacing.  Every write hashes, and every read verifies, the whole payload,
 * and the payload holds every entry the slowest declared subscriber has not
 * read.  A writer that runs ahead of a subscriber that keeps up makes both pay
 * for those entries again at each write: with 1 MiB entries, one entry of lag
 * halves the stream's rate, and the lag tends to grow.  So while that
 * subscriber has PACE_BYTES or more unread and its position moved in the last
 * PACE_ACTIVE_NS, the writer waits for it to read on, up to pace_ms per write.
 * A subscriber that stopped (SIGSTOP, a debugger, a long pause) is waited for
 * at most once: its position does not move. */
#define PACE_BYTES (256 * 1024)
#define PACE_ACTIVE_NS INT64_C(10000000)
#define PACE_SPIN_NS INT64_C(200000) /* then pauses of 50 us */

static bool pace_moved(tiga_channel *ch, int64_t keep_from, int64_t now)
{
    if (keep_from != ch->pace_keep) {
        ch->pace_keep = keep_from;
        ch->pace_moved = now;
    }
    return now - ch->pace_moved < PACE_ACTIVE_NS;
}

bool ch_subs_pace_wanted(tiga_channel *ch, int64_t keep_from)
{
    return keep_from > 0 && pace_moved(ch, keep_from, plat_now_ns()) &&
           lb_buf_bytes_from(&ch->cache, keep_from) >= PACE_BYTES;
}

void ch_subs_pace(tiga_channel *ch)
{
    int64_t start = plat_now_ns(), deadline = start + ch->opt.pace_ms * 1000000;
    for (int spins = 0;; spins++) {
        /* the lock only for a look: a subscriber of this handle reads meanwhile */
        plat_mutex_lock(&ch->lock);
        int64_t keep = 0;
        int32_t live = 0;
        int64_t last = ch->cache.len ? ch->cache.h.last_id : 0;
        bool wait = ch_subs_keep_from(ch, last, false, &keep, &live) == 0 &&
                    ch_subs_pace_wanted(ch, keep);
        plat_mutex_unlock(&ch->lock);
        int64_t now = plat_now_ns();
        if (!wait || now >= deadline) {
            atomic_store(&ch->pace_hint, false);
            return;
        }
        if (spins < 64)
            plat_cpu_relax();
        else if (now - start < PACE_SPIN_NS)
            plat_yield();
        else
            plat_sleep_us(50);
    }
}

/* ------------------------------------------------------------ the subscriber's side */

struct tiga_subscriber {
    tiga_subs *subs;
    int32_t slot;
    int32_t pid;
    int64_t token;
};

int tiga_subscriber_open(tiga_channel *ch, int64_t position, tiga_subscriber **out)
{
    if (!ch || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    if (position < 0)
        return tiga_fail(TIGA_EINVAL, "position %lld is negative", (long long)position);
    tiga_subscriber *sub = calloc(1, sizeof *sub);
    if (!sub)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    int rc = subs_open(ch->base, &ch->opt, true, &sub->subs);
    if (rc) {
        free(sub);
        return rc;
    }
    sub->pid = plat_getpid();
    int64_t start = plat_process_start_ticks(sub->pid);
    sub->token = tiga_owner_token(sub->pid, start);
    subs_slot *slots = sub->subs->slots;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < TIGA_SUBS_SLOTS; i++) {
            int64_t t = atomic_load(&slots[i].token);
            if (pass == 0 && t != 0)
                continue;
            if (pass == 1 && (t == 0 || tiga_owner_alive(atomic_load(&slots[i].owner_pid),
                                                         atomic_load(&slots[i].owner_start), t)))
                continue;
            /* the position goes in first: a writer that sees the token then
             * keeps at most more than needed */
            atomic_store(&slots[i].position, 0);
            if (!atomic_compare_exchange_strong(&slots[i].token, &t, sub->token))
                continue;
            atomic_store(&slots[i].position, position);
            atomic_store(&slots[i].owner_start, start);
            atomic_store(&slots[i].owner_pid, sub->pid);
            sub->slot = i;
            *out = sub;
            return TIGA_OK;
        }
    }
    rc = tiga_fail(TIGA_ENOSLOT, "all %d subscriber slots of %s are held by live processes",
                   TIGA_SUBS_SLOTS, sub->subs->path);
    subs_free(sub->subs);
    free(sub);
    return rc;
}

void tiga_subscriber_close(tiga_subscriber *sub)
{
    if (!sub)
        return;
    subs_slot *s = &sub->subs->slots[sub->slot];
    if (atomic_load(&s->token) == sub->token && sub->pid == plat_getpid())
        clear_subs_slot(s, sub->token);
    subs_free(sub->subs);
    free(sub);
}

int tiga_subscriber_set(tiga_subscriber *sub, int64_t position)
{
    if (!sub)
        return tiga_fail(TIGA_EINVAL, "NULL subscriber");
    if (position < 0)
        return tiga_fail(TIGA_EINVAL, "position %lld is negative", (long long)position);
    subs_slot *s = &sub->subs->slots[sub->slot];
    if (atomic_load(&s->token) != sub->token)
        return tiga_fail(TIGA_ENOTREADY,
                         "slot %d of %s was taken from this subscriber (it was taken for dead)",
                         sub->slot, sub->subs->path);
    atomic_store(&s->position, position);
    return TIGA_OK;
}

int32_t tiga_subscriber_slot(const tiga_subscriber *sub) { return sub ? sub->slot : -1; }

int tiga_channel_subscribers(tiga_channel *ch, int32_t *live, int64_t *lowest)
{
    if (!ch || !live || !lowest)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    plat_mutex_lock(&ch->lock);
    int rc = ch_load(ch);
    int64_t keep = 0;
    if (rc == 0)
        rc = ch_subs_keep_from(ch, ch->cache.len ? ch->cache.h.last_id : 0, true, &keep, live);
    plat_mutex_unlock(&ch->lock);
    *lowest = keep ? keep - 1 : -1;
    return rc;
}
