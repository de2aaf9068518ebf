/* SPDX-License-Identifier: MIT */
/* Channels on disk: files, write/read, concurrency, damaged files. */
#include "tiga.h"
#include "check.h"
#if !TEST_WINDOWS
#include <fcntl.h>
#include <sys/mman.h>
#endif

static char path[512];
static const char *P(const char *dir, const char *name, const char *suffix)
{
    snprintf(path, sizeof path, "%s/tiga_%s%s", dir, name, suffix);
    return path;
}

#define fsize file_size

static void test_files_and_roundtrip(void)
{
    char *dir = temp_dir();
    char sub[300];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(sub, "demo", NULL, &ch), TIGA_OK);
    CHECK(fsize(P(sub, "demo", "_state")) == 16);
    CHECK(fsize(P(sub, "demo", "_notify")) == 3072);
    CHECK(fsize(P(sub, "demo", "_data_0")) == 1048576);
    CHECK(fsize(P(sub, "demo", "_data_1")) == 1048576);
    CHECK(tiga_channel_version(ch) == 0);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r && r->count == 0 && r->last_id == 0);
    tiga_read_result_free(r);
    tiga_message m = {(const uint8_t *)"hello", 5, "text/plain"};
    int64_t id = 0;
    CHECK_RC(tiga_channel_append(ch, &m, 1, &id), TIGA_OK);
    CHECK(id == 1);
    CHECK((tiga_channel_version(ch) & 1) == 0);
    CHECK_RC(tiga_channel_append(ch, &m, 1, &id), TIGA_OK);
    CHECK(id == 2 && (tiga_channel_version(ch) & 1) == 1);
    /* a second handle sees the same */
    tiga_channel *other = NULL;
    CHECK_RC(tiga_channel_open(sub, "demo", NULL, &other), TIGA_OK);
    CHECK_RC(tiga_channel_read(other, 1, &r), TIGA_OK);
    CHECK(r->count == 1 && r->entries[0].id == 2 && r->last_id == 2);
    CHECK(r->entries[0].message_len == 5 && memcmp(r->entries[0].message, "hello", 5) == 0);
    tiga_read_result_free(r);
    CHECK_RC(tiga_channel_append(other, &m, 1, &id), TIGA_OK);
    CHECK(id == 3);
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r->count == 3 && r->entries[2].id == 3);
    tiga_read_result_free(r);
    tiga_channel_close(other);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_bad_names(void)
{
    const char *bad[] = {"", ".", "..", "../x", "a/b", "a\\b", "tab\there", "del\x7f"};
    tiga_channel *ch = NULL;
    char *dir = temp_dir();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_RC(tiga_channel_open(dir, bad[i], NULL, &ch), TIGA_EBADNAME);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[299] = 0;
    CHECK_RC(tiga_channel_open(dir, longname, NULL, &ch), TIGA_EBADNAME);
    longname[243] = 0;
    CHECK_RC(tiga_channel_open(dir, longname, NULL, &ch), TIGA_OK);
    tiga_channel_close(ch);
    longname[243] = 'x';
    longname[244] = 0;
    CHECK_RC(tiga_channel_open(dir, longname, NULL, &ch), TIGA_EBADNAME);
    CHECK_RC(tiga_validate_name("x\0y", 3), TIGA_EBADNAME);
    remove_dir(dir);
}

