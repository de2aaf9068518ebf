/* SPDX-License-Identifier: MIT */
/* The logbook codec: golden payloads, forms, integer widths, garbage. */
#include "tiga.h"
#include "check.h"

static const char *INST = "0123abcd-0000-4000-8000-00000000beef";

/* [3, [[3, "0123abcd-...", 7, bin "hi", "text/plain"]]] */
static size_t golden_plain(uint8_t *b)
{
    size_t n = 0;
    b[n++] = 0x92;
    b[n++] = 0x03;
    b[n++] = 0x91;
    b[n++] = 0x95;
    b[n++] = 0xcd; b[n++] = 0x00; b[n++] = 0x03;          /* id 3 as uint16 */
    b[n++] = 0xd9; b[n++] = 36;
    memcpy(b + n, "0123ABCD-0000-4000-8000-00000000BEEF", 36); n += 36;
    b[n++] = 0xd3; memset(b + n, 0, 7); b[n + 7] = 7; n += 8; /* timestamp 7 as int64 */
    b[n++] = 0xc4; b[n++] = 2; b[n++] = 'h'; b[n++] = 'i';
    b[n++] = 0xaa; memcpy(b + n, "text/plain", 10); n += 10;
    return n;
}

static void test_decode_plain(void)
{
    uint8_t b[128];
    size_t n = golden_plain(b);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_logbook_decode(b, n, 0, &r), TIGA_OK);
    if (!r)
        return;
    CHECK(r->last_id == 3);
    CHECK(r->count == 1);
    CHECK(r->schema_version == -1);
    CHECK(r->missed == 2);
    CHECK(r->entries[0].id == 3);
    CHECK(r->entries[0].timestamp == 7);
    CHECK(r->entries[0].message_len == 2 && memcmp(r->entries[0].message, "hi", 2) == 0);
    CHECK(r->entries[0].media_type_len == 10);
    CHECK(strcmp(r->entries[0].instance, "0123abcd-0000-4000-8000-00000000beef") == 0);
    tiga_read_result_free(r);
    CHECK_RC(tiga_logbook_decode(b, n, 3, &r), TIGA_OK);
    CHECK(r->count == 0 && r->last_id == 3 && r->missed == 0);
    tiga_read_result_free(r);
}

static void test_append_roundtrip(void)
{
    tiga_message m[3] = {{(const uint8_t *)"one", 3, NULL},
                         {(const uint8_t *)"two", 3, "application/x-msgpack"},
                         {NULL, 0, ""}};
    uint8_t *p = NULL;
    size_t n = 0;
    CHECK_RC(tiga_logbook_append(NULL, 0, m, 3, INST, 1000, 0, 1 << 20, &p, &n), TIGA_OK);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_logbook_decode(p, n, 0, &r), TIGA_OK);
    CHECK(r->count == 3 && r->last_id == 3);
    CHECK(r->entries[0].media_type == NULL);
    CHECK(r->entries[1].media_type_len == 21);
    CHECK(r->entries[2].message_len == 0 && r->entries[2].media_type_len == 0 &&
          r->entries[2].media_type != NULL);
    tiga_read_result_free(r);
    /* trimming: everything older than now - min_age goes */
    uint8_t *q = NULL;
    size_t qn = 0;
    CHECK_RC(tiga_logbook_append(p, n, m, 1, INST, 5000, 1000, 1 << 20, &q, &qn), TIGA_OK);
    CHECK_RC(tiga_logbook_decode(q, qn, 0, &r), TIGA_OK);
    CHECK(r->count == 1 && r->last_id == 4 && r->entries[0].id == 4 && r->missed == 3);
    tiga_read_result_free(r);
    tiga_free(q);
    /* young entries are kept */
    CHECK_RC(tiga_logbook_append(p, n, m, 1, INST, 1500, 1000, 1 << 20, &q, &qn), TIGA_OK);
    CHECK_RC(tiga_logbook_decode(q, qn, 0, &r), TIGA_OK);
    CHECK(r->count == 4 && r->last_id == 4);
    tiga_read_result_free(r);
    tiga_free(q);
    tiga_free(p);
}

