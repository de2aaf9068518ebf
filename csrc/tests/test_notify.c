/* SPDX-License-Identifier: MIT */
/* Listener slots and wake-ups. */
#include "tiga.h"
#include "check.h"

static int64_t ms_now(void) { return tiga_now_ns() / 1000000; }

static const char *P_notify(const char *dir, const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/tiga_%s_notify", dir, name);
    return p;
}

static void test_register_and_live(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "n", NULL, &ch), TIGA_OK);
    int32_t live = -1;
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 0);
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "n", NULL, &l), TIGA_OK);
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 1);
    CHECK_RC(tiga_channel_wait_listener(ch, 0), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_ETIMEDOUT);
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_OK);
    CHECK_RC(tiga_listener_wait(l, 10, 0), TIGA_ETIMEDOUT);
    tiga_listener_close(l);
    CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
    CHECK(live == 0);
    CHECK_RC(tiga_channel_wait_listener(ch, 20), TIGA_ENOTREADY);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_full_table(void)
{
    char *dir = temp_dir();
    tiga_listener *ls[TIGA_NOTIFY_SLOTS];
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        CHECK_RC(tiga_listener_open(dir, "full", NULL, &ls[i]), TIGA_OK);
    tiga_listener *extra = NULL;
    CHECK_RC(tiga_listener_open(dir, "full", NULL, &extra), TIGA_ENOSLOT);
    tiga_listener_close(ls[5]);
    CHECK_RC(tiga_listener_open(dir, "full", NULL, &extra), TIGA_OK);
    CHECK(tiga_listener_slot(extra) == 5);
    tiga_listener_close(extra);
    for (int i = 0; i < TIGA_NOTIFY_SLOTS; i++)
        if (i != 5)
            tiga_listener_close(ls[i]);
    remove_dir(dir);
}

/* ---- children: the other process of a two-process test */

/* dir: register a listener on "dead" and exit without unregistering */
static int child_listen_and_exit(int argc, char **argv)
{
    tiga_listener *l = NULL;
    return argc >= 1 && tiga_listener_open(argv[0], "dead", NULL, &l) == TIGA_OK ? 0 : 3;
}

/* dir name: register a listener on name and sleep until killed */
static int child_listen_forever(int argc, char **argv)
{
    tiga_listener *l = NULL;
    if (argc < 2 || tiga_listener_open(argv[0], argv[1], NULL, &l) != TIGA_OK)
        return 3;
    for (;;)
        sleep_ms(1000);
}

/* dir name ms: register a listener on name, hold it ms, unregister, exit */
static int child_listen_for(int argc, char **argv)
{
    tiga_listener *l = NULL;
    if (argc < 3 || tiga_listener_open(argv[0], argv[1], NULL, &l) != TIGA_OK)
        return 3;
    sleep_ms(atoi(argv[2]));
    tiga_listener_close(l);
    return 0;
}

/* dir name ms: open the channel, wait ms, append one entry (which signals) */
static int child_write_after(int argc, char **argv)
{
    tiga_channel *ch = NULL;
    if (argc < 3 || tiga_channel_open(argv[0], argv[1], NULL, &ch))
        return 3;
    sleep_ms(atoi(argv[2]));
    tiga_message m = {(const uint8_t *)"ping", 4, NULL};
    int rc = tiga_channel_append(ch, &m, 1, NULL);
    tiga_channel_close(ch);
    return rc ? 4 : 0;
}

/* dir name ms: open the channel (a peer is there), stay ms without writing */
static int child_open_quietly(int argc, char **argv)
{
    tiga_channel *ch = NULL;
    if (argc < 3 || tiga_channel_open(argv[0], argv[1], NULL, &ch))
        return 3;
    sleep_ms(atoi(argv[2]));
    tiga_channel_close(ch);
    return 0;
}

static const test_child children[] = {
    CHILD(child_listen_and_exit), CHILD(child_listen_forever), CHILD(child_listen_for),
    CHILD(child_write_after),     CHILD(child_open_quietly),   {NULL, NULL}};

static int live_on(const char *dir, const char *name)
{
    tiga_channel *ch = NULL;
    int32_t live = -1;
    if (tiga_channel_open(dir, name, NULL, &ch) == TIGA_OK)
        tiga_channel_live_listeners(ch, &live);
    tiga_channel_close(ch);
    return live;
}

