/* SPDX-License-Identifier: MIT */
/* Declared subscribers: retention by position, the read age, capacity,
 * dead subscribers let go of, hostile subscriber files. */
#include "tiga.h"
#include "check.h"

static char path[512];
static const char *P(const char *dir, const char *name, const char *suffix)
{
    snprintf(path, sizeof path, "%s/tiga_%s%s", dir, name, suffix);
    return path;
}

static tiga_channel *open_with(const char *dir, const char *name, int64_t min_age_ms,
                               int64_t read_min_age_ms, uint64_t capacity)
{
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.min_age_ms = min_age_ms;
    o.read_min_age_ms = read_min_age_ms;
    if (capacity)
        o.capacity = capacity;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, name, &o, &ch), TIGA_OK);
    return ch;
}

static int64_t put(tiga_channel *ch, size_t len)
{
    static uint8_t buf[70000];
    tiga_message m = {buf, len, NULL};
    int64_t id = 0;
    int rc = tiga_channel_append(ch, &m, 1, &id);
    return rc ? rc : id;
}

/* The ids a reader finds retained. */
static void retained(tiga_channel *ch, int64_t *first, int64_t *count)
{
    tiga_read_result *r = NULL;
    *first = *count = -1;
    if (tiga_channel_read(ch, 0, &r) == TIGA_OK) {
        *first = r->count ? r->entries[0].id : 0;
        *count = (int64_t)r->count;
    }
    tiga_read_result_free(r);
}

/* A fresh writer handle looks for the subscribers file at its first write. */
static void test_unread_entries_are_kept_whatever_their_age(void)
{
    char *dir = temp_dir();
    tiga_channel *sub_ch = open_with(dir, "s", 1000, -1, 0);
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(sub_ch, 0, &sub), TIGA_OK);
    CHECK(file_size(P(dir, "s", "_subs")) == TIGA_SUBS_SIZE);
    CHECK(sub && tiga_subscriber_slot(sub) == 0);
    /* min_age 0 would keep only the newest entry; the subscriber read nothing */
    tiga_channel *w = open_with(dir, "s", 0, 0, 0);
    for (int i = 1; i <= 5; i++)
        CHECK(put(w, 10) == i);
    int64_t first, count;
    retained(w, &first, &count);
    CHECK(first == 1 && count == 5);
    int32_t live = -1;
    int64_t lowest = -2;
    CHECK_RC(tiga_channel_subscribers(w, &live, &lowest), TIGA_OK);
    CHECK(live == 1 && lowest == 0);
    /* read up to 3: with read_min_age 0 those go at the next write */
    CHECK_RC(tiga_subscriber_set(sub, 3), TIGA_OK);
    CHECK(put(w, 10) == 6);
    retained(w, &first, &count);
    CHECK(first == 4 && count == 3);
    /* everything read: only what was just written stays */
    CHECK_RC(tiga_subscriber_set(sub, 6), TIGA_OK);
    CHECK(put(w, 10) == 7);
    retained(w, &first, &count);
    CHECK(first == 7 && count == 1);
    /* the subscriber goes: the minimum age alone decides again */
    tiga_subscriber_close(sub);
    CHECK_RC(tiga_channel_subscribers(w, &live, &lowest), TIGA_OK);
    CHECK(live == 0 && lowest == -1);
    CHECK(put(w, 10) == 8);
    retained(w, &first, &count);
    CHECK(first == 8 && count == 1);
    CHECK_RC(tiga_subscriber_open(sub_ch, -1, &sub), TIGA_EINVAL);
    CHECK_RC(tiga_subscriber_set(NULL, 1), TIGA_EINVAL);
    tiga_channel_close(w);
    tiga_channel_close(sub_ch);
    remove_dir(dir);
}

/* Entries every subscriber read are kept read_min_age (default: min_age) for
 * readers that declare nothing. */