static void test_limits(void)
{
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 4096;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "small", &o, &ch), TIGA_OK);
    CHECK(tiga_channel_capacity(ch) == 4096);
    uint8_t buf[5000] = {0};
    tiga_message m = {buf, sizeof buf, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_ETOOBIG);
    m.len = 3000;
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    uint64_t v = tiga_channel_version(ch);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_EFULL);
    CHECK(tiga_channel_version(ch) == v);
    /* with min age 0 the old entry is trimmed and the write goes through */
    CHECK_RC(tiga_channel_set_min_age(ch, 0), TIGA_OK);
    int64_t id = 0;
    CHECK_RC(tiga_channel_append(ch, &m, 1, &id), TIGA_OK);
    CHECK(id == 2);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r->count == 1 && r->missed == 1 && r->last_id == 2);
    tiga_read_result_free(r);
    tiga_channel_close(ch);
    /* reopening with another capacity keeps the files' */
    o.capacity = 1 << 20;
    CHECK_RC(tiga_channel_open(dir, "small", &o, &ch), TIGA_OK);
    CHECK(tiga_channel_capacity(ch) == 4096);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_damaged(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "d", NULL, &ch), TIGA_OK);
    tiga_message m = {(const uint8_t *)"payload", 7, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    tiga_channel_close(ch);
    /* truncated state file: refused, left alone */
    CHECK(set_file_size(P(dir, "d", "_state"), 8) == 0);
    CHECK_RC(tiga_channel_open(dir, "d", NULL, &ch), TIGA_ETRUNCATED);
    CHECK(fsize(P(dir, "d", "_state")) == 8);
    CHECK(set_file_size(P(dir, "d", "_state"), 16) == 0);
    /* ftruncate keeps the first 8 bytes: the version word survives */
    CHECK_RC(tiga_channel_open(dir, "d", NULL, &ch), TIGA_OK);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r && r->count == 1);
    tiga_read_result_free(r);
    r = NULL;
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    unsigned idx = (unsigned)(tiga_channel_version(ch) & 1);
    uint64_t v = tiga_channel_version(ch);
    char dn[16];
#if TEST_WINDOWS
    /* Windows does not shorten a file that has a view: nothing to refuse */
    snprintf(dn, sizeof dn, "_data_%u", 1 - idx);
    CHECK(set_file_size(P(dir, "d", dn), 10) != 0);
    CHECK(fsize(P(dir, "d", dn)) == 1048576);
    tiga_channel_close(ch);
    remove_dir(dir);
    return;
#endif
    /* the inactive data file shrunk behind our back: append refuses */
    snprintf(dn, sizeof dn, "_data_%u", 1 - idx);
    CHECK(set_file_size(P(dir, "d", dn), 10) == 0);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_ETRUNCATED);
    CHECK(tiga_channel_version(ch) == v);
    CHECK(fsize(P(dir, "d", dn)) == 10);
    CHECK(set_file_size(P(dir, "d", dn), 1048576) == 0);
    /* the active one shrunk: read and append refuse, nothing changes */
    snprintf(dn, sizeof dn, "_data_%u", idx);
    CHECK(set_file_size(P(dir, "d", dn), 10) == 0);
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_ETRUNCATED);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_ETRUNCATED);
    CHECK(tiga_channel_version(ch) == v);
    CHECK(fsize(P(dir, "d", dn)) == 10);
    /* a new handle refuses to open a channel whose data files differ */
    tiga_channel *fresh = NULL;
    CHECK_RC(tiga_channel_open(dir, "d", NULL, &fresh), TIGA_ETRUNCATED);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_corrupt_word(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "c", NULL, &ch), TIGA_OK);
    tiga_message m = {(const uint8_t *)"payload", 7, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    tiga_channel_close(ch);
    FILE *f = fopen(P(dir, "c", "_state"), "r+b");
    uint64_t v;
    CHECK(fread(&v, 8, 1, f) == 1);
    uint64_t bad = v ^ (UINT64_C(1) << 40); /* wrong checksum */
    fseek(f, 0, SEEK_SET);
    fwrite(&bad, 8, 1, f);
    fclose(f);
    CHECK_RC(tiga_channel_open(dir, "c", NULL, &ch), TIGA_OK);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_ECORRUPT);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_ECORRUPT);
    tiga_channel_close(ch);
    remove_dir(dir);
}

typedef struct {
    tiga_channel *ch;
    int thread;
} worker_arg;

#define PER_THREAD 300
static void *writer(void *p)
{
    worker_arg *a = p;
    char msg[32];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(msg, sizeof msg, "t%d-%d", a->thread, i);
        tiga_message m = {(const uint8_t *)msg, (size_t)n, NULL};
        int rc = tiga_channel_append(a->ch, &m, 1, NULL);
        if (rc)
            fprintf(stderr, "append failed: %s %s\n", tiga_strerror(rc), tiga_last_error());
    }
    return NULL;
}

static void mt_options(tiga_channel_options *o)
{
    tiga_channel_options_init(o);
    o->capacity = 4 << 20;
    o->min_age_ms = 600000;
}

