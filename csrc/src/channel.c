/* SPDX-License-Identifier: MIT */
/* A channel: the four files, the version word, the double buffer, the
 * serialised append and the verified read. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define READ_RETRIES 3          /* checksum mismatches under an unchanged version */
#define HEADER_GUARD 32         /* bytes compared to trust the cached payload */

static const char *SUFFIX[4] = {"_state", "_data_0", "_data_1", "_notify"};

/* Times in ms above this would overflow as nanoseconds next to a clock value. */
#define TIGA_MAX_MS (INT64_MAX / 1000000 / 4)

void tiga_channel_options_init(tiga_channel_options *o)
{
    memset(o, 0, sizeof *o);
    o->capacity = TIGA_DEFAULT_CAPACITY;
    o->min_age_ms = 1000;
    o->reader_grace_ms = 1000;
    o->lock_timeout_ms = 10000;
    o->flush = 0;
    o->create_dir = 1;
    o->write_timeout_ms = 0;
    o->mode = 0600;
    o->private_files = 0;
    o->read_min_age_ms = -1;
    o->pace_ms = 1;
}

int64_t tiga_now_ns(void) { return plat_now_ns(); }

int tiga_validate_name(const char *name, size_t len)
{
    if (!name || len == 0)
        return tiga_fail(TIGA_EBADNAME, "the name is empty");
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return tiga_fail(TIGA_EBADNAME, "the name '%.*s' is not allowed", (int)len, name);
    if (len + 12 > TIGA_MAX_NAME_BYTES)
        return tiga_fail(TIGA_EBADNAME,
                         "the name is %zu bytes; 'tiga_<name>_data_0' must fit in 255 bytes "
                         "(names up to 243 bytes)",
                         len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\')
            return tiga_fail(TIGA_EBADNAME, "the name contains a path separator at byte %zu", i);
        if (c == 0)
            return tiga_fail(TIGA_EBADNAME, "the name contains a NUL byte at byte %zu", i);
        if (c < 0x20 || c == 0x7f)
            return tiga_fail(TIGA_EBADNAME, "the name contains control character 0x%02x at byte %zu",
                             c, i);
        /* C1 controls U+0080..U+009F in UTF-8 */
        if (c == 0xc2 && i + 1 < len && (unsigned char)name[i + 1] >= 0x80 &&
            (unsigned char)name[i + 1] <= 0x9f)
            return tiga_fail(TIGA_EBADNAME, "the name contains a control character at byte %zu", i);
    }
    return TIGA_OK;
}

