/* SPDX-License-Identifier: MIT */
/* The logbook: the MessagePack subset the protocol uses, decoded with a
 * bounds check on every byte and appended in place without re-encoding the
 * retained entries. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------ reading */

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
} rd;

#define CORRUPT(...) tiga_fail(TIGA_ECORRUPT, __VA_ARGS__)

static inline bool need(const rd *r, size_t k) { return r->n - r->off >= k; }

static inline uint64_t be(const uint8_t *p, int k)
{
    uint64_t v = 0;
    for (int i = 0; i < k; i++)
        v = (v << 8) | p[i];
    return v;
}

static int rd_int(rd *r, int64_t *out, const char *what)
{
    if (!need(r, 1))
        return CORRUPT("logbook ends inside %s at byte %zu", what, r->off);
    uint8_t t = r->p[r->off];
    int k;
    bool sign;
    if (t <= 0x7f) {
        *out = t;
        r->off++;
        return 0;
    }
    if (t >= 0xe0) {
        *out = (int8_t)t;
        r->off++;
        return 0;
    }
    switch (t) {
    case 0xcc: k = 1; sign = false; break;
    case 0xcd: k = 2; sign = false; break;
    case 0xce: k = 4; sign = false; break;
    case 0xcf: k = 8; sign = false; break;
    case 0xd0: k = 1; sign = true; break;
    case 0xd1: k = 2; sign = true; break;
    case 0xd2: k = 4; sign = true; break;
    case 0xd3: k = 8; sign = true; break;
    default:
        return CORRUPT("expected an integer for %s at byte %zu, found type byte 0x%02x", what,
                       r->off, t);
    }
    if (!need(r, 1 + (size_t)k))
        return CORRUPT("logbook ends inside %s at byte %zu", what, r->off);
    uint64_t v = be(r->p + r->off + 1, k);
    if (sign) {
        int sh = 64 - 8 * k;
        *out = (int64_t)(v << sh) >> sh;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return CORRUPT("%s at byte %zu does not fit in 64 signed bits", what, r->off);
        *out = (int64_t)v;
    }
    r->off += 1 + (size_t)k;
    return 0;
}

static bool is_int(const rd *r)
{
    if (!need(r, 1))
        return false;
    uint8_t t = r->p[r->off];
    return t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3);
}

static int rd_array(rd *r, uint32_t *len, const char *what)
{
    if (!need(r, 1))
        return CORRUPT("logbook ends where %s should start (byte %zu)", what, r->off);
    uint8_t t = r->p[r->off];
    if ((t & 0xf0) == 0x90) {
        *len = t & 0x0f;
        r->off++;
        return 0;
    }
    int k = t == 0xdc ? 2 : t == 0xdd ? 4 : 0;
    if (!k)
        return CORRUPT("expected an array for %s at byte %zu, found type byte 0x%02x", what,
                       r->off, t);
    if (!need(r, 1 + (size_t)k))
        return CORRUPT("logbook ends inside the header of %s at byte %zu", what, r->off);
    *len = (uint32_t)be(r->p + r->off + 1, k);
    r->off += 1 + (size_t)k;
    return 0;
}