/* A plain log is never written with exactly two entries (the Node addon
 * reads [last_id, [e1, e2]] as an envelope): it is written enveloped with
 * schema 1 and keeps that form; one or three entries stay plain. */
static void test_two_entries_are_enveloped(void)
{
    tiga_message m[3] = {{(const uint8_t *)"a", 1, NULL}, {(const uint8_t *)"b", 1, NULL},
                         {(const uint8_t *)"c", 1, NULL}};
    uint8_t *p = NULL, *q = NULL;
    size_t n = 0, qn = 0;
    tiga_read_result *r = NULL;
    /* one, then three entries at once: plain */
    CHECK_RC(tiga_logbook_append(NULL, 0, m, 1, INST, 1, 0, 4096, &p, &n), TIGA_OK);
    CHECK(p[0] == 0x92 && p[1] == 0xcf);
    tiga_free(p);
    CHECK_RC(tiga_logbook_append(NULL, 0, m, 3, INST, 1, 0, 4096, &p, &n), TIGA_OK);
    CHECK_RC(tiga_logbook_decode(p, n, 0, &r), TIGA_OK);
    CHECK(r->schema_version == -1 && r->count == 3);
    tiga_read_result_free(r);
    tiga_free(p);
    /* two: [1, [2, [e1, e2]]] */
    CHECK_RC(tiga_logbook_append(NULL, 0, m, 2, INST, 1, 0, 4096, &p, &n), TIGA_OK);
    CHECK(p[0] == 0x92 && p[1] == 0x01 && p[2] == 0x92 && p[3] == 0xcf);
    CHECK_RC(tiga_logbook_decode(p, n, 0, &r), TIGA_OK);
    CHECK(r->schema_version == 1 && r->count == 2 && r->last_id == 2);
    tiga_read_result_free(r);
    /* its inner array is the plain form of the same two entries: a peer's
     * plain two-entry log is read as plain (the C# rule) */
    CHECK_RC(tiga_logbook_decode(p + 2, n - 2, 0, &r), TIGA_OK);
    CHECK(r->schema_version == -1 && r->count == 2 && r->last_id == 2);
    tiga_read_result_free(r);
    /* the form stays when a third entry comes */
    CHECK_RC(tiga_logbook_append(p, n, m, 1, INST, 2, 1000, 4096, &q, &qn), TIGA_OK);
    CHECK_RC(tiga_logbook_decode(q, qn, 0, &r), TIGA_OK);
    CHECK(r->schema_version == 1 && r->count == 3 && r->last_id == 3);
    tiga_read_result_free(r);
    tiga_free(p);
    tiga_free(q);
    /* one old entry trimmed from a plain log of two: one plus one would be two */
    CHECK_RC(tiga_logbook_append(NULL, 0, m, 1, INST, 1, 0, 4096, &p, &n), TIGA_OK);
    CHECK_RC(tiga_logbook_append(p, n, m, 1, INST, 10, 1000, 4096, &q, &qn), TIGA_OK);
    CHECK_RC(tiga_logbook_decode(q, qn, 0, &r), TIGA_OK);
    CHECK(r->schema_version == 1 && r->count == 2);
    tiga_read_result_free(r);
    tiga_free(p);
    tiga_free(q);
}

static void test_enveloped_kept(void)
{
    /* [2, [0, []]] : schema 2, empty */
    const uint8_t env[] = {0x92, 0x02, 0x92, 0x00, 0x90};
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    uint8_t *p = NULL;
    size_t n = 0;
    CHECK_RC(tiga_logbook_append(env, sizeof env, &m, 1, INST, 1, 0, 4096, &p, &n), TIGA_OK);
    CHECK(n > 5 && p[0] == 0x92 && p[1] == 0x02 && p[2] == 0x92 && p[3] == 0xcf && p[11] == 1);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_logbook_decode(p, n, 0, &r), TIGA_OK);
    CHECK(r->schema_version == 2 && r->count == 1 && r->last_id == 1);
    tiga_read_result_free(r);
    tiga_free(p);
}