static void test_read_entries_keep_the_read_age(void)
{
    char *dir = temp_dir();
    tiga_channel *sub_ch = open_with(dir, "s", 1000, -1, 0);
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(sub_ch, 100, &sub), TIGA_OK); /* beyond the log: nothing read */
    tiga_channel *w = open_with(dir, "s", 60000, -1, 0);        /* read age = min_age */
    for (int i = 1; i <= 3; i++)
        put(w, 10);
    CHECK_RC(tiga_subscriber_set(sub, 3), TIGA_OK);
    put(w, 10);
    int64_t first, count;
    retained(w, &first, &count);
    CHECK(first == 1 && count == 4); /* read, but younger than 60 s */
    tiga_channel *w2 = open_with(dir, "s", 60000, 30, 0); /* read age 30 ms */
    retained(w2, &first, &count); /* another handle's entries age from its first sight */
    sleep_ms(60);
    put(w2, 10);
    retained(w2, &first, &count);
    CHECK(first == 4 && count == 2); /* 1..3 read and 60 ms old; 4 unread */
    tiga_subscriber_close(sub);
    tiga_channel_close(w2);
    tiga_channel_close(w);
    tiga_channel_close(sub_ch);
    remove_dir(dir);
}

/* At the capacity a writer fails (or waits within write_timeout) instead of
 * dropping what a subscriber has not read. */
static void test_full_when_a_subscriber_lags(void)
{
    char *dir = temp_dir();
    tiga_channel *w = open_with(dir, "s", 0, 0, 4096);
    CHECK(put(w, 10) == 1);
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(w, 1, &sub), TIGA_OK);
    sleep_ms(20); /* the writer looks for the file again */
    int64_t id = 0, rc = 0;
    for (int i = 0; i < 100 && (rc = put(w, 1000)) > 0; i++)
        id = rc;
    CHECK(rc == TIGA_EFULL && id >= 2);
    CHECK(strstr(tiga_last_error(), "declared subscriber") != NULL);
    int64_t first, count;
    retained(w, &first, &count);
    CHECK(first == 2 && count == id - 1); /* nothing it has not read went */
    /* the subscriber catches up: writing goes on */
    CHECK_RC(tiga_subscriber_set(sub, id), TIGA_OK);
    CHECK(put(w, 1000) == id + 1);
    tiga_subscriber_close(sub);
    tiga_channel_close(w);
    remove_dir(dir);
}

/* dir name: declare a subscriber at position 0 and sleep until killed */
static int child_subscribe_forever(int argc, char **argv)
{
    tiga_channel *ch = NULL;
    tiga_subscriber *sub = NULL;
    if (argc < 2 || tiga_channel_open(argv[0], argv[1], NULL, &ch) ||
        tiga_subscriber_open(ch, 0, &sub))
        return 3;
    for (;;)
        sleep_ms(1000);
}

static const test_child children[] = {CHILD(child_subscribe_forever), {NULL, NULL}};

/* A subscriber killed with its slot held stops holding entries back: the
 * writer lets go of it when a write does not fit. */
static void test_a_killed_subscriber_is_let_go_of(void)
{
    char *dir = temp_dir();
    tiga_channel *w = open_with(dir, "k", 0, 0, 4096);
    test_proc kid = spawn_child("child_subscribe_forever", dir, "k", NULL, NULL);
    int32_t live = 0;
    int64_t lowest;
    for (int i = 0; i < 1000 && live != 1; i++) {
        sleep_ms(10);
        tiga_channel_subscribers(w, &live, &lowest);
    }
    CHECK(live == 1);
    sleep_ms(20);
    int64_t rc = 0;
    for (int i = 0; i < 100 && (rc = put(w, 1000)) > 0; i++)
        ;
    CHECK(rc == TIGA_EFULL); /* it is alive and reads nothing */
    kill_child(kid);
    CHECK(wait_child(kid) != 0);
    CHECK(put(w, 1000) > 0); /* the dead one is let go of at once */
    CHECK_RC(tiga_channel_subscribers(w, &live, &lowest), TIGA_OK);
    CHECK(live == 0);
    /* its slot is free for the next subscriber */
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(w, 0, &sub), TIGA_OK);
    CHECK(sub && tiga_subscriber_slot(sub) == 0);
    tiga_subscriber_close(sub);
    tiga_channel_close(w);
    remove_dir(dir);
}

/* Garbage in the subscribers file: writers ignore it (the minimum age
 * decides), subscribers refuse it; hostile positions only keep more. */