/* str (kind 's'), bin ('b'), or either ('*'). */
static int rd_bytes(rd *r, int kind, const uint8_t **ptr, size_t *len, const char *what)
{
    if (!need(r, 1))
        return CORRUPT("logbook ends where %s should start (byte %zu)", what, r->off);
    uint8_t t = r->p[r->off];
    size_t k;
    uint64_t n = 0;
    bool str = false;
    if ((t & 0xe0) == 0xa0) {
        n = t & 0x1f;
        k = 0;
        str = true;
    } else if (t == 0xd9 || t == 0xc4) {
        k = 1;
        str = t == 0xd9;
    } else if (t == 0xda || t == 0xc5) {
        k = 2;
        str = t == 0xda;
    } else if (t == 0xdb || t == 0xc6) {
        k = 4;
        str = t == 0xdb;
    } else {
        return CORRUPT("expected %s for %s at byte %zu, found type byte 0x%02x",
                       kind == 's' ? "a string" : kind == 'b' ? "binary" : "bytes", what,
                       r->off, t);
    }
    if ((kind == 's' && !str) || (kind == 'b' && str))
        return CORRUPT("expected %s for %s at byte %zu, found %s", kind == 's' ? "str" : "bin",
                       what, r->off, str ? "str" : "bin");
    if (!need(r, 1 + k))
        return CORRUPT("logbook ends inside the header of %s at byte %zu", what, r->off);
    if (k)
        n = be(r->p + r->off + 1, (int)k);
    if (r->n - r->off - 1 - k < n)
        return CORRUPT("%s at byte %zu claims %llu bytes, only %zu remain", what, r->off,
                       (unsigned long long)n, r->n - r->off - 1 - k);
    *ptr = r->p + r->off + 1 + k;
    *len = (size_t)n;
    r->off += 1 + k + (size_t)n;
    return 0;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void lb_guid_text(const uint8_t b[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hx[b[i] >> 4];
        out[j++] = hx[b[i] & 15];
    }
    out[36] = '\0';
}

/* UUID text: 8-4-4-4-12, optionally in braces, or 32 hex digits. */
static bool parse_guid_text(const uint8_t *s, size_t n, char out[37])
{
    if (n == 38 && s[0] == '{' && s[37] == '}') {
        s++;
        n -= 2;
    }
    uint8_t b[16];
    size_t j = 0;
    if (n == 36) {
        if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
            return false;
    } else if (n != 32) {
        return false;
    }
    int hi = -1;
    for (size_t i = 0; i < n; i++) {
        if (n == 36 && (i == 8 || i == 13 || i == 18 || i == 23))
            continue;
        int v = hexval(s[i]);
        if (v < 0)
            return false;
        if (hi < 0) {
            hi = v;
        } else {
            b[j++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    lb_guid_text(b, out);
    return true;
}

/* 16 bytes in .NET Guid.ToByteArray order: the first three groups little-endian. */
static void guid_from_dotnet(const uint8_t *s, char out[37])
{
    uint8_t b[16] = {s[3], s[2], s[1], s[0], s[5], s[4], s[7], s[6]};
    memcpy(b + 8, s + 8, 8);
    lb_guid_text(b, out);
}

static int rd_instance(rd *r, char out[37])
{
    if (!need(r, 1))
        return CORRUPT("logbook ends where an instance id should start (byte %zu)", r->off);
    size_t at = r->off;
    uint8_t t = r->p[at];
    const uint8_t *s;
    size_t n;
    if (t == 0xd8) { /* fixext16 */
        if (!need(r, 18))
            return CORRUPT("logbook ends inside the instance id at byte %zu", at);
        guid_from_dotnet(r->p + at + 2, out);
        r->off += 18;
        return 0;
    }
    if (t == 0xc7) { /* ext8 */
        if (!need(r, 3) || r->p[at + 1] != 16 || !need(r, 19))
            return CORRUPT("instance id at byte %zu is an ext but not of 16 bytes", at);
        guid_from_dotnet(r->p + at + 3, out);
        r->off += 19;
        return 0;
    }
    int rc = rd_bytes(r, '*', &s, &n, "the instance id");
    if (rc)
        return rc;
    bool is_bin = t == 0xc4 || t == 0xc5 || t == 0xc6;
    if (is_bin) {
        if (n != 16)
            return CORRUPT("instance id at byte %zu is bin of %zu bytes, expected 16", at, n);
        guid_from_dotnet(s, out);
        return 0;
    }
    if (!parse_guid_text(s, n, out))
        return CORRUPT("instance id at byte %zu is not GUID text", at);
    return 0;
}

/* The bytes of the instance id at r's position, 0 when it is not one that
 * fits (rd_instance then says what is wrong). */
static size_t inst_span(const rd *r)
{
    if (!need(r, 1))
        return 0;
    uint8_t t = r->p[r->off];
    if (t == 0xd8)
        return need(r, 18) ? 18 : 0;
    if (t == 0xc7)
        return need(r, 19) && r->p[r->off + 1] == 16 ? 19 : 0;
    rd probe = *r;
    const uint8_t *s;
    size_t n;
    if (rd_bytes(&probe, '*', &s, &n, "the instance id") != 0) {
        tiga_clear_error();
        return 0;
    }
    return probe.off - r->off;
}

int lb_parse_header(const uint8_t *p, size_t n, lb_header *h)
{
    return lb_parse_head(p, n, n, h);
}

int lb_parse_head(const uint8_t *p, size_t n, size_t total, lb_header *h)
{
    rd r = {p, n, 0};
    uint32_t outer, inner;
    int64_t first;
    int rc;
    if ((rc = rd_array(&r, &outer, "the logbook")))
        return rc;
    if (outer != 2)
        return CORRUPT("the logbook is an array of %u elements, expected 2", outer);
    if ((rc = rd_int(&r, &first, "last_id or schema version")))
        return rc;
    /* Enveloped only if the second element is an array of 2 whose first
     * element is an integer and whose second is an array (as the C# peer). */
    h->enveloped = false;
    size_t save = r.off;
    int64_t li;
    uint32_t cnt;
    if (rd_array(&r, &inner, "x") == 0 && inner == 2 && is_int(&r) &&
        rd_int(&r, &li, "last_id") == 0 && rd_array(&r, &cnt, "the entries") == 0) {
        h->enveloped = true;
        h->schema = first;
        h->last_id = li;
        h->count = cnt;
        h->entries_off = r.off;
    }
    if (!h->enveloped) {
        r.off = save;
        tiga_clear_error();
        h->schema = -1;
        h->last_id = first;
        if ((rc = rd_array(&r, &h->count, "the entries")))
            return rc;
        h->entries_off = r.off;
    }
    if (h->last_id < 0)
        return CORRUPT("last_id is negative (%lld)", (long long)h->last_id);
    /* Each entry takes at least 4 bytes: reject absurd counts before walking. */
    if ((uint64_t)h->count * 4 > total - h->entries_off)
        return CORRUPT("the logbook claims %u entries in %zu bytes", h->count,
                       total - h->entries_off);
    return 0;
}

int lb_next_entry(const uint8_t *p, size_t n, size_t *off, lb_entry *e, bool full)
{
    rd r = {p, n, *off};
    uint32_t len;
    int rc;
    e->start = r.off;
    if ((rc = rd_array(&r, &len, "an entry")))
        return rc;
    if (len != 4 && len != 5)
        return CORRUPT("entry at byte %zu has %u elements, expected 4 or 5", e->start, len);
    if ((rc = rd_int(&r, &e->id, "an entry id")))
        return rc;
    if (e->id < 1)
        return CORRUPT("entry at byte %zu has id %lld; ids start at 1", e->start,
                       (long long)e->id);
    size_t ia = r.off;
    if (full) {
        size_t span = inst_span(&r);
        if (span && span == e->memo_len && memcmp(e->memo, r.p + ia, span) == 0) {
            r.off += span; /* the text in e->instance is this one's */
        } else {
            if ((rc = rd_instance(&r, e->instance)))
                return rc;
            e->memo = r.p + ia;
            e->memo_len = r.off - ia;
        }
    } else {
        /* only skipped (bounds-checked): the payload was validated already */
        const uint8_t *s;
        size_t sn;
        uint8_t t = need(&r, 1) ? r.p[r.off] : 0;
        if (t == 0xd8 || t == 0xc7) {
            if ((rc = rd_instance(&r, e->instance)))
                return rc;
        } else if ((rc = rd_bytes(&r, '*', &s, &sn, "the instance id"))) {
            return rc;
        }
    }
    e->inst = NULL;
    e->inst_len = 0;
    uint8_t it = r.p[ia]; /* the instance parsed: at least its type byte is there */
    size_t ih = (it & 0xe0) == 0xa0 ? 1 : it == 0xd9 ? 2 : it == 0xda ? 3 : it == 0xdb ? 5 : 0;
    if (ih) {
        e->inst = r.p + ia + ih;
        e->inst_len = r.off - ia - ih;
    }
    if ((rc = rd_int(&r, &e->timestamp, "a timestamp")))
        return rc;
    if ((rc = rd_bytes(&r, '*', &e->message, &e->message_len, "a message")))
        return rc;
    e->media_type = NULL;
    e->media_type_len = 0;
    if (len == 5) {
        if (!need(&r, 1))
            return CORRUPT("logbook ends where a media type should start (byte %zu)", r.off);
        if (r.p[r.off] == 0xc0) {
            r.off++;
        } else {
            if ((rc = rd_bytes(&r, 's', &e->media_type, &e->media_type_len, "a media type")))
                return rc;
        }
    }
    e->end = r.off;
    *off = r.off;
    return 0;
}

/* ------------------------------------------------------------ writing */

static size_t uint_size(uint64_t v)
{
    return v <= 0x7f ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static size_t int_size(int64_t v)
{
    if (v >= 0)
        return uint_size((uint64_t)v);
    return v >= -32 ? 1 : v >= INT8_MIN ? 2 : v >= INT16_MIN ? 3 : v >= INT32_MIN ? 5 : 9;
}

static uint8_t *put_be(uint8_t *d, uint64_t v, int k)
{
    for (int i = k - 1; i >= 0; i--) {
        d[i] = (uint8_t)v;
        v >>= 8;
    }
    return d + k;
}

static uint8_t *put_int(uint8_t *d, int64_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u <= 0x7f) {
            *d++ = (uint8_t)u;
        } else if (u <= 0xff) {
            *d++ = 0xcc;
            d = put_be(d, u, 1);
        } else if (u <= 0xffff) {
            *d++ = 0xcd;
            d = put_be(d, u, 2);
        } else if (u <= 0xffffffffu) {
            *d++ = 0xce;
            d = put_be(d, u, 4);
        } else {
            *d++ = 0xcf;
            d = put_be(d, u, 8);
        }
        return d;
    }
    if (v >= -32) {
        *d++ = (uint8_t)(int8_t)v;
    } else if (v >= INT8_MIN) {
        *d++ = 0xd0;
        d = put_be(d, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        *d++ = 0xd1;
        d = put_be(d, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        *d++ = 0xd2;
        d = put_be(d, (uint64_t)v, 4);
    } else {
        *d++ = 0xd3;
        d = put_be(d, (uint64_t)v, 8);
    }
    return d;
}

static size_t str_hdr_size(size_t n) { return n <= 31 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }
static size_t bin_hdr_size(size_t n) { return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }

size_t lb_entry_size(const tiga_message *m, int64_t id, int64_t ts)
{
    size_t s = 1 + int_size(id) + 2 + TIGA_INSTANCE_LEN + int_size(ts) + bin_hdr_size(m->len) +
               m->len;
    if (m->media_type) {
        size_t ml = strlen(m->media_type);
        s += str_hdr_size(ml) + ml;
    } else {
        s += 1;
    }
    return s;
}

uint8_t *lb_write_entry(uint8_t *d, const tiga_message *m, int64_t id, const char *instance,
                        int64_t ts)
{
    *d++ = 0x95;
    d = put_int(d, id);
    *d++ = 0xd9;
    *d++ = TIGA_INSTANCE_LEN;
    memcpy(d, instance, TIGA_INSTANCE_LEN);
    d += TIGA_INSTANCE_LEN;
    d = put_int(d, ts);
    if (m->len <= 0xff) {
        *d++ = 0xc4;
        d = put_be(d, m->len, 1);
    } else if (m->len <= 0xffff) {
        *d++ = 0xc5;
        d = put_be(d, m->len, 2);
    } else {
        *d++ = 0xc6;
        d = put_be(d, m->len, 4);
    }
    if (m->len)
        memcpy(d, m->data, m->len);
    d += m->len;
    if (m->media_type) {
        d = mp_put_str(d, m->media_type, strlen(m->media_type));
    } else {
        *d++ = 0xc0;
    }
    return d;
}

size_t lb_encode_header(uint8_t *tmp, bool enveloped, int64_t schema, int64_t last_id,
                        uint32_t count)
{
    /* Fixed widths for last_id (uint64) and the entries array (array32): the
     * header keeps its length from one version to the next, so an append can
     * leave the retained entries where they are in the file (delta write).
     * Readers accept every integer and array width. */
    uint8_t *d = tmp;
    *d++ = 0x92;
    if (enveloped) {
        d = put_int(d, schema);
        *d++ = 0x92;
    }
    *d++ = 0xcf;
    d = put_be(d, (uint64_t)last_id, 8);
    *d++ = 0xdd;
    d = put_be(d, count, 4);
    return (size_t)(d - tmp);
}

/* ------------------------------------------------------------ buffers */

static size_t buf_total(size_t cap) { return TIGA_HEADROOM + cap + cap / 2 + 4096; }

int lb_buf_reserve(lb_buf *b, size_t need)
{
    /* Room for a payload of `need` bytes plus slack, so that trimming can
     * move the payload forward several times before it has to be moved
     * back.  Sized by the payload, never by the file: a peer's huge sparse
     * data file costs nothing until a payload really is that big.  Grows
     * geometrically, so a log that grows slowly is not copied every time. */
    if (b->mem && b->cap >= need)
        return 0;
    size_t cap = need < 4096 ? 4096 : need;
    if (b->cap > cap / 2 && b->cap <= SIZE_MAX / 4)
        cap = b->cap * 2;
    if (cap > (SIZE_MAX - TIGA_HEADROOM - 4096) / 2)
        return tiga_fail(TIGA_ENOMEM, "a payload buffer of %zu bytes is too big", need);
    size_t total = buf_total(cap);
    uint8_t *m = malloc(total), *sp = malloc(total);
    if (!m || !sp) {
        free(m);
        free(sp);
        return tiga_fail(TIGA_ENOMEM, "cannot allocate 2 x %zu bytes for payload buffers", total);
    }
    if (b->mem && b->len)
        memcpy(m + TIGA_HEADROOM, b->mem + b->start, b->len);
    for (size_t k = 0; b->mem && k < b->cnt; k++)
        b->pos[b->head + k] = b->pos[b->head + k] - b->start + TIGA_HEADROOM;
    free(b->mem);
    free(b->spare);
    b->mem = m;
    b->spare = sp;
    b->cap = cap;
    b->start = TIGA_HEADROOM;
    return 0;
}

void lb_buf_free(lb_buf *b)
{
    free(b->mem);
    free(b->spare);
    free(b->pos);
    free(b->seen);
    memset(b, 0, sizeof *b);
}

/* ---- the entry index */

static void idx_reset(lb_buf *b)
{
    b->head = b->cnt = b->old_cnt = 0;
    b->deferred = 0;
    b->consecutive = true;
    b->first_id = 0;
    b->max_id = 0;
}

static int idx_push(lb_buf *b, size_t at, int64_t id, int64_t seen)
{
    if (b->head + b->cnt == b->pos_cap) {
        if (b->head > 0 && b->head >= b->cnt) {
            memmove(b->pos, b->pos + b->head, b->cnt * sizeof *b->pos);
            memmove(b->seen, b->seen + b->head, b->cnt * sizeof *b->seen);
            b->head = 0;
        } else {
            size_t nc = b->pos_cap ? b->pos_cap * 2 : 256;
            if (nc > SIZE_MAX / sizeof(int64_t) / 2)
                return tiga_fail(TIGA_ENOMEM, "the entry index cannot grow any further");
            size_t *np = realloc(b->pos, nc * sizeof *np);
            if (!np)
                return tiga_fail(TIGA_ENOMEM, "cannot grow the entry index");
            b->pos = np;
            int64_t *ns = realloc(b->seen, nc * sizeof *ns);
            if (!ns)
                return tiga_fail(TIGA_ENOMEM, "cannot grow the entry index");
            b->seen = ns;
            b->pos_cap = nc;
        }
    }
    if (b->cnt == 0) {
        b->first_id = id;
        b->max_id = id;
    } else {
        /* ids are at least 1 (lb_next_entry, appends): the difference of
         * two of them cannot overflow, their sum could */
        if (id - b->first_id != (int64_t)b->cnt)
            b->consecutive = false;
        if (id > b->max_id)
            b->max_id = id;
    }
    b->seen[b->head + b->cnt] = seen;
    b->pos[b->head + b->cnt++] = at;
    return 0;
}

static void idx_trim(lb_buf *b, size_t k)
{
    b->head += k;
    b->cnt -= k;
    b->old_cnt = b->old_cnt > k ? b->old_cnt - k : 0;
    b->first_id += (int64_t)k;
    if (b->cnt == 0)
        idx_reset(b);
}

/* Ids increase from entry to entry and none is above the logbook's last_id
 * (both peers write them so): anything else would make a reader skip or
 * repeat entries. */
static int id_order(const lb_header *h, int64_t prev, const lb_entry *e, bool first)
{
    if (e->id > h->last_id)
        return CORRUPT("entry at byte %zu has id %lld, above the logbook's last_id %lld",
                       e->start, (long long)e->id, (long long)h->last_id);
    if (!first && e->id <= prev)
        return CORRUPT("entry at byte %zu has id %lld after id %lld: ids must increase",
                       e->start, (long long)e->id, (long long)prev);
    return 0;
}

static int walk_entries(lb_buf *b, const uint8_t *p, size_t n, size_t off, uint32_t count)
{
    lb_entry e = {.memo = NULL}; /* (a full decode reads memo) */
    bool first = b->cnt == 0;
    int64_t prev = b->cnt ? b->first_id + (int64_t)(b->cnt - 1) : 0;
    if (b->cnt && !b->consecutive)
        prev = b->max_id; /* ids increase: the last indexed is the largest */
    for (uint32_t i = 0; i < count; i++) {
        size_t at = off;
        int rc = lb_next_entry(p, n, &off, &e, true);
        if (rc || (rc = id_order(&b->h, prev, &e, first)))
            return rc;
        prev = e.id;
        first = false;
        if ((rc = idx_push(b, b->start + at, e.id, b->now_ns)))
            return rc;
    }
    if (off != n)
        return CORRUPT("%zu bytes follow the logbook's last entry", n - off);
    return 0;
}

int lb_buf_validate(lb_buf *b)
{
    const uint8_t *p = b->mem + b->start;
    idx_reset(b);
    int rc = lb_parse_header(p, b->len, &b->h);
    if (rc)
        return rc;
    rc = walk_entries(b, p, b->len, b->h.entries_off, b->h.count);
    if (rc)
        idx_reset(b);
    return rc;
}

int lb_buf_adopt(lb_buf *b, size_t len)
{
    const uint8_t *np = b->spare + TIGA_HEADROOM;
    lb_header h;
    int rc = lb_parse_header(np, len, &h);
    if (rc)
        return rc;
    /* Which old entries does the new payload start with?  A well-behaved
     * writer keeps a suffix of the old entries, byte for byte, then appends. */
    size_t shared = 0, shared_bytes = 0, k0 = 0;
    if (b->len && b->cnt && b->consecutive && h.count) {
        lb_entry e;
        size_t off = h.entries_off;
        if (lb_next_entry(np, len, &off, &e, false) == 0 && e.id >= b->first_id &&
            e.id - b->first_id < (int64_t)b->cnt) {
            k0 = (size_t)(e.id - b->first_id);
            size_t from = b->pos[b->head + k0];
            size_t old_end = b->start + b->len;
            size_t bytes = old_end - from;
            size_t entries = b->cnt - k0;
            if (entries <= h.count && h.entries_off + bytes <= len &&
                memcmp(np + h.entries_off, b->mem + from, bytes) == 0) {
                shared = entries;
                shared_bytes = bytes;
            }
        }
    }
    /* Build the new index: translated positions of the shared entries, then
     * a walk of the rest.  The positions move down within the same array
     * (entry k0 + k becomes entry k), so they are rewritten in place. */
    const size_t *old_pos = b->pos ? b->pos + b->head : NULL; /* read only when shared */
    const int64_t *old_seen = b->seen ? b->seen + b->head : NULL;
    int64_t old_first = b->first_id;
    size_t old_from = shared ? old_pos[k0] : 0;
    lb_buf nb = *b;
    nb.mem = b->spare;
    nb.spare = b->mem;
    nb.start = TIGA_HEADROOM;
    nb.len = len;
    nb.h = h;
    idx_reset(&nb);
    for (size_t k = 0; k < shared; k++) {
        size_t at = old_pos[k0 + k] - old_from + TIGA_HEADROOM + h.entries_off;
        if ((rc = idx_push(&nb, at, old_first + (int64_t)(k0 + k), old_seen[k0 + k])))
            goto fail;
    }
    rc = walk_entries(&nb, np, len, h.entries_off + shared_bytes, h.count - (uint32_t)shared);
    if (rc)
        goto fail;
    *b = nb;
    return 0;
fail:
    /* keep b's buffers and index array; the caller drops the cache */
    b->pos = nb.pos;
    b->seen = nb.seen;
    b->pos_cap = nb.pos_cap;
    b->len = 0;
    idx_reset(b);
    return rc;
}

/* ---- loading a new payload around the cached entries it keeps */

bool lb_buf_delta_may(const lb_buf *b)
{
    /* the kept entries are a suffix of the cached ones: at most all of them */
    return b->len && b->cnt && b->consecutive &&
           b->len - b->h.entries_off >= LB_DELTA_MIN_BYTES;
}

bool lb_buf_delta_plan(const lb_buf *b, const lb_header *h, size_t len, lb_delta *d)
{
    if (!lb_buf_delta_may(b) || h->count == 0)
        return false;
    /* Where the new payload's entries would start if its ids are consecutive
     * too; the checksum of the composed payload settles whether they are. */
    int64_t first_new = h->last_id - (int64_t)h->count + 1;
    if (first_new < b->first_id || first_new - b->first_id >= (int64_t)b->cnt)
        return false;
    d->k0 = (size_t)(first_new - b->first_id);
    d->kept = b->cnt - d->k0;
    d->from = b->pos[b->head + d->k0];
    d->kept_bytes = b->start + b->len - d->from;
    if (d->kept > h->count || h->entries_off + d->kept_bytes > len)
        return false;
    d->tail_len = len - h->entries_off - d->kept_bytes;
    if ((d->kept == h->count) != (d->tail_len == 0))
        return false;
    /* Worth it only for big entries: each kept entry costs a small read to
     * check its identity, against copying and comparing its bytes. */
    return d->kept <= LB_DELTA_MAX_KEPT && d->kept_bytes >= LB_DELTA_MIN_BYTES &&
           d->kept_bytes >= d->kept * LB_DELTA_MIN_ENTRY;
}

size_t lb_buf_entry_len(const lb_buf *b, size_t k)
{
    size_t end = k + 1 < b->cnt ? b->pos[b->head + k + 1] : b->start + b->len;
    return end - b->pos[b->head + k];
}

uint8_t *lb_buf_delta_place(lb_buf *b, const uint8_t *hdr, const lb_header *h, lb_delta *d)
{
    size_t hl = h->entries_off, len = hl + d->kept_bytes + d->tail_len;
    if (d->from < hl || d->from - hl + len > buf_total(b->cap)) {
        size_t to = TIGA_HEADROOM + hl;
        memmove(b->mem + to, b->mem + d->from, d->kept_bytes);
        for (size_t k = d->k0; k < b->cnt; k++)
            b->pos[b->head + k] = b->pos[b->head + k] - d->from + to;
        d->from = to;
    }
    d->start = d->from - hl;
    memcpy(b->mem + d->start, hdr, hl);
    return b->mem + d->start;
}

int lb_buf_delta_commit(lb_buf *b, const lb_header *h, const lb_delta *d)
{
    idx_trim(b, d->k0);
    b->start = d->start;
    b->len = h->entries_off + d->kept_bytes + d->tail_len;
    b->h = *h;
    int rc = walk_entries(b, b->mem + b->start, b->len, h->entries_off + d->kept_bytes,
                          h->count - (uint32_t)d->kept);
    if (rc)
        lb_buf_drop(b);
    return rc;
}

void lb_buf_drop(lb_buf *b)
{
    b->len = 0;
    idx_reset(b);
}

int64_t lb_buf_entry_time(const lb_buf *b, size_t k, const lb_entry *e, const char *instance)
{
    if (!b->foreign_clocks)
        return e->timestamp;
    /* Our own entries carry our clock; anything else (another writer, whose
     * clock may be its own, or a timestamp this clock cannot have produced)
     * is aged from when this buffer first saw it. */
    if (instance && e->inst_len == TIGA_INSTANCE_LEN &&
        memcmp(e->inst, instance, TIGA_INSTANCE_LEN) == 0 && e->timestamp <= b->now_ns)
        return e->timestamp;
    return b->seen[b->head + k];
}

static int64_t sub_sat(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    if (b < 0 && a > INT64_MAX + b)
        return INT64_MAX;
    return a - b;
}

int lb_buf_append(lb_buf *b, const tiga_message *msgs, size_t n, const char *instance,
                  int64_t now_ns, int64_t min_age_ns, int64_t ack_id, int64_t floor_id,
                  int64_t keep_from, int64_t read_age_ns,
                  uint64_t capacity, int64_t *first_id, bool *moved)
{
    if (n == 0)
        return tiga_fail(TIGA_EINVAL, "nothing to append");
    if (n > 0xffffffffu)
        return tiga_fail(TIGA_EFULL, "too many entries");
    lb_header h;
    if (b->len == 0) {
        h.enveloped = false;
        h.schema = -1;
        h.last_id = 0;
        h.count = 0;
        h.entries_off = 0;
    } else {
        h = b->h;
    }
    const uint8_t *p = b->mem ? b->mem + b->start : NULL; /* read only when cnt > 0 */
    if (b->len == 0)
        idx_reset(b);
    b->now_ns = now_ns;
    /* The new ids: above the log's last_id (no entry's id is above it: the
     * payload was validated) and above every id this writer has seen (a peer
     * that reset the log must not make us re-issue ids). */
    int64_t base = h.last_id;
    if (floor_id > base)
        base = floor_id;
    if (base > INT64_MAX - (int64_t)n)
        return CORRUPT("last_id %lld cannot grow any further", (long long)base);
    int64_t new_last = base + (int64_t)n;

    /* Extend the run of leading entries known to be trimmable: older than the
     * minimum age, or acknowledged; with declared subscribers, read by all of
     * them and older than the read age.  These only grow with time (and with
     * the subscribers' positions), so the scan resumes where it stopped
     * (amortised O(1) per append); a rule that may have shrunk the run (a new
     * subscriber further back, another age) starts it again. */
    int64_t age = keep_from > 0 ? read_age_ns : min_age_ns;
    if (age != b->rule_age || keep_from < b->rule_keep || (keep_from > 0) != (b->rule_keep > 0))
        b->old_cnt = 0;
    b->rule_age = age;
    b->rule_keep = keep_from;
    int64_t cutoff = sub_sat(now_ns, age);
    while (b->old_cnt < b->cnt) {
        lb_entry e;
        size_t off = b->pos[b->head + b->old_cnt] - b->start;
        int rc = lb_next_entry(p, b->len, &off, &e, false);
        if (rc)
            return rc;
        if (keep_from > 0 && e.id >= keep_from)
            break; /* not read by every declared subscriber yet */
        if (lb_buf_entry_time(b, b->old_cnt, &e, instance) >= cutoff && e.id > ack_id)
            break;
        b->old_cnt++;
    }
    size_t first = h.entries_off;
    size_t trim_end = b->old_cnt < b->cnt ? b->pos[b->head + b->old_cnt] - b->start : b->len;
    size_t trimmable = trim_end - first;
    size_t keep = first;
    uint32_t count = h.count;
    size_t add = 0;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].len > 0xffffffffu || (msgs[i].len && !msgs[i].data))
            return tiga_fail(TIGA_EINVAL, "message %zu: bad length or NULL data", i);
        size_t es = lb_entry_size(&msgs[i], base + 1 + (int64_t)i, now_ns);
        if (add > SIZE_MAX - es || add + es > capacity)
            return tiga_fail(TIGA_ETOOBIG,
                             "the new entries need more than %zu bytes, the capacity is %llu",
                             add > SIZE_MAX - es ? add : add + es, (unsigned long long)capacity);
        add += es;
    }
    if ((uint64_t)count + n > 0xffffffffu)
        return tiga_fail(TIGA_EFULL, "too many entries");
    /* The form: the one found, except that a plain log is never left with
     * exactly two entries.  The Node addon reads [last_id, [e1, e2]] as an
     * envelope (PROTOCOL section 3): it would see nothing and restart ids at
     * 1.  Such a log is written enveloped with schema version 1 instead,
     * which the Node addon and a C# reader of the default schema (1) both
     * read, and it keeps that form from then on (PROTOCOL-NOTES). */
    bool env = h.enveloped;
    int64_t schema = h.schema;
    uint8_t hdr[TIGA_HEADROOM];
    size_t alone = lb_encode_header(hdr, env || n == 2, env ? schema : 1, new_last, (uint32_t)n);
    if (alone + add > capacity)
        return tiga_fail(TIGA_ETOOBIG,
                         "%zu new bytes with the logbook's header need %zu bytes, the capacity "
                         "is %llu",
                         add, alone + add, (unsigned long long)capacity);
    size_t hl = lb_encode_header(hdr, env || count + n == 2, env ? schema : 1, new_last,
                                 count + (uint32_t)n);
    /* Trim lazily.  A trim moves the retained entries, so the next write of
     * each data file must rewrite all of them instead of only what it lacks;
     * not trimming makes every write (and every read) hash the dead bytes
     * again.  So trim once the dead bytes hashed since the last trim reach
     * twice the bytes a trim would rewrite (small entries: every few dozen
     * writes; 1 MiB entries: every few writes), when half the payload is
     * dead, or when the new entries need the room. */
    bool room = hl + (b->len - first) + add <= capacity;
    size_t live = b->len - trim_end;
    if (trimmable &&
        (!room || trimmable >= live || b->deferred + trimmable >= 2 * (uint64_t)live)) {
        b->deferred = 0;
        keep = trim_end;
        count = h.count - (uint32_t)b->old_cnt;
    } else if (b->deferred > UINT64_MAX - trimmable) {
        b->deferred = UINT64_MAX;
    } else {
        b->deferred += trimmable;
    }
    if (!env && count + n == 2) {
        env = true;
        schema = 1;
    }
    hl = lb_encode_header(hdr, env, schema, new_last, count + (uint32_t)n);
    size_t kept = b->len - keep;
    size_t new_len = hl + kept + add;
    if (new_len > capacity)
        return keep_from > 0
                   ? tiga_fail(TIGA_EFULL,
                               "the new entries (%zu bytes) do not fit beside the %u retained "
                               "entries (%zu bytes) that a declared subscriber has not read "
                               "(the slowest has read up to id %lld) or that are younger than "
                               "the read minimum age; capacity %llu",
                               add, count, kept, (long long)(keep_from - 1),
                               (unsigned long long)capacity)
                   : tiga_fail(TIGA_EFULL,
                               "the new entries (%zu bytes) do not fit beside the %u retained "
                               "entries (%zu bytes) younger than the minimum age; capacity %llu",
                               add, count, kept, (unsigned long long)capacity);

    int rc = lb_buf_reserve(b, new_len);
    if (rc)
        return rc;
    /* Did the retained entries move relative to the payload's start? */
    if (moved)
        *moved = b->len == 0 || keep != h.entries_off || hl != h.entries_off;
    size_t at = b->start + keep; /* absolute offset of the first kept entry */
    if (b->len == 0)
        at = TIGA_HEADROOM;
    idx_trim(b, h.count - count);
    if (at < hl || at + kept + add > buf_total(b->cap)) {
        memmove(b->mem + TIGA_HEADROOM, b->mem + at, kept);
        for (size_t k = 0; k < b->cnt; k++)
            b->pos[b->head + k] -= at - TIGA_HEADROOM;
        at = TIGA_HEADROOM;
    }
    uint8_t *d = b->mem + at + kept;
    for (size_t i = 0; i < n; i++) {
        int64_t id = base + 1 + (int64_t)i;
        if ((rc = idx_push(b, (size_t)(d - b->mem), id, now_ns))) {
            idx_reset(b);
            b->len = 0; /* the caller drops the cache */
            return rc;
        }
        d = lb_write_entry(d, &msgs[i], id, instance, now_ns);
    }
    memcpy(b->mem + at - hl, hdr, hl);
    b->start = at - hl;
    b->len = new_len;
    b->h.enveloped = env;
    b->h.schema = schema;
    b->h.last_id = new_last;
    b->h.count = count + (uint32_t)n;
    b->h.entries_off = hl;
    if (first_id)
        *first_id = base + 1;
    return 0;
}

/* ------------------------------------------------------------ results */

typedef struct result_block {
    tiga_read_result r;
    uint8_t *tail;       /* copy of the payload bytes of the returned entries */
} result_block;

/* Where a read after after_id starts: after_id itself, or 0 when the log's
 * last_id is below it (the log went back: a peer reset it, or the channel
 * was made anew), so that the reader takes the new log from its start. */
static int64_t read_from(const lb_header *h, int64_t after_id, bool *reset)
{
    if (after_id < 0)
        after_id = 0;
    *reset = h->last_id < after_id;
    return *reset ? 0 : after_id;
}

/* Copy p[from..n) (the `count` entries after after_id) into a new result. */
static int decode_tail(const uint8_t *p, size_t n, size_t from, size_t count, const lb_header *h,
                       int64_t after_id, int64_t first_id, bool reset, bool borrow,
                       tiga_read_result **out)
{
    if (count > (SIZE_MAX - sizeof(result_block)) / sizeof(tiga_entry))
        return tiga_fail(TIGA_ENOMEM, "a read result of %zu entries is too big", count);
    result_block *blk = calloc(1, sizeof *blk + count * sizeof(tiga_entry));
    if (!blk)
        return tiga_fail(TIGA_ENOMEM, "cannot allocate a read result");
    size_t tail_len = n - from;
    const uint8_t *tail = p + from; /* borrowed: the caller's payload stays put */
    if (!borrow) {
        blk->tail = malloc(tail_len ? tail_len : 1);
        if (!blk->tail) {
            free(blk);
            return tiga_fail(TIGA_ENOMEM, "cannot allocate a read result");
        }
        if (tail_len)
            memcpy(blk->tail, p + from, tail_len);
        tail = blk->tail;
    }
    tiga_read_result *r = &blk->r;
    r->entries = (tiga_entry *)(blk + 1);
    size_t off = 0;
    lb_entry e = {.memo = NULL}; /* (a full decode reads memo) */
    bool uniform = true;
    for (size_t i = 0; i < count; i++) {
        int rc = lb_next_entry(tail, tail_len, &off, &e, true);
        if (rc) {
            free(blk->tail);
            free(blk);
            return rc;
        }
        tiga_entry *t = &r->entries[i];
        t->id = e.id;
        t->timestamp = e.timestamp;
        t->message = e.message;
        t->message_len = e.message_len;
        t->media_type = (const char *)e.media_type;
        t->media_type_len = e.media_type_len;
        memcpy(t->instance, e.instance, 37);
        const tiga_entry *f = &r->entries[0];
        if (i && uniform &&
            (memcmp(t->instance, f->instance, 37) != 0 ||
             t->media_type_len != f->media_type_len || !t->media_type != !f->media_type ||
             (t->media_type && memcmp(t->media_type, f->media_type, t->media_type_len) != 0)))
            uniform = false;
    }
    r->uniform = uniform;
    r->count = count;
    r->bytes = tail;
    r->bytes_len = tail_len;
    r->retained = h->count;
    r->first_id = h->count ? first_id : 0;
    r->payload_len = n;
    r->schema_version = h->enveloped ? h->schema : -1;
    r->reset = reset;
    r->last_id = h->last_id > after_id ? h->last_id : after_id;
    int64_t span = h->last_id > after_id ? h->last_id - after_id : 0;
    r->missed = span > (int64_t)count ? span - (int64_t)count : 0;
    r->owner = blk;
    *out = r;
    return 0;
}

static const lb_header EMPTY_HEADER = {false, -1, 0, 0, 0};

/* Decode an untrusted payload: every entry is checked in full. */
static int lb_decode(const uint8_t *p, size_t n, int64_t after_id, tiga_read_result **out)
{
    lb_header h = EMPTY_HEADER;
    int rc;
    if (n > 0 && (rc = lb_parse_header(p, n, &h)))
        return rc;
    bool reset;
    after_id = read_from(&h, after_id, &reset);
    /* Check every entry's shape and find the first with id > after_id. */
    size_t off = h.entries_off, from = n;
    uint32_t skip = h.count;
    int64_t first_id = 0;
    lb_entry e = {.memo = NULL}; /* (a full decode reads memo) */
    int64_t prev = 0;
    for (uint32_t i = 0; i < h.count; i++) {
        size_t at = off;
        if ((rc = lb_next_entry(p, n, &off, &e, true)) || (rc = id_order(&h, prev, &e, i == 0)))
            return rc;
        prev = e.id;
        if (i == 0)
            first_id = e.id;
        if (skip == h.count && e.id > after_id) {
            from = at;
            skip = i;
        }
    }
    if (off != n)
        return CORRUPT("%zu bytes follow the logbook's last entry", n - off);
    return decode_tail(p, n, from, h.count - skip, &h, after_id, first_id, reset, false, out);
}

size_t lb_buf_bytes_from(const lb_buf *b, int64_t id)
{
    if (!b->consecutive || b->cnt == 0 || id > b->first_id + (int64_t)(b->cnt - 1))
        return 0;
    size_t k = id <= b->first_id ? 0 : (size_t)(id - b->first_id);
    return b->start + b->len - b->pos[b->head + k];
}

size_t lb_buf_first_after(const lb_buf *b, int64_t after_id)
{
    if (b->consecutive) {
        if (b->cnt == 0 || after_id < b->first_id)
            return 0;
        if (after_id - b->first_id < (int64_t)b->cnt)
            return (size_t)(after_id - b->first_id) + 1;
        return b->cnt;
    }
    size_t k;
    for (k = 0; k < b->cnt; k++) {
        lb_entry e;
        size_t off = b->pos[b->head + k] - b->start;
        if (lb_next_entry(b->mem + b->start, b->len, &off, &e, false) == 0 && e.id > after_id)
            break;
    }
    return k;
}

int lb_buf_decode(const lb_buf *b, int64_t after_id, bool borrow, tiga_read_result **out)
{
    static const uint8_t empty[1];
    bool reset;
    if (b->len == 0) {
        after_id = read_from(&EMPTY_HEADER, after_id, &reset);
        return decode_tail(empty, 0, 0, 0, &EMPTY_HEADER, after_id, 0, reset, borrow, out);
    }
    after_id = read_from(&b->h, after_id, &reset);
    const uint8_t *p = b->mem + b->start;
    size_t k = lb_buf_first_after(b, after_id);
    size_t from = k < b->cnt ? b->pos[b->head + k] - b->start : b->len;
    int64_t first_id = b->first_id;
    if (b->cnt && !b->consecutive) {
        lb_entry e;
        size_t off = b->pos[b->head] - b->start;
        if (lb_next_entry(p, b->len, &off, &e, false) == 0)
            first_id = e.id;
    }
    return decode_tail(p, b->len, from, b->cnt - k, &b->h, after_id, first_id, reset, borrow,
                       out);
}

void tiga_read_result_free(tiga_read_result *r)
{
    if (!r)
        return;
    result_block *blk = (result_block *)r->owner;
    free(blk->tail);
    free(blk);
}

int tiga_logbook_decode(const uint8_t *payload, size_t len, int64_t after_id,
                        tiga_read_result **out)
{
    if (!out || (len && !payload))
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    return lb_decode(payload, len, after_id, out);
}

int tiga_logbook_append(const uint8_t *old, size_t old_len, const tiga_message *msgs, size_t n,
                        const char *instance, int64_t now_ns, int64_t min_age_ns,
                        uint64_t capacity, uint8_t **out, size_t *out_len)
{
    if (!msgs || !instance || !out || !out_len || (old_len && !old) || strlen(instance) != 36)
        return tiga_fail(TIGA_EINVAL, "bad argument (instance must be 36 characters)");
    if (capacity == 0 || capacity > TIGA_SIZE_MASK || old_len > capacity)
        return tiga_fail(TIGA_EINVAL, "capacity %llu out of range for a %zu-byte logbook",
                         (unsigned long long)capacity, old_len);
    lb_buf b = {0};
    int rc = lb_buf_reserve(&b, old_len);
    if (rc)
        return rc;
    if (old_len) {
        memcpy(b.mem + b.start, old, old_len);
        b.len = old_len;
        if ((rc = lb_buf_validate(&b)))
            goto done;
    }
    if ((rc = lb_buf_append(&b, msgs, n, instance, now_ns, min_age_ns, 0, 0, 0, 0, capacity,
                            NULL, NULL)))
        goto done;
    uint8_t *res = malloc(b.len ? b.len : 1);
    if (!res) {
        rc = tiga_fail(TIGA_ENOMEM, "cannot allocate the result");
        goto done;
    }
    memcpy(res, b.mem + b.start, b.len);
    *out = res;
    *out_len = b.len;
done:
    lb_buf_free(&b);
    return rc;
}

void tiga_free(void *p) { free(p); }

/* ------------------------------------------------------------ envelope pieces */

size_t mp_int_size(int64_t v) { return int_size(v); }

size_t mp_str_size(size_t n) { return str_hdr_size(n) + n; }

uint8_t *mp_put_int(uint8_t *d, int64_t v) { return put_int(d, v); }

uint8_t *mp_put_str(uint8_t *d, const void *s, size_t n)
{
    if (n <= 31) {
        *d++ = (uint8_t)(0xa0 | n);
    } else if (n <= 0xff) {
        *d++ = 0xd9;
        d = put_be(d, n, 1);
    } else if (n <= 0xffff) {
        *d++ = 0xda;
        d = put_be(d, n, 2);
    } else {
        *d++ = 0xdb;
        d = put_be(d, n, 4);
    }
    if (n)
        memcpy(d, s, n);
    return d + n;
}

int mp_parse_invoke(const uint8_t *p, size_t n, const uint8_t **id, size_t *id_len,
                    const uint8_t **method, size_t *method_len, const uint8_t **data,
                    size_t *data_len)
{
    rd r = {p, n, 0};
    uint32_t len;
    int64_t kind;
    if (rd_array(&r, &len, "an envelope") || len != 4 ||
        rd_bytes(&r, 's', id, id_len, "an envelope id") || rd_int(&r, &kind, "a kind") ||
        kind != 1 || rd_bytes(&r, 's', method, method_len, "a method") || r.off >= n) {
        tiga_clear_error();
        return -1;
    }
    *data = p + r.off;
    *data_len = n - r.off;
    return 0;
}

int mp_parse_response(const uint8_t *p, size_t n, const uint8_t **id, size_t *id_len,
                      const uint8_t **data, size_t *data_len, int64_t *code)
{
    rd r = {p, n, 0};
    uint32_t len;
    int64_t kind;
    if (rd_array(&r, &len, "an envelope") || len < 4 ||
        rd_bytes(&r, 's', id, id_len, "an envelope id") || rd_int(&r, &kind, "a kind") ||
        kind != 2 || rd_bytes(&r, 's', data, data_len, "response data") ||
        rd_int(&r, code, "a code")) {
        tiga_clear_error();
        return -1;
    }
    return 0;
}