/* dir k: 4 threads append PER_THREAD messages each, two through one shared
 * handle, two through their own */
static int child_writers(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *dir = argv[0];
    int k = atoi(argv[1]);
    tiga_channel_options o;
    mt_options(&o);
    tiga_channel *shared = NULL, *own[2] = {NULL, NULL};
    if (tiga_channel_open(dir, "mt", &o, &shared))
        return 3;
    test_thread th[4];
    worker_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t].thread = k * 4 + t;
        if (t < 2) {
            args[t].ch = shared;
        } else {
            if (tiga_channel_open(dir, "mt", &o, &own[t - 2]))
                return 3;
            args[t].ch = own[t - 2];
        }
        if (thread_start(&th[t], writer, &args[t]))
            return 4;
    }
    for (int t = 0; t < 4; t++)
        thread_join(th[t]);
    tiga_channel_close(shared);
    tiga_channel_close(own[0]);
    tiga_channel_close(own[1]);
    return 0;
}

static void test_concurrent_writers(void)
{
    /* 2 processes x 4 threads (half sharing one handle, half with their own)
     * append; afterwards every id 1..N is present exactly once. */
    char *dir = temp_dir();
    tiga_channel_options o;
    mt_options(&o);
    test_proc kids[2];
    for (int k = 0; k < 2; k++)
        kids[k] = spawn_child("child_writers", dir, k ? "1" : "0", NULL, NULL);
    for (int k = 0; k < 2; k++)
        CHECK(wait_child(kids[k]) == 0);
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "mt", &o, &ch), TIGA_OK);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    if (r) {
        int total = 8 * PER_THREAD;
        CHECK((int)r->count == total && r->last_id == total);
        static char seen[8][PER_THREAD];
        memset(seen, 0, sizeof seen);
        int ok = 1;
        for (size_t i = 0; i < r->count; i++) {
            if (r->entries[i].id != (int64_t)i + 1)
                ok = 0;
            int t, n;
            char tmp[40] = {0};
            memcpy(tmp, r->entries[i].message, r->entries[i].message_len < 39 ? r->entries[i].message_len : 39);
            if (sscanf(tmp, "t%d-%d", &t, &n) == 2 && t >= 0 && t < 8 && n >= 0 && n < PER_THREAD)
                seen[t][n]++;
        }
        for (int t = 0; t < 8; t++)
            for (int n = 0; n < PER_THREAD; n++)
                if (seen[t][n] != 1)
                    ok = 0;
        CHECK(ok);
        tiga_read_result_free(r);
    }
    tiga_channel_close(ch);
    remove_dir(dir);
}

typedef struct {
    tiga_channel *ch;
    int k;        /* thread number */
    size_t len;   /* bytes per message */
    int64_t id;
    int rc;
} gc_arg;

static void *gc_writer(void *p)
{
    gc_arg *a = p;
    static char big[8][8192];
    memset(big[a->k], 'a' + a->k, a->len);
    /* threads with odd numbers append two messages in one call */
    tiga_message m[2] = {{(const uint8_t *)big[a->k], a->len, NULL},
                         {(const uint8_t *)big[a->k], a->len, NULL}};
    a->rc = tiga_channel_append(a->ch, m, (size_t)(a->k % 2 + 1), &a->id);
    return NULL;
}

/* Hold the channel's append lock from outside (tiga_lock_open), start the threads, wait until all
 * of them queued on the handle, release. */
static void run_held(const char *dir, const char *name, tiga_channel *ch, gc_arg *args, int n)
{
    tiga_lock *held = NULL;
    CHECK_RC(tiga_lock_open(dir, name, 1000, &held), TIGA_OK);
    test_thread th[8];
    for (int t = 0; t < n; t++)
        CHECK(thread_start(&th[t], gc_writer, &args[t]) == 0);
    int waited = 0;
    while (tiga_channel_pending_writes(ch) < (size_t)n && waited < 10000) {
        sleep_ms(1);
        waited++;
    }
    CHECK(tiga_channel_pending_writes(ch) == (size_t)n);
    tiga_lock_close(held);
    for (int t = 0; t < n; t++)
        thread_join(th[t]);
    CHECK(tiga_channel_pending_writes(ch) == 0);
}