static void test_dead_owner_taken_over(void)
{
    char *dir = temp_dir();
    CHECK(wait_child(spawn_child("child_listen_and_exit", dir, NULL, NULL, NULL)) == 0);
    CHECK(live_on(dir, "dead") == 0);
    /* liveness: our pid with another start time is dead */
    int32_t me = test_pid();
    int64_t start = tiga_process_start_ticks(me);
    CHECK(start > 0);
    CHECK(tiga_process_alive(me, start) == 1);
    CHECK(tiga_process_alive(me, 0) == 1);
    CHECK(tiga_process_alive(me, start - INT64_C(36000000000)) == 0);
    remove_dir(dir);
}

/* A process killed while it holds a slot (SIGKILL, TerminateProcess: nothing
 * of it unregisters): its slot counts as dead and a new listener takes it. */
static void test_killed_owner_taken_over(void)
{
    char *dir = temp_dir();
    test_proc kid = spawn_child("child_listen_forever", dir, "killed", NULL, NULL);
    int live = 0;
    for (int i = 0; i < 1000 && (live = live_on(dir, "killed")) != 1; i++)
        sleep_ms(10);
    CHECK(live == 1);
    /* its slot is taken: ours is another one */
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "killed", NULL, &l), TIGA_OK);
    int32_t mine = l ? tiga_listener_slot(l) : -1;
    CHECK(mine != 0);
    tiga_listener_close(l);
    kill_child(kid);
    CHECK(wait_child(kid) != 0);
    CHECK(live_on(dir, "killed") == 0);
    l = NULL;
    CHECK_RC(tiga_listener_open(dir, "killed", NULL, &l), TIGA_OK);
    CHECK(l && tiga_listener_slot(l) == 0); /* the dead one's slot */
    tiga_listener_close(l);
    remove_dir(dir);
}

static void test_wake_across_processes(void)
{
    char *dir = temp_dir();
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "w", NULL, &l), TIGA_OK);
    test_proc kid = spawn_child("child_write_after", dir, "w", "50", NULL);
    int64_t t0 = ms_now();
    CHECK_RC(tiga_listener_wait(l, 5000, 0), TIGA_OK);
    CHECK(ms_now() - t0 < 2000);
    CHECK(wait_child(kid) == 0);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(tiga_listener_channel(l), 0, &r), TIGA_OK);
    CHECK(r && r->count == 1);
    tiga_read_result_free(r);
    tiga_listener_close(l);
    remove_dir(dir);
}

/* Another process has the channel open but writes nothing: no wake-up. */
static void test_no_wake_without_a_write(void)
{
    char *dir = temp_dir();
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "q", NULL, &l), TIGA_OK);
    test_proc kid = spawn_child("child_open_quietly", dir, "q", "600", NULL);
    int64_t t0 = ms_now();
    CHECK_RC(tiga_listener_wait(l, 300, 0), TIGA_ETIMEDOUT);
    CHECK(ms_now() - t0 >= 290);
    CHECK(wait_child(kid) == 0);
    tiga_listener_close(l);
    remove_dir(dir);
}

/* PROTOCOL section 5's worked example, and the names our code derives. */
static void test_event_names(void)
{
    const char *example = "C:\\TIGA-IPC\\TIGA_SAMPLE.REQ.CLIENT-A_NOTIFY";
    CHECK(tiga_wyhash(example, strlen(example), 0) == UINT64_C(0x7c4a6c21e9934343));
    char name[96];
#if TEST_WINDOWS
    /* from a path as a user writes it: lower case, forward slashes, a `..` */
    CHECK_RC(tiga_event_name("c:/tiga-ipc/x/../tiga_sample.req.client-a_notify", 3, name,
                             sizeof name), TIGA_OK);
    CHECK(strcmp(name, "tiga_wait_handle_file_7c4a6c21e9934343_slot_3") == 0);
    CHECK_RC(tiga_event_name("C:\\TIGA-IPC\\TIGA_SAMPLE.REQ.CLIENT-A_NOTIFY", -1, name,
                             sizeof name), TIGA_OK);
    CHECK(strcmp(name, "tiga_wait_handle_file_7c4a6c21e9934343_listener_ready") == 0);
#else
    CHECK_RC(tiga_event_name("/tmp/tiga_x_notify", 127, name, sizeof name), TIGA_OK);
    char want[96];
    snprintf(want, sizeof want, "tiga_wait_handle_file_%016llx_slot_127",
             (unsigned long long)tiga_wyhash("/TMP/TIGA_X_NOTIFY", 18, 0));
    CHECK(strcmp(name, want) == 0);
#endif
    CHECK_RC(tiga_event_name("/tmp/tiga_x_notify", 128, name, sizeof name), TIGA_EINVAL);
    CHECK_RC(tiga_event_name("/tmp/tiga_x_notify", 0, name, 20), TIGA_EINVAL);
}