static void test_limits(void)
{
    uint8_t big[200];
    memset(big, 'x', sizeof big);
    tiga_message m = {big, sizeof big, NULL};
    uint8_t *p = NULL, *q = NULL;
    size_t n = 0, qn = 0;
    CHECK_RC(tiga_logbook_append(NULL, 0, &m, 1, INST, 1, 0, 128, &p, &n), TIGA_ETOOBIG);
    m.len = 100;
    CHECK_RC(tiga_logbook_append(NULL, 0, &m, 1, INST, 1, 0, 256, &p, &n), TIGA_OK);
    CHECK_RC(tiga_logbook_append(p, n, &m, 1, INST, 1, 1000, 256, &q, &qn), TIGA_EFULL);
    tiga_free(p);
}

static void test_garbage(void)
{
    /* every prefix of a valid payload, and every single-byte change, must be
     * an error or a clean decode, never a crash (ASan watches) */
    uint8_t b[128];
    size_t n = golden_plain(b);
    tiga_read_result *r;
    for (size_t k = 0; k < n; k++) {
        r = NULL;
        int rc = tiga_logbook_decode(b, k, 0, &r);
        CHECK(k == 0 ? rc == TIGA_OK : rc == TIGA_ECORRUPT);
        tiga_read_result_free(r);
    }
    for (size_t k = 0; k < n; k++) {
        for (int v = 0; v < 256; v += 7) {
            uint8_t c[128];
            memcpy(c, b, n);
            c[k] = (uint8_t)v;
            r = NULL;
            int rc = tiga_logbook_decode(c, n, 0, &r);
            CHECK(rc == TIGA_OK || rc == TIGA_ECORRUPT);
            tiga_read_result_free(r);
        }
    }
    /* a huge claimed count */
    const uint8_t huge[] = {0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff};
    CHECK_RC(tiga_logbook_decode(huge, sizeof huge, 0, &r), TIGA_ECORRUPT);
    /* trailing bytes */
    const uint8_t trail[] = {0x92, 0x00, 0x90, 0x00};
    CHECK_RC(tiga_logbook_decode(trail, sizeof trail, 0, &r), TIGA_ECORRUPT);
}

static void test_instance_forms(void)
{
    /* bin16 in .NET order and fixext16 both decode to the same text */
    uint8_t b[64];
    const uint8_t g[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                           0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    for (int form = 0; form < 2; form++) {
        size_t n = 0;
        b[n++] = 0x92; b[n++] = 0x01; b[n++] = 0x91; b[n++] = 0x94; b[n++] = 0x01;
        if (form == 0) {
            b[n++] = 0xc4; b[n++] = 16;
        } else {
            b[n++] = 0xd8; b[n++] = 0x05;
        }
        memcpy(b + n, g, 16); n += 16;
        b[n++] = 0x00;
        b[n++] = 0xc4; b[n++] = 0;
        tiga_read_result *r = NULL;
        CHECK_RC(tiga_logbook_decode(b, n, 0, &r), TIGA_OK);
        if (r) {
            CHECK(strcmp(r->entries[0].instance, "00112233-4455-6677-8899-aabbccddeeff") == 0);
            CHECK(r->entries[0].media_type == NULL);
            tiga_read_result_free(r);
        }
    }
}

/* Entries of several writers in one log: each gets its own instance text,
 * whether its bytes repeat the entry before's, differ, or are the same GUID in
 * another form; an instance that is not a GUID after good ones is refused. */
static void test_instance_per_entry(void)
{
    static const char *A = "0123abcd-0000-4000-8000-00000000beef";
    static const char *B = "0123abcd-0000-4000-8000-00000000bee0";
    /* A (text), A (text), B (text), A (bin16), A (upper-case text), B (text) */
    const uint8_t g[16] = {0xcd, 0xab, 0x23, 0x01, 0x00, 0x00, 0x00, 0x40,
                           0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xbe, 0xef};
    const char *want[6] = {A, A, B, A, A, B};
    uint8_t b[512];
    size_t n = 0;
    b[n++] = 0x92; b[n++] = 0x06; b[n++] = 0x96;
    for (int i = 0; i < 6; i++) {
        b[n++] = 0x94; b[n++] = (uint8_t)(i + 1);
        if (i == 3) {
            b[n++] = 0xc4; b[n++] = 16;
            memcpy(b + n, g, 16); n += 16;
        } else {
            const char *t = i == 4 ? "0123ABCD-0000-4000-8000-00000000BEEF" : want[i];
            b[n++] = 0xd9; b[n++] = 36;
            memcpy(b + n, t, 36); n += 36;
        }
        b[n++] = 0x00;
        b[n++] = 0xc4; b[n++] = 1; b[n++] = (uint8_t)('a' + i);
    }
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_logbook_decode(b, n, 0, &r), TIGA_OK);
    if (r) {
        CHECK(r->count == 6 && !r->uniform);
        for (int i = 0; i < 6 && i < (int)r->count; i++)
            CHECK(strcmp(r->entries[i].instance, want[i]) == 0);
        tiga_read_result_free(r);
    }
    /* the last entry's instance: same length as the one before, one digit not hex */
    size_t last = n - 4 - 36;
    CHECK(b[last] == '0' && b[last - 1] == 36);
    b[last] = 'x';
    r = NULL;
    CHECK_RC(tiga_logbook_decode(b, n, 0, &r), TIGA_ECORRUPT);
    CHECK(r == NULL);
}