static void test_group_commit(void)
{
    /* Appends queued on one handle while the lock is busy go out in one
     * version: same timestamp, consecutive ids per call, one buffer switch. */
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.min_age_ms = 600000;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "gc", &o, &ch), TIGA_OK);
    CHECK_RC(tiga_channel_append1(ch, (const uint8_t *)"x", 1, NULL, NULL), TIGA_OK);
    uint64_t v0 = tiga_channel_version(ch);
    gc_arg args[4];
    for (int t = 0; t < 4; t++)
        args[t] = (gc_arg){ch, t, 10, 0, -1};
    run_held(dir, "gc", ch, args, 4);
    uint64_t v1 = tiga_channel_version(ch);
    CHECK((v0 & 1) != (v1 & 1)); /* the other buffer... */
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 1, &r), TIGA_OK);
    if (r) {
        CHECK(r->count == 6 && r->last_id == 7); /* 1 + 2 + 1 + 2 new entries */
        int ok = 1;
        for (size_t i = 0; i < r->count; i++)
            if (r->entries[i].timestamp != r->entries[0].timestamp)
                ok = 0; /* ...and one version: one timestamp */
        CHECK(ok);
        int64_t seen[8] = {0};
        for (int t = 0; t < 4; t++) {
            CHECK_RC(args[t].rc, TIGA_OK);
            for (int j = 0; j < t % 2 + 1; j++) {
                int64_t id = args[t].id + j;
                CHECK(id >= 2 && id <= 7);
                if (id < 2 || id > 7)
                    continue;
                seen[id]++;
                const tiga_entry *e = &r->entries[id - 2];
                CHECK(e->id == id && e->message_len == 10 && e->message[0] == 'a' + t);
            }
        }
        for (int id = 2; id <= 7; id++)
            CHECK(seen[id] == 1);
        tiga_read_result_free(r);
    }
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_group_commit_split(void)
{
    /* The joined write does not fit, each call alone does: every call
     * succeeds on its own (min age 0 trims the previous one).  A call that
     * can never fit fails alone; the others are written. */
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 4096;
    o.min_age_ms = 0;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "gs", &o, &ch), TIGA_OK);
    gc_arg args[4];
    for (int t = 0; t < 4; t++)
        args[t] = (gc_arg){ch, 2 * t, 1200, 0, -1}; /* one message each */
    args[3].len = 5000;                                 /* can never fit */
    run_held(dir, "gs", ch, args, 4);
    for (int t = 0; t < 3; t++)
        CHECK_RC(args[t].rc, TIGA_OK);
    CHECK_RC(args[3].rc, TIGA_ETOOBIG);
    int64_t ids = args[0].id + args[1].id + args[2].id;
    CHECK(ids == 1 + 2 + 3); /* three ids, none lost, none repeated */
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(ch, &info), TIGA_OK);
    CHECK(info.last_id == 3);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_group_commit_backpressure(void)
{
    /* Queued appends that do not fit together or alone until old entries age
     * out: with a write timeout every one of them is written, none lost. */
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 4096;
    o.min_age_ms = 150;
    o.write_timeout_ms = 5000;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "gb", &o, &ch), TIGA_OK);
    static uint8_t fill[1500];
    memset(fill, 'f', sizeof fill);
    CHECK_RC(tiga_channel_append1(ch, fill, sizeof fill, NULL, NULL), TIGA_OK);
    CHECK_RC(tiga_channel_append1(ch, fill, sizeof fill, NULL, NULL), TIGA_OK);
    gc_arg args[3];
    for (int t = 0; t < 3; t++)
        args[t] = (gc_arg){ch, 2 * t, 1500, 0, -1}; /* one 1500-byte message each */
    int64_t t0 = tiga_now_ns();
    run_held(dir, "gb", ch, args, 3);
    int64_t waited_ms = (tiga_now_ns() - t0) / 1000000;
    int64_t ids = 0;
    for (int t = 0; t < 3; t++) {
        CHECK_RC(args[t].rc, TIGA_OK);
        ids += args[t].id;
    }
    CHECK(ids == 3 + 4 + 5);
    CHECK(waited_ms >= 100); /* they had to wait for the first two to age out */
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(ch, &info), TIGA_OK);
    CHECK(info.last_id == 5);
    tiga_channel_close(ch);
    remove_dir(dir);
}