/* Windows: the peers' named events themselves.  A listener's slot event
 * exists under the section 5 name, a write in another process sets it, and
 * nothing else does; `_listener_ready` is set while a listener is
 * registered (by another process) and reset when the last one leaves. */
static void test_named_events(void)
{
#if TEST_WINDOWS
    char *dir = temp_dir();
    char np[400], name[96];
    snprintf(np, sizeof np, "%s/tiga_ev_notify", dir);
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "ev", NULL, &l), TIGA_OK);
    CHECK_RC(tiga_event_name(np, tiga_listener_slot(l), name, sizeof name), TIGA_OK);
    HANDLE ev = OpenEventA(SYNCHRONIZE | EVENT_MODIFY_STATE, FALSE, name);
    CHECK(ev != NULL);
    if (ev) {
        CHECK(WaitForSingleObject(ev, 200) == WAIT_TIMEOUT);
        test_proc kid = spawn_child("child_write_after", dir, "ev", "50", NULL);
        CHECK(WaitForSingleObject(ev, 10000) == WAIT_OBJECT_0);
        CHECK(wait_child(kid) == 0);
        CHECK(WaitForSingleObject(ev, 100) == WAIT_TIMEOUT); /* auto-reset, set once */
        CloseHandle(ev);
    }
    tiga_listener_close(l);

    CHECK_RC(tiga_event_name(np, -1, name, sizeof name), TIGA_OK);
    HANDLE ready = CreateEventA(NULL, TRUE, FALSE, name); /* as the Node addon opens it */
    CHECK(ready != NULL);
    if (ready) {
        ResetEvent(ready);
        test_proc kid = spawn_child("child_listen_for", dir, "ev", "1500", NULL);
        CHECK(WaitForSingleObject(ready, 10000) == WAIT_OBJECT_0);
        CHECK(live_on(dir, "ev") == 1);
        CHECK(wait_child(kid) == 0);
        CHECK(WaitForSingleObject(ready, 0) == WAIT_TIMEOUT); /* reset: no listener left */
        CloseHandle(ready);
    }
    remove_dir(dir);
#else
    SKIP("named events exist only on Windows (the futex words are tested above)");
#endif
}

/* Server discovery: a client's new request channel in the directory wakes a
 * directory watch; nothing happening does not. */
static void test_dirwatch_sees_a_new_channel(void)
{
    char *dir = temp_dir();
    tiga_dirwatch *w = NULL;
    CHECK_RC(tiga_dirwatch_open(dir, &w), TIGA_OK);
    CHECK_RC(tiga_dirwatch_wait(w, 200), TIGA_ETIMEDOUT);
    test_proc kid = spawn_child("child_open_quietly", dir, "svc.req.k", "0", NULL);
    int64_t t0 = ms_now();
    CHECK_RC(tiga_dirwatch_wait(w, 10000), TIGA_OK);
    CHECK(ms_now() - t0 < 5000);
    CHECK(wait_child(kid) == 0);
    CHECK(file_size(P_notify(dir, "svc.req.k")) == 128 * 24);
    tiga_dirwatch_close(w);
    remove_dir(dir);
}

/* Hostile numbers in the notify and state files (under UBSan a signed
 * overflow aborts): owner_start at the extremes, counters at INT32_MAX. */
static void test_hostile_numbers(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.reader_grace_ms = 20;
    CHECK_RC(tiga_channel_open(dir, "h", &o, &ch), TIGA_OK);
    char p[512];
    snprintf(p, sizeof p, "%s/tiga_h_notify", dir);
    const int64_t starts[] = {INT64_MIN, INT64_MAX, -1, 1};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        FILE *f = fopen(p, "r+b");
        int64_t slot[2] = {((int64_t)test_pid() << 32) | 1, starts[i]};
        int32_t pid[2] = {test_pid(), 0};
        CHECK(f && fwrite(slot, 8, 2, f) == 2 && fwrite(pid, 4, 2, f) == 2);
        fclose(f);
        int32_t live = -1;
        CHECK_RC(tiga_channel_live_listeners(ch, &live), TIGA_OK);
        CHECK(live == 0 || live == 1);
        CHECK(tiga_process_alive(test_pid(), starts[i]) == 0 || starts[i] == 1 ||
              tiga_process_alive(test_pid(), starts[i]) == 1);
    }
    snprintf(p, sizeof p, "%s/tiga_h_state", dir);
    tiga_message m = {(const uint8_t *)"x", 1, NULL};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
    FILE *f = fopen(p, "r+b");
    int32_t counters[2] = {INT32_MAX, INT32_MAX};
    CHECK(f && fseek(f, 8, SEEK_SET) == 0 && fwrite(counters, 4, 2, f) == 2);
    fclose(f);
    tiga_read_result *r = NULL;
    CHECK_RC(tiga_channel_read(ch, 0, &r), TIGA_OK);
    CHECK(r && r->count == 1);
    tiga_read_result_free(r);
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK); /* forces after the grace */
    tiga_channel_close(ch);
    remove_dir(dir);
}

