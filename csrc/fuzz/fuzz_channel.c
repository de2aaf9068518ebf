/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: hostile state, data and notify files under a channel.
 *
 * The input is split into a small header of choices and a payload.  The
 * payload is planted as a channel's active buffer under a version word with a
 * correct checksum (so the decoder, not the checksum, meets the bytes), the
 * reader counters and one listener slot get values from the input, and the
 * data file may be cut short.  Then every path that reads those files runs:
 * read after an id from the input, append, read again, the server's request
 * scan, the client's response scan, listener registration and signalling.
 *
 * Every read that succeeds is compared with an independent decoder written
 * here (its own MessagePack reader, nothing shared with logbook.c): what the
 * library returns must be exactly what the bytes say.  A crash, a sanitizer
 * report or a mismatch is a finding.
 *
 *   make -C csrc fuzz FUZZ_TIME=60
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tiga.h"

/* ---------------------------------------------------------------- oracle */

typedef struct {
    const uint8_t *p;
    size_t n, off;
    int bad;
} rdr;

static uint64_t be_n(const uint8_t *p, int k)
{
    uint64_t v = 0;
    for (int i = 0; i < k; i++)
        v = v << 8 | p[i];
    return v;
}

static int avail(rdr *r, size_t k)
{
    if (r->bad || r->n - r->off < k) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static int peek(rdr *r) { return avail(r, 1) ? r->p[r->off] : -1; }

static int is_int_type(int t) { return t >= 0 && (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)); }

static int64_t get_int(rdr *r)
{
    int t = peek(r);
    if (t < 0)
        return 0;
    r->off++;
    if (t <= 0x7f)
        return t;
    if (t >= 0xe0)
        return (int8_t)t;
    static const int width[] = {1, 2, 4, 8, 1, 2, 4, 8};
    if (t < 0xcc || t > 0xd3) {
        r->bad = 1;
        return 0;
    }
    int k = width[t - 0xcc];
    if (!avail(r, (size_t)k))
        return 0;
    uint64_t v = be_n(r->p + r->off, k);
    r->off += (size_t)k;
    if (t >= 0xd0) { /* signed: sign-extend */
        if (k < 8 && (v >> (8 * k - 1)) & 1)
            v |= ~UINT64_C(0) << (8 * k);
        return (int64_t)v;
    }
    if (v > INT64_MAX)
        r->bad = 1;
    return (int64_t)v;
}

static uint32_t get_array(rdr *r)
{
    int t = peek(r);
    if (t < 0)
        return 0;
    r->off++;
    if ((t & 0xf0) == 0x90)
        return (uint32_t)(t & 0x0f);
    int k = t == 0xdc ? 2 : t == 0xdd ? 4 : 0;
    if (!k || !avail(r, (size_t)k)) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = (uint32_t)be_n(r->p + r->off, k);
    r->off += (size_t)k;
    return v;
}

/* str (want 's'), bin ('b') or either ('*'); returns the bytes */
static const uint8_t *get_bytes(rdr *r, int want, size_t *len, int *was_str)
{
    int t = peek(r);
    if (t < 0)
        return NULL;
    size_t k = 0, n = 0;
    int str = 0;
    if ((t & 0xe0) == 0xa0) {
        n = (size_t)(t & 0x1f);
        str = 1;
    } else if (t == 0xd9 || t == 0xda || t == 0xdb) {
        k = t == 0xd9 ? 1 : t == 0xda ? 2 : 4;
        str = 1;
    } else if (t == 0xc4 || t == 0xc5 || t == 0xc6) {
        k = t == 0xc4 ? 1 : t == 0xc5 ? 2 : 4;
    } else {
        r->bad = 1;
        return NULL;
    }
    if ((want == 's' && !str) || (want == 'b' && str)) {
        r->bad = 1;
        return NULL;
    }
    r->off++;
    if (k) {
        if (!avail(r, k))
            return NULL;
        n = (size_t)be_n(r->p + r->off, (int)k);
        r->off += k;
    }
    if (!avail(r, n))
        return NULL;
    const uint8_t *s = r->p + r->off;
    r->off += n;
    *len = n;
    if (was_str)
        *was_str = str;
    return s;
}

typedef struct {
    int64_t id, ts;
    const uint8_t *msg;
    size_t msg_len;
    const uint8_t *media;
    size_t media_len;
    int has_media;
} oentry;