/* A reader that keeps up with big entries reads each new payload as a delta
 * (header and new entries from the file, kept entries from its cache), also
 * when its cache has to move its entries back to the start of the buffer;
 * what it returns is what a fresh handle reads whole. */
static void test_delta_reads(void)
{
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 1 << 20;
    tiga_channel *w = NULL, *r = NULL, *fresh = NULL;
    CHECK_RC(tiga_channel_open(dir, "dr", &o, &w), TIGA_OK);
    CHECK_RC(tiga_channel_open(dir, "dr", NULL, &r), TIGA_OK);
    enum { BIG = 48 * 1024, N = 120 };
    uint8_t *msg = malloc(BIG);
    int64_t last = 0, bad = 0, max_retained = 0;
    for (int i = 1; i <= N; i++) {
        for (size_t k = 0; k < BIG; k++)
            msg[k] = (uint8_t)(i * 31 + k);
        tiga_message m = {msg, BIG, NULL};
        int64_t id = 0;
        CHECK_RC(tiga_channel_append(w, &m, 1, &id), TIGA_OK);
        /* acknowledged entries may go at any age: about three stay */
        CHECK_RC(tiga_channel_set_ack(w, id - 3), TIGA_OK);
        /* trimming is lazy, but the dead run never outgrows the live part */
        tiga_channel_info wi;
        CHECK_RC(tiga_channel_info_get(w, &wi), TIGA_OK);
        max_retained = wi.retained > max_retained ? wi.retained : max_retained;
        tiga_read_result *res = NULL;
        CHECK_RC(tiga_channel_read(r, last, &res), TIGA_OK);
        if (!res)
            continue;
        bad += res->count != 1 || res->entries[0].id != i || res->entries[0].message_len != BIG ||
               memcmp(res->entries[0].message, msg, BIG) != 0;
        last = res->last_id;
        tiga_read_result_free(res);
    }
    CHECK(bad == 0 && last == N);
    CHECK(max_retained >= 4 && max_retained <= 2 * 3 + 1);
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(r, &info), TIGA_OK);
    CHECK(info.delta_loads >= N - 10 && info.full_loads + info.delta_loads == N);
    CHECK_RC(tiga_channel_open(dir, "dr", NULL, &fresh), TIGA_OK);
    tiga_read_result *a = NULL, *b = NULL;
    CHECK_RC(tiga_channel_read(r, 0, &a), TIGA_OK);
    CHECK_RC(tiga_channel_read(fresh, 0, &b), TIGA_OK);
    CHECK(a && b && a->count >= 2 && a->count == b->count && a->bytes_len == b->bytes_len &&
          memcmp(a->bytes, b->bytes, a->bytes_len) == 0);
    tiga_read_result_free(a);
    tiga_read_result_free(b);
    free(msg);
    tiga_channel_close(fresh);
    tiga_channel_close(r);
    tiga_channel_close(w);
    remove_dir(dir);
}

/* Delta reads where the new part is most of the payload (copied and hashed
 * in one pass) alternate with ones where the kept part is (copied, then
 * hashed): every read is a delta and returns the bytes written. */
static void test_delta_reads_big_and_small_tails(void)
{
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 1 << 20;
    tiga_channel *w = NULL, *r = NULL;
    CHECK_RC(tiga_channel_open(dir, "dt", &o, &w), TIGA_OK);
    CHECK_RC(tiga_channel_open(dir, "dt", NULL, &r), TIGA_OK);
    enum { BIG = 320 * 1024, SMALL = 80 * 1024, N = 40 };
    uint8_t *msg = malloc(BIG);
    int64_t last = 0, bad = 0;
    for (int i = 1; i <= N; i++) {
        size_t len = i % 2 ? BIG : SMALL;
        for (size_t k = 0; k < len; k++)
            msg[k] = (uint8_t)(i * 7 + k * 3);
        tiga_message m = {msg, len, NULL};
        int64_t id = 0;
        CHECK_RC(tiga_channel_append(w, &m, 1, &id), TIGA_OK);
        CHECK_RC(tiga_channel_set_ack(w, id - 1), TIGA_OK); /* about one entry kept */
        tiga_read_result *res = NULL;
        CHECK_RC(tiga_channel_read(r, last, &res), TIGA_OK);
        if (!res)
            continue;
        bad += res->count != 1 || res->entries[0].id != i || res->entries[0].message_len != len ||
               memcmp(res->entries[0].message, msg, len) != 0;
        last = res->last_id;
        tiga_read_result_free(res);
    }
    CHECK(bad == 0 && last == N);
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(r, &info), TIGA_OK);
    CHECK(info.delta_loads >= N - 3 && info.full_loads + info.delta_loads == N);
    free(msg);
    tiga_channel_close(r);
    tiga_channel_close(w);
    remove_dir(dir);
}