/* ---- wait sets */

static void append_to(tiga_listener *l)
{
    tiga_message m = {(const uint8_t *)"w", 1, NULL};
    CHECK_RC(tiga_channel_append(tiga_listener_channel(l), &m, 1, NULL), TIGA_OK);
}

static void *kick_later(void *p)
{
    sleep_ms(50);
    tiga_waitset_kick(p);
    return NULL;
}

static void waitset_basics(int32_t flags)
{
    char *dir = temp_dir();
    const char *names[3] = {"a", "b", "c"};
    tiga_listener *ls[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        CHECK_RC(tiga_listener_open(dir, names[i], NULL, &ls[i]), TIGA_OK);
    tiga_waitset *ws = NULL;
    CHECK_RC(tiga_waitset_open(flags, &ws), TIGA_OK);
    if (!ws || !ls[0] || !ls[1] || !ls[2])
        return;
    for (int i = 0; i < 3; i++)
        CHECK_RC(tiga_waitset_add(ws, ls[i], (uint64_t)i + 1, 0, NULL), TIGA_OK);
    CHECK_RC(tiga_waitset_add(ws, ls[0], 1, 0, NULL), TIGA_EINVAL); /* a key twice */
    CHECK(tiga_waitset_size(ws) == 3);
    uint64_t keys[4];
    int32_t n = -1;
    CHECK_RC(tiga_waitset_wait(ws, 0, keys, 4, &n), TIGA_ETIMEDOUT);
    CHECK(n == 0);
    /* a write in this process */
    append_to(ls[1]);
    CHECK_RC(tiga_waitset_wait(ws, 1000, keys, 4, &n), TIGA_OK);
    CHECK(n == 1 && keys[0] == 2);
    CHECK_RC(tiga_waitset_wait(ws, 0, keys, 4, &n), TIGA_ETIMEDOUT); /* seen */
    /* the listener keeps its own news: a watch does not take them */
    CHECK_RC(tiga_listener_wait(ls[1], 0, 0), TIGA_OK);
    /* a write in another process, while the set sleeps */
    test_proc kid = spawn_child("child_write_after", dir, "c", "50", NULL);
    int64_t t0 = ms_now();
    CHECK_RC(tiga_waitset_wait(ws, 5000, keys, 4, &n), TIGA_OK);
    CHECK(n == 1 && keys[0] == 3);
    CHECK(ms_now() - t0 < 2000);
    CHECK(wait_child(kid) == 0);
    /* a kick from another thread ends the wait with nothing ready */
    test_thread t;
    CHECK(thread_start(&t, kick_later, ws) == 0);
    t0 = ms_now();
    CHECK_RC(tiga_waitset_wait(ws, 5000, keys, 4, &n), TIGA_OK);
    CHECK(n == 0);
    CHECK(ms_now() - t0 < 2000);
    thread_join(t);
    /* with nothing watched, only a kick (or the deadline) ends a wait */
    tiga_waitset *empty = NULL;
    CHECK_RC(tiga_waitset_open(flags, &empty), TIGA_OK);
    CHECK(thread_start(&t, kick_later, empty) == 0);
    t0 = ms_now();
    CHECK_RC(tiga_waitset_wait(empty, 5000, keys, 4, &n), TIGA_OK);
    CHECK(n == 0 && ms_now() - t0 < 2000);
    thread_join(t);
    tiga_waitset_close(empty);
    /* a kick before the wait counts too */
    tiga_waitset_kick(ws);
    CHECK_RC(tiga_waitset_wait(ws, 5000, keys, 4, &n), TIGA_OK);
    CHECK(n == 0);
    /* two ready, room for one: the other comes next */
    append_to(ls[0]);
    append_to(ls[2]);
    CHECK_RC(tiga_waitset_wait(ws, 1000, keys, 1, &n), TIGA_OK);
    CHECK(n == 1);
    uint64_t first = keys[0];
    CHECK_RC(tiga_waitset_wait(ws, 0, keys, 1, &n), TIGA_OK);
    CHECK(n == 1 && keys[0] != first && (keys[0] == 1 || keys[0] == 3));
    /* removed: not reported */
    CHECK_RC(tiga_waitset_remove(ws, 2), TIGA_OK);
    CHECK_RC(tiga_waitset_remove(ws, 2), TIGA_EINVAL);
    append_to(ls[1]);
    CHECK_RC(tiga_waitset_wait(ws, 20, keys, 4, &n), TIGA_ETIMEDOUT);
    CHECK(tiga_waitset_size(ws) == 2);
    tiga_waitset_close(ws);
    for (int i = 0; i < 3; i++)
        tiga_listener_close(ls[i]);
    remove_dir(dir);
}

static void test_waitset(void) { waitset_basics(0); }
static void test_waitset_polling(void) { waitset_basics(TIGA_WAITSET_POLL); }

/* A consuming watch uses the listener's own news: what came since the
 * listener's last wait is reported at once, and taken. */
static void test_waitset_consume(void)
{
    char *dir = temp_dir();
    tiga_listener *l = NULL;
    CHECK_RC(tiga_listener_open(dir, "k", NULL, &l), TIGA_OK);
    tiga_waitset *ws = NULL;
    CHECK_RC(tiga_waitset_open(0, &ws), TIGA_OK);
    if (!l || !ws)
        return;
    append_to(l);
    int32_t ready = -1;
    CHECK_RC(tiga_waitset_add(ws, l, 7, TIGA_WATCH_CONSUME, &ready), TIGA_OK);
    CHECK(ready == 1);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_ETIMEDOUT); /* taken by the watch */
    append_to(l);
    uint64_t key = 0;
    int32_t n = 0;
    CHECK_RC(tiga_waitset_wait(ws, 1000, &key, 1, &n), TIGA_OK);
    CHECK(n == 1 && key == 7);
    CHECK_RC(tiga_listener_wait(l, 0, 0), TIGA_ETIMEDOUT);
    CHECK_RC(tiga_waitset_remove(ws, 7), TIGA_OK);
    CHECK_RC(tiga_waitset_add(ws, l, 8, TIGA_WATCH_CONSUME, &ready), TIGA_OK);
    CHECK(ready == 0);
    CHECK_RC(tiga_waitset_add(NULL, l, 9, 0, NULL), TIGA_EINVAL);
    CHECK_RC(tiga_waitset_add(ws, l, 9, 4, NULL), TIGA_EINVAL);
    CHECK_RC(tiga_waitset_open(2, &ws), TIGA_EINVAL);
    tiga_waitset_close(ws);
    tiga_listener_close(l);
    remove_dir(dir);
}