/* Decode a logbook the way PROTOCOL section 3 says, with the library's
 * documented stricter rules (ids from 1, GUID instances, nothing after the
 * last entry).  Returns the entry count, or -1 when the bytes are not one. */
static long oracle(const uint8_t *p, size_t n, int64_t *last_id, oentry *out, size_t max)
{
    rdr r = {p, n, 0, 0};
    if (get_array(&r) != 2 || r.bad)
        return -1;
    int64_t first = get_int(&r);
    if (r.bad)
        return -1;
    size_t save = r.off;
    /* enveloped only if [int, array] follows (the C# rule) */
    rdr t = r;
    int env = 0;
    if (get_array(&t) == 2 && !t.bad && is_int_type(peek(&t))) {
        get_int(&t);
        int pt = peek(&t);
        env = !t.bad && ((pt & 0xf0) == 0x90 || pt == 0xdc || pt == 0xdd);
    }
    if (env) {
        get_array(&r);
        *last_id = get_int(&r);
    } else {
        r.off = save;
        *last_id = first;
    }
    uint32_t cnt = get_array(&r);
    if (r.bad || *last_id < 0 || cnt > max)
        return -1;
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t el = get_array(&r);
        if (r.bad || (el != 4 && el != 5))
            return -1;
        oentry *e = &out[i];
        e->id = get_int(&r);
        /* ids from 1, strictly increasing, none above last_id */
        if (r.bad || e->id < 1 || e->id > *last_id || (i && e->id <= out[i - 1].id))
            return -1;
        int t0 = peek(&r);
        if (t0 == 0xd8) { /* fixext16 */
            if (!avail(&r, 18))
                return -1;
            r.off += 18;
        } else if (t0 == 0xc7) {
            if (!avail(&r, 19) || r.p[r.off + 1] != 16)
                return -1;
            r.off += 19;
        } else {
            size_t il;
            int str;
            const uint8_t *s = get_bytes(&r, '*', &il, &str);
            if (!s)
                return -1;
            if (!str && il != 16)
                return -1;
            if (str) {
                size_t hex = 0;
                size_t a = 0, b = il;
                if (il == 38 && s[0] == '{' && s[37] == '}')
                    a = 1, b = 37;
                for (size_t k = a; k < b; k++) {
                    int dash = (b - a == 36) && (k - a == 8 || k - a == 13 || k - a == 18 ||
                                                 k - a == 23);
                    if (dash ? s[k] != '-' : !((s[k] >= '0' && s[k] <= '9') ||
                                              ((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'f')))
                        return -1;
                    hex += !dash;
                }
                if (hex != 32 || (b - a != 36 && b - a != 32))
                    return -1;
            }
        }
        e->ts = get_int(&r);
        e->msg = get_bytes(&r, '*', &e->msg_len, NULL);
        if (r.bad)
            return -1;
        e->has_media = 0;
        if (el == 5) {
            if (peek(&r) == 0xc0) {
                r.off++;
            } else {
                e->media = get_bytes(&r, 's', &e->media_len, NULL);
                e->has_media = 1;
                if (r.bad)
                    return -1;
            }
        }
    }
    return r.off == n ? (long)cnt : -1;
}

/* ---------------------------------------------------------------- files */

static char dir[64];

static void put(const char *suffix, const void *p, size_t n, off_t total)
{
    char path[128];
    snprintf(path, sizeof path, "%s/tiga_f%s", dir, suffix);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    if (n && write(fd, p, n) != (ssize_t)n)
        abort();
    if (ftruncate(fd, total) != 0)
        abort();
    close(fd);
}