/* The data files are read through their mappings.  One truncated below the
 * mapped pages by another process makes the read fault: the read reports
 * TIGA_ETRUNCATED and the process lives on. */
static void test_truncated_under_the_mapping(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "t", NULL, &ch), TIGA_OK);
    enum { BIG = 20000 };
    uint8_t *big = calloc(1, BIG);
    tiga_message m = {big, BIG, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    tiga_channel *other = NULL;
    CHECK_RC(tiga_channel_open(dir, "t", NULL, &other), TIGA_OK);
    char dn[16];
    snprintf(dn, sizeof dn, "_data_%u", (unsigned)(tiga_channel_version(ch) & 1));
#if TEST_WINDOWS
    /* Windows refuses to shorten a file that has a view (what the SIGBUS
     * guard protects against on POSIX cannot happen), and reads go on */
    CHECK(set_file_size(P(dir, "t", dn), 0) != 0);
    tiga_read_result *rw = NULL;
    CHECK_RC(tiga_channel_read(other, 0, &rw), TIGA_OK);
    CHECK(rw && rw->count == 1 && rw->entries[0].message_len == BIG);
    tiga_read_result_free(rw);
#else
    for (int rep = 0; rep < 3; rep++) {
        CHECK(set_file_size(P(dir, "t", dn), 0) == 0);
        tiga_read_result *r = NULL;
        CHECK_RC(tiga_channel_read(other, 0, &r), TIGA_ETRUNCATED);
        CHECK(r == NULL && strstr(tiga_last_error(), "truncated") != NULL);
    }
    CHECK(set_file_size(P(dir, "t", dn), 1048576) == 0);
#endif
    free(big);
    tiga_channel_close(other);
    tiga_channel_close(ch);
    remove_dir(dir);
}

#if !TEST_WINDOWS
static volatile uint8_t own_handler_ran;
static void own_sigbus(int sig)
{
    (void)sig;
    _exit(42);
}

/* Like Python's faulthandler: put the previous handler back and raise again. */
static struct sigaction fh_prev;
static void fh_sigbus(int sig)
{
    sigaction(SIGBUS, &fh_prev, NULL);
    raise(sig);
}

/* A SIGBUS that is not a channel's copy goes where it would have gone: to a
 * handler installed before the channel, else the default (death) -- also
 * when a handler that hands signals back to ours came in between two opens. */
static void test_other_sigbus_is_not_swallowed(void)
{
    for (int with_handler = 0; with_handler < 3; with_handler++) {
        char *dir = temp_dir();
        pid_t pid = fork();
        if (pid == 0) {
            if (with_handler == 1)
                signal(SIGBUS, own_sigbus);
            tiga_channel *ch = NULL, *ch2 = NULL;
            if (tiga_channel_open(dir, "s", NULL, &ch) != TIGA_OK)
                _exit(3);
            if (with_handler == 2) {
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = fh_sigbus;
                sa.sa_flags = SA_NODEFER;
                sigaction(SIGBUS, &sa, &fh_prev);
                if (tiga_channel_open(dir, "s2", NULL, &ch2) != TIGA_OK)
                    _exit(3);
            }
            char f[300];
            snprintf(f, sizeof f, "%s/other", dir);
            int fd = open(f, O_RDWR | O_CREAT, 0600);
            if (fd < 0 || ftruncate(fd, 8192) != 0)
                _exit(4);
            volatile uint8_t *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED || ftruncate(fd, 0) != 0)
                _exit(5);
            /* The fault below is deliberate, and a sanitizer reports it as a BUS
             * error before the process dies: that report would only alarm a
             * reader of a passing log, so the child's stderr goes to /dev/null.
             * The parent checks how the child ended. */
            int quiet = open("/dev/null", O_WRONLY);
            if (quiet >= 0)
                dup2(quiet, 2);
            own_handler_ran = p[4096];
            _exit(6);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (with_handler == 1)
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
        else /* killed by it, or (under a sanitizer) reported and exited */
            CHECK(WIFSIGNALED(status) ? WTERMSIG(status) == SIGBUS
                                      : WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                            (WEXITSTATUS(status) < 3 || WEXITSTATUS(status) > 6));
        remove_dir(dir);
    }
}
#else
static void test_other_sigbus_is_not_swallowed(void)
{
    SKIP("Windows has no SIGBUS, and the copies through a view cannot fault (see test_truncated_under_the_mapping)");
}
#endif