static char *path_of(const char *base, const char *suffix)
{
    size_t a = strlen(base), b = strlen(suffix);
    char *p = malloc(a + b + 1);
    if (p) {
        memcpy(p, base, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

/* The append lock within timeout_ms (-1: no limit).  Neither flock nor
 * LockFileEx waits with a timeout: try and back off (a yield, then sleeps
 * growing to 1 ms) until the deadline.  0, -ETIMEDOUT or -errno. */
static int lock_file(plat_fd fd, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : plat_now_ns() + timeout_ms * 1000000;
    int64_t pause_us = 0;
    for (;;) {
        int rc = plat_try_lock_file(fd);
        if (rc != -EAGAIN)
            return rc;
        if (plat_now_ns() >= deadline)
            return -ETIMEDOUT;
        if (pause_us == 0) {
            plat_yield();
            pause_us = 5;
        } else {
            plat_sleep_us(pause_us);
            if (pause_us < 1000)
                pause_us *= 2;
        }
    }
}

/* The failure of plat_open_file / plat_open_rw on path, as a status (the
 * PLAT_E* codes become -errno values with a detail that says why). */
static int open_failed(const char *path, int rc)
{
    switch (rc) {
    case PLAT_ESYMLINK:
        return tiga_fail(-ELOOP,
                         "%s is a symbolic link: channel files are never opened through links "
                         "(another user's link could point at any file of ours)",
                         path);
    case PLAT_ENOTREG:
        return tiga_fail(-EINVAL, "%s is not a regular file", path);
    case PLAT_EFOREIGN:
        return tiga_fail(-EPERM,
                         "%s belongs to another user, and this channel's directory is private",
                         path);
    default:
        return tiga_fail(rc, "cannot open %s: %s", path, tiga_strerror(rc));
    }
}

/* Open one file, creating it when missing; a new (empty) file gets `want`
 * bytes, allocated on disk when `allocate` (the state and notify files,
 * which are touched through their mappings unguarded: an existing sparse
 * one gets its blocks too).  *size gets its size. */
static int open_file(const char *base, int which, uint64_t want, bool allocate,
                     const tiga_channel_options *o, plat_fd *fd, uint64_t *size)
{
    char *path = path_of(base, SUFFIX[which]);
    if (!path)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    int created = 0;
    int rc = plat_open_file(path, o->mode, o->private_files, &created, fd);
    if (rc) {
        rc = open_failed(path, rc);
        free(path);
        return rc;
    }
    rc = plat_file_size(*fd, size);
    if (rc == 0 && *size == 0 && want)
        rc = allocate ? plat_allocate(*fd, want) : plat_set_size(*fd, want);
    else if (rc == 0 && allocate && *size == want)
        rc = plat_allocate(*fd, want);
    if (rc == 0)
        rc = plat_file_size(*fd, size);
    if (rc == -ENOSPC)
        tiga_fail(rc, "no space left on the device for %s", path);
    else if (rc)
        tiga_fail(rc, "cannot size %s: %s", path, tiga_strerror(rc));
    free(path);
    return rc;
}

static int fixed_size(const char *base, int which, uint64_t size, uint64_t want)
{
    if (size == want)
        return 0;
    return tiga_fail(size < want ? TIGA_ETRUNCATED : TIGA_ECORRUPT,
                     "%s%s has %llu bytes, the protocol needs exactly %llu", base, SUFFIX[which],
                     (unsigned long long)size, (unsigned long long)want);
}

int tiga_channel_open(const char *dir, const char *name, const tiga_channel_options *opt,
                      tiga_channel **out)
{
    if (!out)
        return tiga_fail(TIGA_EINVAL, "out is NULL");
    if (!dir || !dir[0])
        return tiga_fail(TIGA_EINVAL, "the ipc directory is required");
    if (!name)
        return tiga_fail(TIGA_EBADNAME, "the name is NULL");
    int rc = tiga_validate_name(name, strlen(name));
    if (rc)
        return rc;
    tiga_channel_options o;
    if (opt)
        o = *opt;
    else
        tiga_channel_options_init(&o);
    if (o.capacity == 0)
        o.capacity = TIGA_DEFAULT_CAPACITY;
    if (o.capacity < TIGA_MIN_CAPACITY || o.capacity > TIGA_MAX_CAPACITY)
        return tiga_fail(TIGA_EINVAL, "capacity %llu is out of range (%d bytes to 1 GiB)",
                         (unsigned long long)o.capacity, TIGA_MIN_CAPACITY);
    if (o.min_age_ms < 0 || o.reader_grace_ms < 0 || o.write_timeout_ms < 0)
        return tiga_fail(TIGA_EINVAL,
                         "min_age_ms, reader_grace_ms and write_timeout_ms must not be negative");
    if (o.read_min_age_ms < -1)
        return tiga_fail(TIGA_EINVAL, "read_min_age_ms must be -1 (min_age_ms) or more");
    if (o.pace_ms < 0)
        return tiga_fail(TIGA_EINVAL, "pace_ms must not be negative");
    if (o.min_age_ms > TIGA_MAX_MS || o.reader_grace_ms > TIGA_MAX_MS ||
        o.write_timeout_ms > TIGA_MAX_MS || o.lock_timeout_ms > TIGA_MAX_MS ||
        o.read_min_age_ms > TIGA_MAX_MS || o.pace_ms > TIGA_MAX_MS)
        return tiga_fail(TIGA_EINVAL, "a time option is above %lld ms (about 73 years)",
                         (long long)TIGA_MAX_MS);

    if (o.mode == 0)
        o.mode = 0600;
    if (o.mode & ~0777u)
        return tiga_fail(TIGA_EINVAL, "mode 0%o has bits other than permissions", o.mode);
    if (o.create_dir) {
        rc = plat_mkdirs(dir, o.mode | ((o.mode & 0444u) >> 2));
        if (rc)
            return tiga_fail(rc, "cannot create the ipc directory %s: %s", dir, tiga_strerror(rc));
    }

    tiga_channel *ch = calloc(1, sizeof *ch);
    if (!ch)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    ch->fd_state = ch->fd_notify = ch->fd_data[0] = ch->fd_data[1] = ch->fd_lock = PLAT_NO_FD;
    ch->opt = o;
    size_t dl = strlen(dir), nl = strlen(name);
    ch->base = malloc(dl + nl + 7);
    if (!ch->base) {
        free(ch);
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    }
    sprintf(ch->base, "%s%stiga_%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
    if ((rc = plat_mutex_init(&ch->lock))) {
        free(ch->base);
        free(ch);
        return tiga_fail(rc, "cannot create a mutex");
    }
    if ((rc = plat_mutex_init(&ch->gq_lock))) {
        plat_mutex_destroy(&ch->lock);
        free(ch->base);
        free(ch);
        return tiga_fail(rc, "cannot create a mutex");
    }

    uint64_t size;
    if ((rc = open_file(ch->base, 0, TIGA_STATE_SIZE, true, &o, &ch->fd_state, &size)) ||
        (rc = fixed_size(ch->base, 0, size, TIGA_STATE_SIZE)))
        goto fail;
    if ((rc = open_file(ch->base, 1, o.capacity, false, &o, &ch->fd_data[0], &size)))
        goto fail;
    if (size < 64) {
        rc = tiga_fail(TIGA_ETRUNCATED, "%s_data_0 has %llu bytes, too small for a channel",
                       ch->base, (unsigned long long)size);
        goto fail;
    }
    /* a bigger file (a peer's, maybe sparse) is used up to the payload limit */
    ch->capacity = size > TIGA_MAX_CAPACITY ? TIGA_MAX_CAPACITY : size;
    if ((rc = open_file(ch->base, 2, ch->capacity, false, &o, &ch->fd_data[1], &size)))
        goto fail;
    if (size < ch->capacity) {
        rc = tiga_fail(TIGA_ETRUNCATED, "%s_data_1 has %llu bytes, data_0 has %llu", ch->base,
                       (unsigned long long)size, (unsigned long long)ch->capacity);
        goto fail;
    }
    for (unsigned i = 0; i < 2; i++) {
        void *dm;
        if ((rc = plat_map(ch->fd_data[i], (size_t)ch->capacity, &dm))) {
            tiga_fail(rc, "cannot map %s_data_%u: %s", ch->base, i, tiga_strerror(rc));
            goto fail;
        }
        ch->data[i] = dm;
    }
    if ((rc = plat_map_guard())) {
        tiga_fail(rc, "cannot install the SIGBUS handler: %s", tiga_strerror(rc));
        goto fail;
    }
    if ((rc = open_file(ch->base, 3, TIGA_NOTIFY_SIZE, true, &o, &ch->fd_notify, &size)) ||
        (rc = fixed_size(ch->base, 3, size, TIGA_NOTIFY_SIZE)))
        goto fail;
    void *m;
    if ((rc = plat_map(ch->fd_state, TIGA_STATE_SIZE, &m))) {
        tiga_fail(rc, "cannot map %s_state: %s", ch->base, tiga_strerror(rc));
        goto fail;
    }
    ch->version = (_Atomic uint64_t *)m;
    ch->readers = (_Atomic int32_t *)((char *)m + 8);
    if ((rc = plat_map(ch->fd_notify, TIGA_NOTIFY_SIZE, &m))) {
        tiga_fail(rc, "cannot map %s_notify: %s", ch->base, tiga_strerror(rc));
        goto fail;
    }
    ch->slots = (tiga_slot *)m;
    {
        char *np = path_of(ch->base, SUFFIX[3]);
        rc = np ? plat_wakeups_open(np, &ch->wakeups) : TIGA_ENOMEM;
        free(np);
        if (rc) {
            tiga_fail(rc, "cannot set up the wake-ups of %s_notify: %s", ch->base,
                      tiga_strerror(rc));
            goto fail;
        }
    }
    ch->cache.foreign_clocks = true;
    tiga_new_guid(ch->instance);
    *out = ch;
    return TIGA_OK;
fail:
    tiga_channel_close(ch);
    return rc;
}

void tiga_channel_close(tiga_channel *ch)
{
    if (!ch)
        return;
    ch_subs_close(ch);
    plat_unmap((void *)ch->version, TIGA_STATE_SIZE);
    plat_wakeups_close(ch->wakeups);
    plat_unmap(ch->slots, TIGA_NOTIFY_SIZE);
    plat_unmap(ch->data[0], (size_t)ch->capacity);
    plat_unmap(ch->data[1], (size_t)ch->capacity);
    plat_close(ch->fd_state);
    plat_close(ch->fd_lock);
    plat_close(ch->fd_notify);
    plat_close(ch->fd_data[0]);
    plat_close(ch->fd_data[1]);
    lb_buf_free(&ch->cache);
    plat_mutex_destroy(&ch->lock);
    plat_mutex_destroy(&ch->gq_lock);
    free(ch->base);
    free(ch);
}

uint64_t tiga_channel_capacity(const tiga_channel *ch) { return ch->capacity; }

int tiga_channel_linked(tiga_channel *ch, int32_t *linked)
{
    if (!ch || !linked)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    const plat_fd fds[4] = {ch->fd_state, ch->fd_data[0], ch->fd_data[1], ch->fd_notify};
    *linked = 1;
    for (unsigned i = 0; i < 4; i++) {
        char *path = path_of(ch->base, SUFFIX[i]);
        if (!path)
            return tiga_fail(TIGA_ENOMEM, "out of memory");
        int rc = plat_file_linked(fds[i], path);
        free(path);
        if (rc < 0)
            return tiga_fail(rc, "cannot stat %s%s: %s", ch->base, SUFFIX[i], tiga_strerror(rc));
        if (rc == 0)
            *linked = 0;
    }
    return TIGA_OK;
}

uint64_t tiga_channel_version(const tiga_channel *ch) { return atomic_load(ch->version); }

int tiga_channel_set_min_age(tiga_channel *ch, int64_t min_age_ms)
{
    if (min_age_ms < 0 || min_age_ms > TIGA_MAX_MS)
        return tiga_fail(TIGA_EINVAL, "min_age_ms must be between 0 and %lld",
                         (long long)TIGA_MAX_MS);
    plat_mutex_lock(&ch->lock);
    ch->opt.min_age_ms = min_age_ms;
    ch->cache.old_cnt = 0; /* a longer minimum age can make old entries young again */
    plat_mutex_unlock(&ch->lock);
    return TIGA_OK;
}

/* ---- reader counters: signed, never below zero, repaired if a peer wrapped them */

static void reader_enter(tiga_channel *ch, unsigned idx)
{
    /* A counter at INT32_MAX is garbage (nobody has 2^31 readers): it stays
     * there rather than wrap, and writers force it to 0 after their grace. */
    int32_t v = atomic_load(&ch->readers[idx]);
    while (v != INT32_MAX &&
           !atomic_compare_exchange_weak(&ch->readers[idx], &v, v < 0 ? 1 : v + 1))
        ;
}

static void reader_exit(tiga_channel *ch, unsigned idx)
{
    int32_t v = atomic_load(&ch->readers[idx]);
    while (v > 0 && !atomic_compare_exchange_weak(&ch->readers[idx], &v, v - 1))
        ;
}

static void wait_readers_gone(tiga_channel *ch, unsigned idx)
{
    if (atomic_load(&ch->readers[idx]) <= 0)
        return;
    int64_t deadline = plat_now_ns() + ch->opt.reader_grace_ms * 1000000;
    int spins = 0;
    while (atomic_load(&ch->readers[idx]) > 0) {
        if (plat_now_ns() >= deadline) {
            /* A reader stuck past the grace period is taken for dead. */
            atomic_store(&ch->readers[idx], 0);
            return;
        }
        if (spins < 64)
            plat_cpu_relax();
        else if (spins < 128)
            plat_yield();
        else
            plat_sleep_us(50);
        spins++;
    }
}

/* The data files are read and written through their mappings: no system
 * call per read or write.  A file that another process truncated below the
 * mapping faults, which the copy catches and reports here. */
static int faulted(tiga_channel *ch, unsigned idx, uint64_t end, bool writing)
{
    uint64_t size = 0;
    plat_file_size(ch->fd_data[idx], &size);
    if (size < end)
        return tiga_fail(TIGA_ETRUNCATED,
                         "%s_data_%u has %llu bytes, it had %llu when the channel was mapped "
                         "(truncated by another process? open the channel again)",
                         ch->base, idx, (unsigned long long)size,
                         (unsigned long long)ch->capacity);
    /* The file is long enough: the page had no disk block and none could be
     * had (a sparse data file on a full disk), or the device failed. */
    if (writing)
        return tiga_fail(-ENOSPC,
                         "no space left on the device to write %s_data_%u (the file is sparse "
                         "and its blocks cannot be allocated)",
                         ch->base, idx);
    return tiga_fail(-EIO, "reading %s_data_%u through its mapping failed", ch->base, idx);
}

/* Another process grew the data files (the Node addon grows files under
 * 1 MiB to 1 MiB; a C# peer sets them to its own capacity): map them again
 * at the size both now have, so that a payload that needs the room can be
 * read and written.  Called under ch->lock, which every use of the mappings
 * holds.  Nothing changes when they did not grow or cannot be mapped; a
 * payload larger than the files stays corrupt. */
static int grow_mapping(tiga_channel *ch)
{
    uint64_t s0, s1;
    if (plat_file_size(ch->fd_data[0], &s0) || plat_file_size(ch->fd_data[1], &s1))
        return 0;
    uint64_t cap = s0 < s1 ? s0 : s1;
    if (cap > TIGA_MAX_CAPACITY)
        cap = TIGA_MAX_CAPACITY;
    if (cap <= ch->capacity || cap > SIZE_MAX)
        return 0;
    void *m[2] = {NULL, NULL};
    for (unsigned i = 0; i < 2; i++) {
        int rc = plat_map(ch->fd_data[i], (size_t)cap, &m[i]);
        if (rc) {
            if (i)
                plat_unmap(m[0], (size_t)cap);
            return tiga_fail(rc, "cannot map %s_data_%u again at %llu bytes: %s", ch->base, i,
                             (unsigned long long)cap, tiga_strerror(rc));
        }
    }
    for (unsigned i = 0; i < 2; i++) {
        plat_unmap(ch->data[i], (size_t)ch->capacity);
        ch->data[i] = m[i];
    }
    ch->capacity = cap;
    ch->grown++;
    return 0;
}

/* What this handle has seen of the log's ids: a last_id below the highest
 * seen means a peer reset the log (ours never go back). */
static void saw_ids(tiga_channel *ch)
{
    const lb_buf *b = &ch->cache;
    int64_t top = b->len ? b->h.last_id : 0; /* no entry's id is above it (validated) */
    if (top < ch->high_id) {
        ch->resets += !ch->below;
        ch->below = true;
    } else {
        ch->high_id = top;
        ch->below = false;
    }
}

static int data_get(tiga_channel *ch, unsigned idx, void *dst, size_t n, uint64_t off)
{
    return plat_map_copy(dst, ch->data[idx] + off, n) == 0 ? 0 : faulted(ch, idx, off + n, false);
}

static int data_put(tiga_channel *ch, unsigned idx, uint64_t off, const void *src, size_t n)
{
    return plat_map_copy(ch->data[idx] + off, src, n) == 0 ? 0 : faulted(ch, idx, off + n, true);
}

typedef struct {
    const uint8_t *base, *a;
    uint8_t *b;
    size_t n, from;
    uint64_t sum;
} tee_args;

static void tee_fn(void *ctx)
{
    tee_args *t = ctx;
    t->sum = tiga_wyhash_tee(t->base, t->n, t->from, t->a, t->b);
}

/* payload[from..n) copied to data file idx at the same offsets (writing) or
 * from it (reading; payload[0..from) holds the rest already), and the
 * checksum of payload[0..n), in one pass. */
static int data_hashed(tiga_channel *ch, unsigned idx, uint8_t *payload, size_t n, size_t from,
                       bool writing, uint64_t *sum)
{
    uint8_t *mine = payload + from, *file = ch->data[idx] + from;
    tee_args t = {payload, writing ? mine : file, writing ? file : mine, n, from, 0};
    if (plat_map_run(tee_fn, &t) != 0)
        return faulted(ch, idx, n, writing);
    *sum = t.sum;
    return 0;
}

#define KEPT_PAGE 4096 /* kept bytes compared in full; above: a sample per page */

/* Does data file idx still hold payload[from..to), which this handle wrote
 * there two versions ago?  Another process may have truncated the file and
 * grown it back (zeros), punched a hole, or written into it without
 * publishing a version.  Up to KEPT_PAGE bytes are compared in full;
 * above that, the last 8 bytes of every page and the last 64 bytes: any
 * truncation and regrowth changes the last byte (ours is never 0: an entry we
 * write ends with nil 0xc0 or a media type's last character), and any page
 * dropped or zeroed is caught by its sample.  A fault (truncated under us)
 * counts as a mismatch: the full write that follows reports it. */
static bool kept_intact(tiga_channel *ch, unsigned idx, const uint8_t *payload, size_t from,
                        size_t to)
{
    uint8_t buf[KEPT_PAGE];
    if (to - from <= KEPT_PAGE)
        return plat_map_copy(buf, ch->data[idx] + from, to - from) == 0 &&
               memcmp(buf, payload + from, to - from) == 0;
    for (size_t page = (from / KEPT_PAGE + 1) * KEPT_PAGE; page <= to; page += KEPT_PAGE) {
        if (plat_map_copy(buf, ch->data[idx] + page - 8, 8) != 0 ||
            memcmp(buf, payload + page - 8, 8) != 0)
            return false;
    }
    return plat_map_copy(buf, ch->data[idx] + to - 64, 64) == 0 &&
           memcmp(buf, payload + to - 64, 64) == 0;
}

/* Is the cached payload still the one under version word v?  The version
 * word could in theory repeat (same buffer, size and 24-bit checksum), so
 * also compare the head of the buffer, which holds last_id. */
static int cache_matches(tiga_channel *ch, uint64_t v, bool *ok)
{
    *ok = false;
    if (v == 0 || v != ch->cache_version || ch->cache.len == 0)
        return 0;
    size_t n = ch->cache.len < HEADER_GUARD ? ch->cache.len : HEADER_GUARD;
    uint8_t head[HEADER_GUARD];
    int rc = data_get(ch, tiga_ver_idx(v), head, n, 0);
    if (rc == 0)
        *ok = memcmp(head, ch->cache.mem + ch->cache.start, n) == 0;
    return rc;
}

#define DELTA_HEAD 64           /* bytes read to parse a new payload's header */
#define DELTA_CHECK 64          /* leading bytes of a kept entry compared: id, writer, time */

/* Try to read the payload of `size` bytes in data file idx as a delta: its
 * header and new entries from the file, the entries it keeps from the cache,
 * after checking that each kept entry's id, writer and timestamp in the file
 * are the cached ones.  *used: the composed (not yet verified) payload is at
 * *dst and *h, *d describe it; the cache's old payload is gone.  Not used
 * (a full read must follow): the cache is untouched. */
static int delta_read(tiga_channel *ch, unsigned idx, uint64_t size, lb_header *h, lb_delta *d,
                      uint8_t **dst, size_t *tail_from, bool *used)
{
    *used = false;
    lb_buf *b = &ch->cache;
    if (!lb_buf_delta_may(b)) /* not even the new header is worth reading */
        return 0;
    uint8_t head[DELTA_HEAD], cmp[DELTA_CHECK];
    size_t n = size < DELTA_HEAD ? (size_t)size : DELTA_HEAD;
    int rc = data_get(ch, idx, head, n, 0);
    if (rc)
        return rc;
    if (lb_parse_head(head, n, (size_t)size, h) != 0 || !lb_buf_delta_plan(b, h, (size_t)size, d)) {
        tiga_clear_error(); /* a header that did not parse: the full read says why */
        return 0;
    }
    size_t off = h->entries_off;
    for (size_t k = d->k0; k < b->cnt; k++) {
        size_t el = lb_buf_entry_len(b, k), c = el < DELTA_CHECK ? el : DELTA_CHECK;
        if ((rc = data_get(ch, idx, cmp, c, off)))
            return rc;
        if (memcmp(cmp, b->mem + b->pos[b->head + k], c) != 0)
            return 0;
        off += el;
    }
    *dst = lb_buf_delta_place(b, head, h, d);
    *used = true;
    *tail_from = off; /* the caller copies the rest as it hashes it */
    return 0;
}

/* Bring the cache up to the payload under the current version word, copied
 * out and verified.  `locked`: the caller holds the writer lock (no reader
 * counter needed: cooperating writers cannot touch the active buffer). */
static int load_payload(tiga_channel *ch, bool locked)
{
    int bad = 0;
    bool try_delta = true;
    for (;;) {
        uint64_t v = atomic_load(ch->version);
        if (v == 0) {
            lb_buf_drop(&ch->cache);
            ch->cache_version = 0;
            saw_ids(ch);
            return 0;
        }
        unsigned idx = tiga_ver_idx(v);
        uint64_t size = tiga_ver_size(v);
        if (size > ch->capacity && (grow_mapping(ch) || size > ch->capacity))
            return tiga_fail(TIGA_ECORRUPT,
                             "%s_state: the version word 0x%016llx claims a %llu-byte payload, "
                             "the data files hold %llu%s",
                             ch->base, (unsigned long long)v, (unsigned long long)size,
                             (unsigned long long)ch->capacity,
                             ch->capacity == TIGA_MAX_CAPACITY ? " (the limit: 1 GiB)" : "");
        if (size == 0)
            return tiga_fail(TIGA_ECORRUPT,
                             "%s_state: the version word 0x%016llx names an empty payload",
                             ch->base, (unsigned long long)v);
        if (!locked)
            reader_enter(ch, idx);
        bool hit;
        int rc = 0;
        if (!locked && atomic_load(ch->version) != v) {
            reader_exit(ch, idx);
            continue;
        }
        rc = cache_matches(ch, v, &hit);
        if (rc == 0 && hit) {
            if (!locked)
                reader_exit(ch, idx);
            return 0;
        }
        if (rc == 0)
            rc = lb_buf_reserve(&ch->cache, (size_t)size);
        ch->cache.now_ns = plat_now_ns(); /* entries new to this handle are first seen now */
        uint8_t *dst = ch->cache.spare + TIGA_HEADROOM;
        lb_header h;
        lb_delta d;
        bool delta = false;
        size_t from = 0;
        uint64_t sum = 0;
        bool hashed = false; /* sum taken while copying */
        if (rc == 0) {
            ch->cache_version = 0;
            if (try_delta)
                rc = delta_read(ch, idx, size, &h, &d, &dst, &from, &delta);
            /* else into the spare buffer: the current payload stays for comparison.
             * Verify the copy, never the shared bytes: the checksum is of the
             * values stored into it, taken as they are copied when they are
             * most of the payload; else after leaving the data file, so that
             * a writer waiting for it does not wait for the hash of the kept
             * bytes as well. */
            hashed = from <= (size_t)size - from;
            if (rc == 0 && hashed)
                rc = data_hashed(ch, idx, dst, (size_t)size, from, false, &sum);
            else if (rc == 0)
                rc = data_get(ch, idx, dst + from, (size_t)size - from, from);
        }
        if (!locked)
            reader_exit(ch, idx);
        if (rc) {
            if (delta)
                lb_buf_drop(&ch->cache);
            return rc;
        }
        if (!hashed)
            sum = tiga_wyhash(dst, (size_t)size, 0);
        sum &= 0xFFFFFF;
        if (sum != tiga_ver_sum(v)) {
            if (delta) {
                /* the file's kept entries are not the cached ones after all
                 * (or it changed under us): read it whole */
                lb_buf_drop(&ch->cache);
                try_delta = false;
                continue;
            }
            if (atomic_load(ch->version) != v)
                continue; /* overwritten while we read it: try the new one */
            if (++bad >= READ_RETRIES) {
                uint64_t fsize = 0;
                if (plat_file_size(ch->fd_data[idx], &fsize) == 0 && fsize < size)
                    return tiga_fail(TIGA_ETRUNCATED,
                                     "%s_data_%u has %llu bytes, the version word says the "
                                     "payload has %llu",
                                     ch->base, idx, (unsigned long long)fsize,
                                     (unsigned long long)size);
                return tiga_fail(TIGA_ECORRUPT,
                                 "%s_data_%u: checksum 0x%06llx of the %llu-byte payload does "
                                 "not match 0x%06x in the version word",
                                 ch->base, idx, (unsigned long long)sum,
                                 (unsigned long long)size, tiga_ver_sum(v));
            }
            plat_sleep_us(100 << bad);
            continue;
        }
        if (delta) {
            if (lb_buf_delta_commit(&ch->cache, &h, &d)) {
                tiga_clear_error();
                try_delta = false; /* a full read gives the definitive error */
                continue;
            }
            ch->delta_loads++;
        } else {
            rc = lb_buf_adopt(&ch->cache, (size_t)size);
            if (rc) {
                char why[400];
                snprintf(why, sizeof why, "%s", tiga_last_error());
                return tiga_fail(rc, "%s_data_%u: %s", ch->base, idx, why);
            }
            ch->full_loads++;
        }
        ch->cache_version = v;
        saw_ids(ch);
        return 0;
    }
}

int ch_load(tiga_channel *ch) { return load_payload(ch, false); }

int tiga_channel_set_ack(tiga_channel *ch, int64_t ack_id)
{
    if (!ch)
        return tiga_fail(TIGA_EINVAL, "NULL channel");
    plat_mutex_lock(&ch->lock);
    if (ack_id > ch->ack_id)
        ch->ack_id = ack_id;
    plat_mutex_unlock(&ch->lock);
    return TIGA_OK;
}

int tiga_channel_read(tiga_channel *ch, int64_t after_id, tiga_read_result **out)
{
    if (!ch || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    plat_mutex_lock(&ch->lock);
    int rc = load_payload(ch, false);
    if (rc == 0) {
        rc = lb_buf_decode(&ch->cache, after_id, false, out); /* validated at load */
        if (rc == 0)
            (*out)->version = ch->cache_version;
    }
    plat_mutex_unlock(&ch->lock);
    return rc;
}

int tiga_channel_read_borrow(tiga_channel *ch, int64_t after_id, tiga_read_result **out)
{
    if (!ch || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    plat_mutex_lock(&ch->lock);
    int rc = load_payload(ch, false);
    if (rc == 0) {
        rc = lb_buf_decode(&ch->cache, after_id, true, out);
        if (rc == 0) {
            (*out)->version = ch->cache_version;
            return TIGA_OK; /* the handle stays locked until tiga_channel_read_done */
        }
    }
    plat_mutex_unlock(&ch->lock);
    return rc;
}

void tiga_channel_read_done(tiga_channel *ch, tiga_read_result *r)
{
    if (!ch)
        return;
    tiga_read_result_free(r);
    plat_mutex_unlock(&ch->lock);
}

int tiga_channel_info_get(tiga_channel *ch, tiga_channel_info *info)
{
    if (!ch || !info)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    plat_mutex_lock(&ch->lock);
    int rc = load_payload(ch, false);
    if (rc == 0) {
        memset(info, 0, sizeof *info);
        info->version = ch->cache_version;
        info->capacity = ch->capacity;
        info->payload_len = ch->cache.len;
        info->schema_version = -1;
        if (ch->cache.len) {
            const lb_header *h = &ch->cache.h;
            info->last_id = h->last_id;
            info->retained = h->count;
            info->schema_version = h->enveloped ? h->schema : -1;
            if (h->count) {
                lb_entry e;
                size_t off = h->entries_off;
                if (lb_next_entry(ch->cache.mem + ch->cache.start, ch->cache.len, &off, &e,
                                  false) == 0)
                    info->first_id = e.id;
            }
        }
        info->full_loads = ch->full_loads;
        info->delta_loads = ch->delta_loads;
        info->resets = ch->resets;
        info->grown = ch->grown;
        info->high_id = ch->high_id;
        info->readers0 = atomic_load(&ch->readers[0]);
        info->readers1 = atomic_load(&ch->readers[1]);
    }
    plat_mutex_unlock(&ch->lock);
    return rc;
}

/* One attempt.  On TIGA_EFULL *oldest_ts gets the timestamp of the oldest
 * retained entry (INT64_MIN if unknown), to know when trimming frees room.
 * `taken` non-NULL: the caller leads the group commit; once the locks are
 * held, every queued request (its own among them) is taken from the queue
 * into *taken and written in this one version, in queue order. */
static int append_once(tiga_channel *ch, const tiga_message *msgs, size_t n, int64_t *first_id,
                       int64_t *oldest_ts, ch_pending **taken)
{
    tiga_message *joined = NULL;
    plat_mutex_lock(&ch->lock);
    int rc = 0;
    int32_t me = plat_getpid();
    if (ch->fd_lock == PLAT_NO_FD || ch->lock_pid != me) {
        /* flock belongs to the open file description, which a forked child
         * shares with its parent: each process locks through its own. */
        char *path = path_of(ch->base, SUFFIX[0]);
        plat_fd fd = PLAT_NO_FD;
        rc = path ? plat_open_rw(path, &fd) : TIGA_ENOMEM;
        if (rc) {
            plat_mutex_unlock(&ch->lock);
            if (path)
                rc = open_failed(path, rc);
            free(path);
            return rc;
        }
        free(path);
        plat_close(ch->fd_lock); /* a child closes only its copy */
        ch->fd_lock = fd;
        ch->lock_pid = me;
    }
    rc = lock_file(ch->fd_lock, ch->opt.lock_timeout_ms);
    if (rc) {
        plat_mutex_unlock(&ch->lock);
        if (rc == -ETIMEDOUT)
            return tiga_fail(TIGA_ETIMEDOUT, "the lock on %s_state was not free within %lld ms",
                             ch->base, (long long)ch->opt.lock_timeout_ms);
        return tiga_fail(rc, "cannot lock %s_state: %s", ch->base, tiga_strerror(rc));
    }
    rc = load_payload(ch, true);
    if (rc)
        goto out;
    if (taken) {
        /* Requests queued while we waited for the locks join this version. */
        plat_mutex_lock(&ch->gq_lock);
        ch_pending *batch = ch->gq_head;
        ch->gq_head = ch->gq_tail = NULL;
        ch->gq_len = 0;
        plat_mutex_unlock(&ch->gq_lock);
        *taken = batch;
        if (batch && batch->next) {
            size_t total = 0, k = 0;
            for (ch_pending *p = batch; p; p = p->next)
                total += p->n;
            joined = malloc(total * sizeof *joined);
            if (!joined) {
                rc = tiga_fail(TIGA_ENOMEM, "out of memory");
                goto out;
            }
            for (ch_pending *p = batch; p; p = p->next)
                for (size_t i = 0; i < p->n; i++)
                    joined[k++] = p->msgs[i];
            msgs = joined;
            n = total;
        }
    }
    uint64_t v = ch->cache_version;
    unsigned next = v == 0 ? 0 : 1 - tiga_ver_idx(v);
    /* Check the target file's size now: a peer may have resized it since we
     * opened it (writing past its end would silently extend it). */
    uint64_t fsize;
    if ((rc = plat_file_size(ch->fd_data[next], &fsize))) {
        tiga_fail(rc, "cannot stat %s_data_%u", ch->base, next);
        goto out;
    }
    if (fsize < ch->capacity) {
        rc = tiga_fail(TIGA_ETRUNCATED,
                       "%s_data_%u has %llu bytes, it had %llu when the channel was opened "
                       "(resized by another process? open the channel again)",
                       ch->base, next, (unsigned long long)fsize,
                       (unsigned long long)ch->capacity);
        goto out;
    }
    /* Our own last version still current: the other buffer may hold what we
     * wrote there before, and then only its changed parts need writing. */
    bool ours = v != 0 && v == ch->published;
    if (!ours)
        ch->own_valid[0] = ch->own_valid[1] = false;
    int64_t fid = 0;
    bool moved = true;
    /* declared subscribers: the first id one of them has not read */
    int64_t last = ch->cache.len ? ch->cache.h.last_id : 0, keep_from = 0;
    int32_t subs_live = 0;
    ch_subs_keep_from(ch, last, false, &keep_from, &subs_live);
    int64_t read_age = (ch->opt.read_min_age_ms < 0 ? ch->opt.min_age_ms
                                                    : ch->opt.read_min_age_ms) * 1000000;
    rc = lb_buf_append(&ch->cache, msgs, n, ch->instance, plat_now_ns(),
                       ch->opt.min_age_ms * 1000000, ch->ack_id, ch->high_id, keep_from, read_age,
                       ch->capacity, &fid, &moved);
    if (rc == TIGA_EFULL && keep_from > 0) {
        /* a subscriber that died holds entries back: let go of the dead now */
        int64_t was = keep_from;
        ch_subs_keep_from(ch, last, true, &keep_from, &subs_live);
        if (keep_from != was)
            rc = lb_buf_append(&ch->cache, msgs, n, ch->instance, plat_now_ns(),
                               ch->opt.min_age_ms * 1000000, ch->ack_id, ch->high_id, keep_from,
                               read_age, ch->capacity, &fid, &moved);
    }
    if ((rc == TIGA_EFULL || rc == TIGA_ETOOBIG) && fsize > ch->capacity) {
        /* the files grew since we mapped them: use the room */
        uint64_t was = ch->capacity;
        char why[400];
        snprintf(why, sizeof why, "%s", tiga_last_error());
        if (grow_mapping(ch) == 0 && ch->capacity > was)
            rc = lb_buf_append(&ch->cache, msgs, n, ch->instance, plat_now_ns(),
                               ch->opt.min_age_ms * 1000000, ch->ack_id, ch->high_id, keep_from,
                               read_age, ch->capacity, &fid, &moved);
        else
            tiga_fail(rc, "%s", why);
    }
    if (rc == TIGA_EFULL) {
        /* when it is aged out, the oldest entry goes; entries a subscriber has not
         * read go when it reads them: no time to wait for (INT64_MIN) */
        *oldest_ts = INT64_MIN;
        if (ch->cache.len && ch->cache.h.count && keep_from == 0) {
            lb_entry e;
            size_t off = ch->cache.h.entries_off;
            if (lb_next_entry(ch->cache.mem + ch->cache.start, ch->cache.len, &off, &e,
                              false) == 0)
                *oldest_ts = lb_buf_entry_time(&ch->cache, 0, &e, ch->instance);
        }
    }
    if (rc)
        goto out;
    /* From here on the cache holds the new payload: drop it on any failure. */
    uint8_t *payload = ch->cache.mem + ch->cache.start;
    size_t len = ch->cache.len;
    size_t hl = ch->cache.h.entries_off;
    wait_readers_gone(ch, next);
    /* Delta write: the file already holds our payload of two versions ago,
     * whose entries sit at the same offsets (nothing trimmed since, same
     * header length): write the header and what follows that payload. */
    bool delta = ours && ch->own_valid[next] && !moved && ch->own_len[next] >= hl &&
                 ch->own_len[next] <= len && !ch->opt.flush;
    /* a trim or header change since that version also invalidates it */
    if (moved)
        ch->own_valid[0] = ch->own_valid[1] = false;
    /* ...and so does anyone who changed the file meanwhile without publishing a
     * version (a truncate and regrow leaves zeros): check the kept bytes. */
    if (delta && !kept_intact(ch, next, payload, hl, ch->own_len[next]))
        delta = false;
    /* the checksum is taken as the bytes are copied (one pass) */
    uint64_t sum = 0;
    if (delta) {
        rc = data_put(ch, next, 0, payload, hl);
        if (rc == 0)
            rc = data_hashed(ch, next, payload, len, ch->own_len[next], true, &sum);
    } else {
        rc = data_hashed(ch, next, payload, len, 0, true, &sum);
    }
    uint64_t nv = tiga_ver_make(next, len, sum);
    if (rc == 0 && ch->opt.flush && (rc = plat_datasync(ch->fd_data[next], ch->data[next], (size_t)ch->capacity)))
        tiga_fail(rc, "cannot flush %s_data_%u: %s", ch->base, next, tiga_strerror(rc));
    if (rc) {
        ch->cache_version = 0;
        lb_buf_drop(&ch->cache);
        ch->own_valid[0] = ch->own_valid[1] = false;
        goto out;
    }
    ch->own_valid[next] = true;
    ch->own_len[next] = len;
    if (ch->opt.pace_ms > 0)
        atomic_store(&ch->pace_hint, ch_subs_pace_wanted(ch, keep_from));
    ch->high_id = ch->cache.h.last_id;
    ch->below = false;
    atomic_exchange(ch->version, nv);
    ch->cache_version = nv;
    ch->published = nv;
    if (first_id)
        *first_id = fid;
out:
    plat_unlock_file(ch->fd_lock);
    plat_mutex_unlock(&ch->lock);
    free(joined);
    if (rc == 0)
        tiga_notify_signal(ch, NULL);
    return rc;
}

enum { PENDING_QUEUED, PENDING_LEAD, PENDING_DONE, PENDING_ALONE };

/* Take `me` out of the queue (it failed before taking the queue). */
static void gq_unlink(tiga_channel *ch, ch_pending *me)
{
    ch_pending *prev = NULL;
    for (ch_pending *p = ch->gq_head; p; prev = p, p = p->next)
        if (p == me) {
            if (prev)
                prev->next = me->next;
            else
                ch->gq_head = me->next;
            if (ch->gq_tail == me)
                ch->gq_tail = prev;
            ch->gq_len--;
            return;
        }
}

/* Group commit.  Each append queues itself; a thread that finds no writer
 * at work becomes the writer, and what queued up while it waited for the
 * locks goes out with its own request: one version, one checksum, one
 * wake-up for all.  When it is done it wakes the threads it wrote for and
 * hands the writer's role to the first one still queued (no herd of
 * wake-ups).  If the joined write fails (full, too big), everyone tries
 * again alone, so each call still succeeds or fails on its own messages. */
static int append_grouped(tiga_channel *ch, const tiga_message *msgs, size_t n,
                          int64_t *first_id, int64_t *oldest_ts)
{
    ch_pending me = {.msgs = msgs, .n = n, .state = PENDING_QUEUED};
    if (plat_cond_init(&me.cond))
        return append_once(ch, msgs, n, first_id, oldest_ts, NULL);
    plat_mutex_lock(&ch->gq_lock);
    if (ch->gq_tail)
        ch->gq_tail->next = &me;
    else
        ch->gq_head = &me;
    ch->gq_tail = &me;
    ch->gq_len++;
    if (!ch->gq_busy) {
        ch->gq_busy = true;
        me.state = PENDING_LEAD;
    }
    while (me.state == PENDING_QUEUED)
        plat_cond_wait(&me.cond, &ch->gq_lock);
    plat_mutex_unlock(&ch->gq_lock);
    if (me.state != PENDING_LEAD) {
        /* another thread wrote (or gave up on) our request */
        plat_cond_destroy(&me.cond);
        if (me.state == PENDING_ALONE)
            return append_once(ch, msgs, n, first_id, oldest_ts, NULL);
        if (first_id)
            *first_id = me.first_id;
        return TIGA_OK;
    }

    ch_pending *batch = NULL;
    int64_t fid = 0;
    int rc = append_once(ch, msgs, n, &fid, oldest_ts, &batch);

    bool alone = false;
    plat_mutex_lock(&ch->gq_lock);
    if (!batch) {
        gq_unlink(ch, &me); /* failed before taking the queue: the others stay */
    } else {
        int64_t id = fid;
        alone = rc != 0 && batch->next;
        for (ch_pending *p = batch, *next; p; p = next) {
            next = p->next; /* p may be gone once signalled */
            p->first_id = id;
            id += (int64_t)p->n;
            if (p != &me) {
                p->state = rc == 0 ? PENDING_DONE : PENDING_ALONE;
                plat_cond_signal(&p->cond);
            }
        }
    }
    if (ch->gq_head) {
        ch->gq_head->state = PENDING_LEAD;
        plat_cond_signal(&ch->gq_head->cond);
    } else {
        ch->gq_busy = false;
    }
    plat_mutex_unlock(&ch->gq_lock);
    plat_cond_destroy(&me.cond);
    if (alone)
        return append_once(ch, msgs, n, first_id, oldest_ts, NULL);
    if (rc == 0 && first_id)
        *first_id = me.first_id;
    return rc;
}

size_t tiga_channel_pending_writes(tiga_channel *ch)
{
    if (!ch)
        return 0;
    plat_mutex_lock(&ch->gq_lock);
    size_t n = ch->gq_len;
    plat_mutex_unlock(&ch->gq_lock);
    return n;
}

int tiga_channel_append(tiga_channel *ch, const tiga_message *msgs, size_t n, int64_t *first_id)
{
    if (!ch || !msgs || n == 0)
        return tiga_fail(TIGA_EINVAL, "nothing to append");
    for (size_t i = 0; i < n; i++)
        if (msgs[i].len && !msgs[i].data)
            return tiga_fail(TIGA_EINVAL, "message %zu has NULL data", i);
    if (atomic_load(&ch->pace_hint))
        ch_subs_pace(ch); /* the last write left a declared subscriber much to read */
    int64_t start = plat_now_ns();
    int64_t wait_ns = ch->opt.write_timeout_ms * 1000000;
    for (;;) {
        int64_t oldest = INT64_MIN;
        int rc = append_grouped(ch, msgs, n, first_id, &oldest);
        if (rc != TIGA_EFULL || wait_ns <= 0)
            return rc;
        /* Backpressure: wait (lock released) until the oldest retained entry
         * reaches the minimum age and can be trimmed, within write_timeout. */
        int64_t now = plat_now_ns();
        int64_t left = start + wait_ns - now;
        if (left <= 0) {
            char why[400];
            snprintf(why, sizeof why, "%s", tiga_last_error());
            return tiga_fail(TIGA_EFULL, "%s (still full after waiting %lld ms)", why,
                             (long long)ch->opt.write_timeout_ms);
        }
        int64_t until = 1000000; /* oldest unknown: look again in 1 ms */
        if (oldest != INT64_MIN) {
            until = oldest + ch->opt.min_age_ms * 1000000 - now;
            if (until < 200000)
                until = 200000; /* at least 0.2 ms */
        }
        if (until > left)
            until = left;
        if (until > 20000000)
            until = 20000000; /* re-check every 20 ms: another writer may trim first */
        plat_sleep_us(until / 1000);
    }
}

/* Instance and request ids: random version 4 UUIDs.  They must be unique,
 * not secret, so a per-thread splitmix64 seeded from the OS (again after a
 * fork) saves a system call per id. */
static uint64_t next_random(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local int32_t owner;
    int32_t me = plat_getpid();
    if (owner != me || state == 0) {
        plat_random(&state, sizeof state);
        state |= 1;
        owner = me;
    }
    uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

int tiga_channel_append1(tiga_channel *ch, const uint8_t *data, size_t len,
                         const char *media_type, int64_t *id)
{
    tiga_message m = {data, len, media_type};
    return tiga_channel_append(ch, &m, 1, id);
}

int tiga_channel_append_packed(tiga_channel *ch, const uint8_t *data, size_t data_len,
                               const size_t *lens, size_t n, const char *media_type,
                               int64_t *first_id)
{
    if (!ch || !lens || n == 0 || (data_len && !data))
        return tiga_fail(TIGA_EINVAL, "nothing to append");
    if (n > 0xffffffffu || n > SIZE_MAX / sizeof(tiga_message))
        return tiga_fail(TIGA_EFULL, "too many entries");
    tiga_message *msgs = malloc(n * sizeof *msgs);
    if (!msgs)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > data_len - off) {
            free(msgs);
            return tiga_fail(TIGA_EINVAL, "the lengths add up to more than the %zu bytes given",
                             data_len);
        }
        msgs[i] = (tiga_message){data + off, lens[i], media_type};
        off += lens[i];
    }
    int rc = off != data_len
                 ? tiga_fail(TIGA_EINVAL, "the lengths add up to %zu bytes, not %zu", off, data_len)
                 : tiga_channel_append(ch, msgs, n, first_id);
    free(msgs);
    return rc;
}

void tiga_new_guid(char out[37])
{
    uint8_t b[16];
    uint64_t r0 = next_random(), r1 = next_random();
    memcpy(b, &r0, 8);
    memcpy(b + 8, &r1, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    lb_guid_text(b, out);
}

/* ------------------------------------------------------------ the append lock, held alone */

struct tiga_lock {
    plat_fd fd;
};

int tiga_lock_open(const char *dir, const char *name, int64_t timeout_ms, tiga_lock **out)
{
    if (!dir || !dir[0] || !name || !out)
        return tiga_fail(TIGA_EINVAL, "dir, name and out are required");
    int rc = tiga_validate_name(name, strlen(name));
    if (rc)
        return rc;
    if (timeout_ms > TIGA_MAX_MS)
        return tiga_fail(TIGA_EINVAL, "timeout_ms is above %lld", (long long)TIGA_MAX_MS);
    size_t dl = strlen(dir);
    char *path = malloc(dl + strlen(name) + 16);
    if (!path)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    sprintf(path, "%s%stiga_%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name, SUFFIX[0]);
    tiga_lock *l = malloc(sizeof *l);
    rc = l ? plat_open_rw(path, &l->fd) : TIGA_ENOMEM;
    if (rc) {
        rc = l ? open_failed(path, rc) : tiga_fail(rc, "out of memory");
        free(l);
        free(path);
        return rc;
    }
    rc = lock_file(l->fd, timeout_ms);
    if (rc) {
        plat_close(l->fd);
        free(l);
        rc = rc == -ETIMEDOUT
                 ? tiga_fail(TIGA_ETIMEDOUT, "the lock of %s stayed held for %lld ms", path,
                             (long long)timeout_ms)
                 : tiga_fail(rc, "cannot lock %s: %s", path, tiga_strerror(rc));
        free(path);
        return rc;
    }
    free(path);
    *out = l;
    return TIGA_OK;
}

void tiga_lock_close(tiga_lock *l)
{
    if (!l)
        return;
    plat_unlock_file(l->fd);
    plat_close(l->fd);
    free(l);
}