/* More listeners than the platform waits on at once: the last ones are
 * polled, and still seen. */
static void test_waitset_many(void)
{
    enum { N = 140 };
    char *dir = temp_dir();
    static tiga_listener *ls[N];
    tiga_waitset *ws = NULL;
    CHECK_RC(tiga_waitset_open(0, &ws), TIGA_OK);
    if (!ws)
        return;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i);
        ls[i] = NULL;
        CHECK_RC(tiga_listener_open(dir, name, NULL, &ls[i]), TIGA_OK);
        if (ls[i])
            CHECK_RC(tiga_waitset_add(ws, ls[i], (uint64_t)i, 0, NULL), TIGA_OK);
    }
    uint64_t keys[N];
    int32_t n = 0;
    for (int i = N - 1; i >= 0; i -= 45) {
        if (!ls[i])
            continue;
        append_to(ls[i]);
        int64_t t0 = ms_now();
        CHECK_RC(tiga_waitset_wait(ws, 2000, keys, N, &n), TIGA_OK);
        CHECK(n == 1 && keys[0] == (uint64_t)i);
        CHECK(ms_now() - t0 < 1000);
    }
    tiga_waitset_close(ws);
    for (int i = 0; i < N; i++)
        tiga_listener_close(ls[i]);
    remove_dir(dir);
}

TEST_MAIN_CHILDREN(children, T(test_register_and_live), T(test_hostile_numbers),
                   T(test_full_table), T(test_dead_owner_taken_over),
                   T(test_killed_owner_taken_over), T(test_wake_across_processes),
                   T(test_no_wake_without_a_write), T(test_event_names), T(test_named_events),
                   T(test_dirwatch_sees_a_new_channel), T(test_waitset),
                   T(test_waitset_polling), T(test_waitset_consume), T(test_waitset_many))