static void test_hostile_subscriber_files(void)
{
    char *dir = temp_dir();
    tiga_channel *w = open_with(dir, "h", 0, 0, 0);
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(w, 0, &sub), TIGA_OK);
    tiga_subscriber_close(sub);
    /* a position far beyond the log, and one below zero: nothing read */
    uint8_t slot[64] = {0};
    int64_t token = ((int64_t)test_pid() << 32) | 1, pos = INT64_MAX;
    memcpy(slot, &token, 8);
    int32_t pid = test_pid();
    memcpy(slot + 16, &pid, 4);
    memcpy(slot + 24, &pos, 8);
    CHECK(file_rw_at(P(dir, "h", "_subs"), 64, slot, 64, 1) == 0);
    pos = INT64_MIN;
    memcpy(slot + 24, &pos, 8);
    CHECK(file_rw_at(P(dir, "h", "_subs"), 128, slot, 64, 1) == 0);
    tiga_channel *w2 = open_with(dir, "h", 0, 0, 0);
    for (int i = 0; i < 4; i++)
        put(w2, 10);
    int64_t first, count;
    retained(w2, &first, &count);
    CHECK(first == 1 && count == 4);
    tiga_channel_close(w2);
    /* a header that is not ours */
    CHECK(file_rw_at(P(dir, "h", "_subs"), 0, "GARBAGE!", 8, 1) == 0);
    w2 = open_with(dir, "h", 0, 0, 0);
    CHECK(put(w2, 10) == 5);
    retained(w2, &first, &count);
    CHECK(first == 5 && count == 1);
    CHECK_RC(tiga_subscriber_open(w2, 0, &sub), TIGA_ECORRUPT);
    tiga_channel_close(w2);
    /* a short file */
    CHECK(set_file_size(P(dir, "h", "_subs"), 100) == 0);
    w2 = open_with(dir, "h", 0, 0, 0);
    CHECK(put(w2, 10) == 6);
    CHECK_RC(tiga_subscriber_open(w2, 0, &sub), TIGA_ECORRUPT);
    tiga_channel_close(w2);
    tiga_channel_close(w);
    remove_dir(dir);
}

static void test_all_slots_held(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = open_with(dir, "full", 1000, -1, 0);
    static tiga_subscriber *subs[TIGA_SUBS_SLOTS];
    for (int i = 0; i < TIGA_SUBS_SLOTS; i++)
        CHECK_RC(tiga_subscriber_open(ch, 0, &subs[i]), TIGA_OK);
    tiga_subscriber *one = NULL;
    CHECK_RC(tiga_subscriber_open(ch, 0, &one), TIGA_ENOSLOT);
    tiga_subscriber_close(subs[5]);
    CHECK_RC(tiga_subscriber_open(ch, 0, &one), TIGA_OK);
    CHECK(tiga_subscriber_slot(one) == 5);
    tiga_subscriber_close(one);
    for (int i = 0; i < TIGA_SUBS_SLOTS; i++)
        if (i != 5)
            tiga_subscriber_close(subs[i]);
    tiga_channel_close(ch);
    remove_dir(dir);
}

/* ---- pacing */

static tiga_channel *open_paced(const char *dir, const char *name, int64_t pace_ms)
{
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.min_age_ms = 0;
    o.read_min_age_ms = 0;
    o.capacity = 16 << 20;
    o.pace_ms = pace_ms;
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, name, &o, &ch), TIGA_OK);
    return ch;
}

enum { PACE_ENTRY = 300 * 1024, PACE_N = 30 };

static int64_t put_big(tiga_channel *ch, int i)
{
    static uint8_t buf[PACE_ENTRY];
    memset(buf, (uint8_t)i, sizeof buf);
    tiga_message m = {buf, sizeof buf, NULL};
    int64_t id = 0;
    int rc = tiga_channel_append(ch, &m, 1, &id);
    return rc ? rc : id;
}

typedef struct {
    tiga_channel *ch;   /* the subscriber's handle (the writer's own, in one case) */
    tiga_subscriber *sub;
    int64_t got, bad;
} pace_reader;