/* What the Node addon does to a channel (PROTOCOL sections 1 and 3): grows its
 * data files to 1 MiB under a handle that mapped them smaller, and resets the
 * log to [0, []].  The old handle follows the growth, reads the new log from
 * its start, and never issues an id it has seen. */
static void put_payload(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char state[512];
    snprintf(state, sizeof state, "%s", P(dir, name, "_state"));
    uint64_t v = 0;
    CHECK(read_at(state, 0, &v, 8) == 0);
    unsigned next = v == 0 ? 0 : 1 - (unsigned)(v & 1);
    CHECK(write_at(P(dir, name, next ? "_data_1" : "_data_0"), 0, p, n) == 0);
    v = next | ((uint64_t)n << 1) | ((tiga_wyhash(p, n, 0) & 0xFFFFFF) << 40);
    CHECK(write_at(state, 0, &v, 8) == 0);
}

static void test_peer_growth_and_reset(void)
{
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 65536;
    tiga_channel *a = NULL, *b = NULL;
    CHECK_RC(tiga_channel_open(dir, "peer", &o, &a), TIGA_OK);
    int64_t id = 0;
    CHECK_RC(tiga_channel_append1(a, (const uint8_t *)"a", 1, NULL, &id), TIGA_OK);
    CHECK(set_file_size(P(dir, "peer", "_data_0"), 1 << 20) == 0);
    CHECK(set_file_size(P(dir, "peer", "_data_1"), 1 << 20) == 0);
    CHECK_RC(tiga_channel_open(dir, "peer", NULL, &b), TIGA_OK);
    size_t big = 300000;
    uint8_t *m = malloc(big);
    memset(m, 7, big);
    CHECK_RC(tiga_channel_append1(b, m, big, NULL, &id), TIGA_OK);
    CHECK(id == 2 && tiga_channel_capacity(a) == 65536);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(a, 0, &r), TIGA_OK); /* remaps, then reads */
    CHECK(r && r->count == 2 && r->entries[1].message_len == big && !r->reset);
    tiga_read_result_free(r);
    CHECK(tiga_channel_capacity(a) == 1 << 20);
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(a, &info), TIGA_OK);
    CHECK(info.grown == 1 && info.high_id == 2 && info.resets == 0);
    /* the log goes back: [0, []], then [1, [entry 1]] by a peer */
    const uint8_t empty[] = {0x92, 0x00, 0x90};
    put_payload(dir, "peer", empty, sizeof empty);
    CHECK_RC(tiga_channel_read(a, 2, &r), TIGA_OK);
    CHECK(r && r->reset && r->count == 0 && r->last_id == 0);
    tiga_read_result_free(r);
    tiga_message one = {(const uint8_t *)"p", 1, NULL};
    uint8_t *lp = NULL;
    size_t ln = 0;
    CHECK_RC(tiga_logbook_append(NULL, 0, &one, 1, "0c6a8e6e-2b1d-4f7c-9a3b-5d4e3f2a1b0c",
                                 tiga_now_ns(), 0, 1 << 20, &lp, &ln), TIGA_OK);
    put_payload(dir, "peer", lp, ln);
    tiga_free(lp);
    CHECK_RC(tiga_channel_read(a, 2, &r), TIGA_OK);
    CHECK(r && r->reset && r->count == 1 && r->entries[0].id == 1 && r->last_id == 1);
    tiga_read_result_free(r);
    /* our next id is above everything this handle saw, and the peer's entry stays
     * (its clock is not ours: aged from when we first saw it) */
    CHECK_RC(tiga_channel_append1(a, (const uint8_t *)"z", 1, NULL, &id), TIGA_OK);
    CHECK(id == 3);
    CHECK_RC(tiga_channel_read(a, 0, &r), TIGA_OK);
    CHECK(r && r->count == 2 && r->entries[0].id == 1 && r->entries[1].id == 3 &&
          r->last_id == 3 && r->schema_version == 1); /* two entries: enveloped */
    tiga_read_result_free(r);
    CHECK_RC(tiga_channel_info_get(a, &info), TIGA_OK);
    CHECK(info.resets == 1 && info.high_id == 3);
    /* a version word claiming more than the files hold stays corrupt */
    CHECK_RC(tiga_channel_read(b, 0, &r), TIGA_OK);
    tiga_read_result_free(r);
    uint64_t liar = 1 | ((uint64_t)(2 << 20) << 1);
    CHECK(write_at(P(dir, "peer", "_state"), 0, &liar, 8) == 0);
    CHECK_RC(tiga_channel_read(a, 0, &r), TIGA_ECORRUPT);
    free(m);
    tiga_channel_close(a);
    tiga_channel_close(b);
    remove_dir(dir);
}