/* Ids below 1 or at the top of the range (the heap overflow of issue 14:
 * after_id - first_id wrapped for an entry id of INT64_MIN). */
static void test_extreme_ids(void)
{
    static const char G[] = "0c6a8e6e-2b1d-4f7c-9a3b-5d4e3f2a1b0c";
    const int64_t bad[] = {INT64_MIN, -1, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t p[128], *d = p;
        *d++ = 0x92;
        *d++ = 0x00;
        *d++ = 0x91;
        *d++ = 0x95;
        *d++ = 0xd3;
        for (int k = 7; k >= 0; k--)
            *d++ = (uint8_t)((uint64_t)bad[i] >> (8 * k));
        *d++ = 0xd9;
        *d++ = 36;
        memcpy(d, G, 36);
        d += 36;
        *d++ = 0x01;
        *d++ = 0xc4;
        *d++ = 0x00;
        *d++ = 0xc0;
        tiga_read_result *r = NULL;
        CHECK_RC(tiga_logbook_decode(p, (size_t)(d - p), 0, &r), TIGA_ECORRUPT);
        CHECK_RC(tiga_logbook_decode(p, (size_t)(d - p), INT64_MAX, &r), TIGA_ECORRUPT);
        tiga_message m = {(const uint8_t *)"x", 1, NULL};
        uint8_t *out = NULL;
        size_t n = 0;
        CHECK_RC(tiga_logbook_append(p, (size_t)(d - p), &m, 1, G, 1, 0, 4096, &out, &n),
                 TIGA_ECORRUPT);
    }
    /* the top id reads, and an append past it is refused */
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    uint8_t *p = NULL, *q = NULL;
    size_t n = 0, qn = 0;
    CHECK_RC(tiga_logbook_append(NULL, 0, &m, 1, G, 1, 0, 4096, &p, &n), TIGA_OK);
    /* patch last_id and the entry id (uint64 header at 2..9, entry id after 0x95) */
    p[1] = 0xcf;
    for (int k = 0; k < 8; k++)
        p[2 + k] = k == 0 ? 0x7f : 0xff;
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_logbook_decode(p, n, INT64_MAX, &r), TIGA_OK);
    CHECK(r && r->count == 0 && r->last_id == INT64_MAX && !r->reset);
    tiga_read_result_free(r);
    CHECK_RC(tiga_logbook_decode(p, n, 0, &r), TIGA_OK);
    CHECK(r && r->count == 1 && r->missed == INT64_MAX - 1);
    tiga_read_result_free(r);
    CHECK_RC(tiga_logbook_append(p, n, &m, 1, G, 2, 1000, 4096, &q, &qn), TIGA_ECORRUPT);
    tiga_free(p);
}

TEST_MAIN(T(test_decode_plain), T(test_extreme_ids), T(test_append_roundtrip), T(test_two_entries_are_enveloped),
          T(test_enveloped_kept), T(test_limits), T(test_garbage), T(test_instance_forms),
          T(test_instance_per_entry))