/* A declared subscriber that reads as fast as it can and publishes each
 * position once the entries are in its hands. */
static void *pace_read(void *p)
{
    pace_reader *r = p;
    int64_t last = 0;
    for (int spins = 0; last < PACE_N && spins < 200000; spins++) {
        tiga_read_result *res = NULL;
        if (tiga_channel_read(r->ch, last, &res) != TIGA_OK || !res) {
            r->bad++;
            return NULL;
        }
        for (size_t k = 0; k < res->count; k++) {
            const tiga_entry *e = &res->entries[k];
            r->bad += e->id != last + 1 + (int64_t)k || e->message_len != PACE_ENTRY ||
                      e->message[PACE_ENTRY - 1] != (uint8_t)e->id;
        }
        r->got += (int64_t)res->count;
        r->bad += res->missed;
        last = res->last_id;
        tiga_read_result_free(res);
        tiga_subscriber_set(r->sub, last);
        if (last < PACE_N)
            sleep_ms(0);
    }
    return NULL;
}

/* A writer that runs ahead of a subscriber which keeps reading waits for it
 * (pacing): nothing is missed, whether the subscriber reads through its own
 * handle or through the writer's (the wait holds no lock it needs). */
static void test_pacing_loses_nothing(void)
{
    for (int own = 0; own < 2; own++) {
        char *dir = temp_dir();
        tiga_channel *w = open_paced(dir, "p", 1000);
        pace_reader r = {own ? w : open_paced(dir, "p", 1000), NULL, 0, 0};
        CHECK_RC(tiga_subscriber_open(r.ch, 0, &r.sub), TIGA_OK);
        test_thread t;
        CHECK(thread_start(&t, pace_read, &r) == 0);
        int64_t fails = 0, t0 = test_now_ms();
        for (int i = 1; i <= PACE_N; i++)
            fails += put_big(w, i) != i;
        thread_join(t);
        CHECK(fails == 0 && r.got == PACE_N && r.bad == 0);
        /* (a wait that kept the reader out would cost up to 1 s a write) */
        CHECK(test_now_ms() - t0 < 5000);
        tiga_subscriber_close(r.sub);
        if (!own)
            tiga_channel_close(r.ch);
        tiga_channel_close(w);
        remove_dir(dir);
    }
}

/* A declared subscriber that does not read (stopped, hung) is not waited
 * for: its position does not move, so after the first 10 ms writes go on at
 * once, even with a pace of 1 s (30 waits of 1 s would take 30 s). */
static void test_pacing_does_not_wait_for_a_stopped_subscriber(void)
{
    char *dir = temp_dir();
    tiga_channel *w = open_paced(dir, "q", 1000);
    tiga_channel *sc = open_paced(dir, "q", 1000);
    tiga_subscriber *sub = NULL;
    CHECK_RC(tiga_subscriber_open(sc, 0, &sub), TIGA_OK);
    int64_t t0 = test_now_ms(), fails = 0;
    for (int i = 1; i <= PACE_N; i++)
        fails += put_big(w, i) != i;
    CHECK(fails == 0);
    CHECK(test_now_ms() - t0 < 3000);
    int64_t first, count;
    retained(w, &first, &count);
    CHECK(first == 1 && count == PACE_N); /* all kept for it */
    /* the default pace is 1 ms; a negative one is refused */
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    CHECK(o.pace_ms == 1);
    o.pace_ms = -1;
    tiga_channel *bad = NULL;
    CHECK_RC(tiga_channel_open(dir, "q", &o, &bad), TIGA_EINVAL);
    tiga_subscriber_close(sub);
    tiga_channel_close(sc);
    tiga_channel_close(w);
    remove_dir(dir);
}

TEST_MAIN_CHILDREN(children, T(test_unread_entries_are_kept_whatever_their_age),
                   T(test_read_entries_keep_the_read_age), T(test_full_when_a_subscriber_lags),
                   T(test_a_killed_subscriber_is_let_go_of), T(test_hostile_subscriber_files),
                   T(test_all_slots_held), T(test_pacing_loses_nothing),
                   T(test_pacing_does_not_wait_for_a_stopped_subscriber))