static const test_child children[] = {CHILD(child_writers), {NULL, NULL}};

/* Packed appends (one buffer, an array of lengths) and borrowed reads (the
 * entries' bytes are the handle's own copy until read_done). */
static void test_packed_and_borrowed(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "pk", NULL, &ch), TIGA_OK);
    if (!ch)
        return;
    const uint8_t data[] = "onetwothree";
    size_t lens[3] = {3, 3, 5};
    int64_t first = 0;
    CHECK_RC(tiga_channel_append_packed(ch, data, 11, lens, 3, "text/plain", &first), TIGA_OK);
    CHECK(first == 1);
    size_t bad[2] = {3, 9};
    CHECK_RC(tiga_channel_append_packed(ch, data, 11, bad, 2, NULL, &first), TIGA_EINVAL);
    size_t shortl[2] = {3, 3};
    CHECK_RC(tiga_channel_append_packed(ch, data, 11, shortl, 2, NULL, &first), TIGA_EINVAL);
    CHECK_RC(tiga_channel_append_packed(ch, data, 11, lens, 0, NULL, &first), TIGA_EINVAL);
    size_t zero[2] = {0, 0};
    CHECK_RC(tiga_channel_append_packed(ch, data, 0, zero, 2, NULL, &first), TIGA_OK);
    CHECK(first == 4);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read_borrow(ch, 1, &r), TIGA_OK);
    CHECK(r && r->count == 4 && r->entries[0].id == 2 && r->entries[0].message_len == 3 &&
          memcmp(r->entries[0].message, "two", 3) == 0 && r->entries[1].message_len == 5 &&
          memcmp(r->entries[1].message, "three", 5) == 0 && r->entries[2].message_len == 0);
    CHECK(r->entries[0].media_type_len == 10 &&
          memcmp(r->entries[0].media_type, "text/plain", 10) == 0 && !r->entries[2].media_type);
    tiga_channel_read_done(ch, r);
    /* the handle is usable again */
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r && r->count == 5);
    tiga_read_result_free(r);
    CHECK_RC(tiga_channel_read_borrow(NULL, 0, &r), TIGA_EINVAL);
    tiga_channel_read_done(NULL, NULL);
    tiga_channel_close(ch);
    remove_dir(dir);
}

TEST_MAIN_CHILDREN(children, T(test_files_and_roundtrip), T(test_bad_names), T(test_limits), T(test_damaged),
          T(test_corrupt_word), T(test_concurrent_writers), T(test_group_commit),
          T(test_group_commit_split), T(test_group_commit_backpressure), T(test_delta_reads), T(test_delta_reads_big_and_small_tails),
          T(test_truncated_under_the_mapping), T(test_other_sigbus_is_not_swallowed),
          T(test_peer_growth_and_reset), T(test_packed_and_borrowed))