static void check_read(tiga_channel *ch, const uint8_t *payload, size_t n, int64_t after,
                       int planted)
{
    tiga_read_result *res = NULL;
    if (tiga_channel_read(ch, after, &res) != TIGA_OK)
        return;
    if (planted) {
        static oentry ent[4096];
        int64_t last = 0;
        long cnt = oracle(payload, n, &last, ent, sizeof ent / sizeof ent[0]);
        if (cnt < 0) {
            goto mismatch; /* the library read bytes that are not a logbook */
        } else {
            int64_t from = last < (after < 0 ? 0 : after) ? 0 : (after < 0 ? 0 : after);
            size_t k = 0;
            if (res->last_id != (last > from ? last : from))
                goto mismatch;
            for (long i = 0; i < cnt; i++) {
                if (ent[i].id <= from)
                    continue;
                if (k >= res->count)
                    goto mismatch;
                const tiga_entry *e = &res->entries[k++];
                if (e->id != ent[i].id || e->timestamp != ent[i].ts ||
                    e->message_len != ent[i].msg_len ||
                    memcmp(e->message, ent[i].msg, e->message_len) != 0 ||
                    (e->media_type != NULL) != ent[i].has_media ||
                    (e->media_type && (e->media_type_len != ent[i].media_len ||
                                       memcmp(e->media_type, ent[i].media, e->media_type_len))))
                    goto mismatch;
            }
            if (k != res->count)
                goto mismatch;
        }
    }
    tiga_read_result_free(res);
    return;
mismatch:
    fprintf(stderr, "read result differs from the independent decode\n");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    strcpy(dir, "/tmp/tiga-fuzz-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 16)
        return 0;
    /* choices */
    uint8_t flags = data[0];
    int64_t after = (int64_t)be_n(data + 1, 8);
    uint32_t rc0, rc1;
    memcpy(&rc0, data + 9, 4);
    uint8_t cut = data[13];
    uint16_t slot_bytes = (uint16_t)(data[14] | data[15] << 8);
    const uint8_t *payload = data + 16;
    size_t n = size - 16;
    rc1 = rc0 ^ 0x5a5a5a5a;

    /* the files, as a hostile peer leaves them */
    const size_t cap = 65536;
    if (n > cap)
        n = cap;
    uint64_t v = 0;
    int planted = n > 0 && !(flags & 1);
    if (planted)
        v = 1 | ((uint64_t)n << 1) | ((tiga_wyhash(payload, n, 0) & 0xFFFFFF) << 40);
    else if (n >= 8)
        memcpy(&v, payload, 8); /* any version word at all */
    uint8_t state[16];
    memcpy(state, &v, 8);
    memcpy(state + 8, &rc0, 4);
    memcpy(state + 12, &rc1, 4);
    put("_state", state, 16, 16);
    put("_data_0", NULL, 0, (off_t)cap);
    put("_data_1", payload, n, (off_t)cap);
    uint8_t notify[3072] = {0};
    size_t sb = slot_bytes % 3072;
    if (sb > n)
        sb = n;
    memcpy(notify, payload, sb); /* slots made of the payload's first bytes */
    put("_notify", notify, sizeof notify, sizeof notify);

    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.reader_grace_ms = 0;
    o.min_age_ms = flags & 4 ? 0 : 1000;
    o.lock_timeout_ms = 100;
    tiga_channel *ch = NULL;
    if (tiga_channel_open(dir, "f", &o, &ch) != TIGA_OK)
        return 0;
    off_t d1 = (off_t)cap;
    if (flags & 2) { /* cut short under the mapping: reads must fail cleanly */
        char path[128];
        d1 = (off_t)cut * 256;
        snprintf(path, sizeof path, "%s/tiga_f_data_1", dir);
        if (truncate(path, d1) != 0)
            abort();
    }
    check_read(ch, payload, n, after, planted && d1 >= (off_t)n);
    check_read(ch, payload, n, 0, planted && d1 >= (off_t)n);

    tiga_request rq;
    memset(&rq, 0, sizeof rq);
    tiga_request_next(ch, after, &rq);
    tiga_request_clear(&rq);
    tiga_response resp;
    memset(&resp, 0, sizeof resp);
    tiga_response_find(ch, after, "00000000-0000-4000-8000-000000000000", &resp);
    tiga_response_clear(&resp);

    int32_t live = 0, woken = 0;
    tiga_channel_live_listeners(ch, &live);
    if (flags & 8) {
        tiga_listener *l = NULL;
        if (tiga_listener_open(dir, "f", &o, &l) == TIGA_OK) {
            tiga_listener_wait(l, 0, 0);
            tiga_listener_close(l);
        }
    }
    tiga_message m = {payload, n < 64 ? n : 64, (flags & 16) ? "application/x-msgpack" : NULL};
    int64_t id = 0;
    if (tiga_channel_append(ch, &m, 1, &id) == TIGA_OK) {
        tiga_read_result *res = NULL;
        if (tiga_channel_read(ch, id - 1, &res) == TIGA_OK) {
            if (res->count != 1 || res->entries[0].id != id ||
                res->entries[0].message_len != m.len ||
                (m.len && memcmp(res->entries[0].message, m.data, m.len)))
                abort(); /* our own entry did not come back as written */
            tiga_read_result_free(res);
        }
    }
    tiga_channel_signal(ch, &woken);
    tiga_channel_close(ch);
    return 0;
}
