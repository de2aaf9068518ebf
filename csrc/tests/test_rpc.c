/* SPDX-License-Identifier: MIT */
/* Invoke and response envelopes in C: what a server's request scan decodes,
 * skips and hands back, and the client's response lookup. */

#include "tiga.h"
#include "check.h"

static const char *MP = "application/x-msgpack";
static const char *GZ = "application/x-msgpack-compressed";

static void put(tiga_channel *ch, const void *data, size_t len, const char *media)
{
    tiga_message m = {(const uint8_t *)data, len, media};
    CHECK_RC(tiga_channel_append(ch, &m, 1, NULL), TIGA_OK);
}

static void test_request_scan(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "svc.req.k", NULL, &ch), TIGA_OK);
    tiga_request rq;
    memset(&rq, 0, sizeof rq);

    /* empty log: nothing */
    CHECK_RC(tiga_request_next(ch, 0, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_NONE && rq.last_id == 0 && rq.first_id == 0);

    put(ch, "plain", 5, NULL);                      /* 1: no media type: skipped */
    put(ch, "text", 4, "text/plain");               /* 2: other media type: skipped */
    /* 3: a response [id, 2, "ok", 0] (shared request/response channel): skipped */
    static const uint8_t resp[] = {0x94, 0xa1, 'r', 0x02, 0xa2, 'o', 'k', 0x00};
    put(ch, resp, sizeof resp, MP);
    CHECK_RC(tiga_request_next(ch, 0, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_NONE && rq.last_id == 3 && rq.first_id == 1);

    /* 4: an invoke written by tiga_invoke_append, data "hi" */
    char id[37];
    int64_t eid = 0;
    static const uint8_t hi[] = {0xa2, 'h', 'i'};
    CHECK_RC(tiga_invoke_append(ch, "echo", 4, hi, sizeof hi, id, &eid), TIGA_OK);
    CHECK(eid == 4);
    CHECK_RC(tiga_request_next(ch, 0, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_INVOKE && rq.entry_id == 4 && rq.last_id == 4);
    CHECK(rq.timestamp > 0 && rq.first_id == 1);
    CHECK(rq.id_len == 36 && memcmp(rq.id, id, 36) == 0 && rq.id[36] == 0);
    CHECK(rq.method_len == 4 && strcmp(rq.method, "echo") == 0);
    CHECK(rq.data_len == sizeof hi && memcmp(rq.data, hi, sizeof hi) == 0);

    /* after it: nothing new, last_id tells how far the scan went */
    CHECK_RC(tiga_request_next(ch, 4, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_NONE && rq.last_id == 4 && rq.id == NULL);

    /* entries the caller must judge: a five-element invoke, garbage, gzip */
    static const uint8_t five[] = {0x95, 0xa1, 'x', 0x01, 0xa1, 'm', 0xc0, 0xc0};
    put(ch, five, sizeof five, MP);                 /* 5 */
    put(ch, "\xc1\xc1", 2, MP);                     /* 6 */
    put(ch, "\x1f\x8b", 2, GZ);                     /* 7 */
    static const uint8_t nodata[] = {0x93, 0xa1, 'x', 0x01, 0xa1, 'm'};
    put(ch, nodata, sizeof nodata, MP);             /* 8: three elements */
    for (int64_t after = 4; after < 8; after++) {
        CHECK_RC(tiga_request_next(ch, after, &rq), TIGA_OK);
        CHECK(rq.status == TIGA_REQUEST_OTHER && rq.entry_id == after + 1);
    }

    /* a bigger invoke reuses (grows) the same storage */
    uint8_t big[3000];
    big[0] = 0xda;
    big[1] = (uint8_t)((sizeof big - 3) >> 8);
    big[2] = (uint8_t)((sizeof big - 3) & 0xff);
    memset(big + 3, 'z', sizeof big - 3);
    CHECK_RC(tiga_invoke_append(ch, "big", 3, big, sizeof big, id, &eid), TIGA_OK);
    CHECK_RC(tiga_request_next(ch, 8, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_INVOKE && rq.entry_id == 9 && rq.data_len == sizeof big);
    CHECK(rq.cap >= sizeof big && memcmp(rq.data, big, sizeof big) == 0);

    tiga_request_clear(&rq);
    CHECK(rq.buf == NULL && rq.cap == 0);
    tiga_request_clear(NULL);
    CHECK_RC(tiga_request_next(NULL, 0, &rq), TIGA_EINVAL);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_request_wait(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    tiga_listener *l = NULL;
    CHECK_RC(tiga_channel_open(dir, "w", NULL, &ch), TIGA_OK);
    CHECK_RC(tiga_listener_open(dir, "w", NULL, &l), TIGA_OK);
    tiga_request rq;
    memset(&rq, 0, sizeof rq);
    put(ch, "plain", 5, NULL);
    /* only a skipped entry: the first wait may report the change since the
     * listener registered (NONE), the next times out; both tell what they
     * skipped */
    int rc = tiga_request_wait(l, 0, 20, 0, &rq);
    CHECK((rc == TIGA_OK || rc == TIGA_ETIMEDOUT) && rq.status == TIGA_REQUEST_NONE);
    CHECK_RC(tiga_request_wait(l, rq.last_id, 20, 0, &rq), TIGA_ETIMEDOUT);
    CHECK(rq.status == TIGA_REQUEST_NONE && rq.last_id == 1);
    char id[37];
    static const uint8_t nil[] = {0xc0};
    CHECK_RC(tiga_invoke_append(ch, "m", 1, nil, 1, id, NULL), TIGA_OK);
    CHECK_RC(tiga_request_wait(l, 1, 1000, 50, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_INVOKE && rq.entry_id == 2 && rq.data_len == 1);
    /* a signal without news wakes the wait: NONE, not a timeout */
    CHECK_RC(tiga_channel_signal(ch, NULL), TIGA_OK);
    CHECK_RC(tiga_request_wait(l, 2, 5000, 0, &rq), TIGA_OK);
    CHECK(rq.status == TIGA_REQUEST_NONE && rq.last_id == 2);
    tiga_request_clear(&rq);
    tiga_listener_close(l);
    tiga_channel_close(ch);
    remove_dir(dir);
}

static void test_response_find(void)
{
    char *dir = temp_dir();
    tiga_channel *ch = NULL;
    CHECK_RC(tiga_channel_open(dir, "r", NULL, &ch), TIGA_OK);
    int64_t eid = 0;
    CHECK_RC(tiga_response_append(ch, "id-1", "one", 3, 0, &eid), TIGA_OK);
    CHECK(eid == 1);
    CHECK_RC(tiga_response_append(ch, "id-2", "bad", 3, -1, &eid), TIGA_OK);
    put(ch, "\x1f\x8b", 2, GZ);
    tiga_response out;
    memset(&out, 0, sizeof out);
    CHECK_RC(tiga_response_find(ch, 0, "id-2", &out), TIGA_OK);
    CHECK(out.found && out.code == -1 && out.data_len == 3 && memcmp(out.data, "bad", 3) == 0);
    tiga_response_clear(&out);
    CHECK_RC(tiga_response_find(ch, 0, "id-3", &out), TIGA_OK);
    CHECK(!out.found && out.unjudged == 1 && out.last_id == 3);
    tiga_response_clear(&out);
    tiga_channel_close(ch);
    remove_dir(dir);
}

/* dir: a server that answers two invokes with the method's name */
static int child_server(int argc, char **argv)
{
    if (argc < 1)
        return 2;
    const char *dir = argv[0];
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 4096;
    tiga_listener *sl = NULL;
    tiga_channel *resp = NULL;
    if (tiga_listener_open(dir, "s.req.k", &o, &sl) ||
        tiga_channel_open(dir, "s.resp.k", &o, &resp))
        return 3;
    tiga_request rq;
    memset(&rq, 0, sizeof rq);
    int64_t last = 0;
    for (int answered = 0; answered < 2;) {
        if (tiga_request_wait(sl, last, 5000, 0, &rq) == TIGA_ETIMEDOUT)
            return 4;
        if (rq.status != TIGA_REQUEST_INVOKE) {
            last = rq.last_id > last ? rq.last_id : last;
            continue;
        }
        last = rq.entry_id;
        if (tiga_response_append(resp, rq.id, rq.method, rq.method_len, 0, NULL))
            return 5;
        answered++;
    }
    tiga_request_clear(&rq);
    tiga_channel_close(resp);
    tiga_listener_close(sl);
    return 0;
}

static const test_child children[] = {CHILD(child_server), {NULL, NULL}};

static void test_invoke_call(void)
{
    /* a whole round trip: a server in another process answers with the method's name */
    char *dir = temp_dir();
    tiga_channel_options o;
    tiga_channel_options_init(&o);
    o.capacity = 4096;
    tiga_channel *req = NULL;
    tiga_listener *l = NULL;
    CHECK_RC(tiga_channel_open(dir, "s.req.k", &o, &req), TIGA_OK);
    CHECK_RC(tiga_listener_open(dir, "s.resp.k", &o, &l), TIGA_OK);
    test_proc kid = spawn_child("child_server", dir, NULL, NULL, NULL);
    char id[37];
    int64_t eid = 0, after = 0;
    tiga_response out;
    memset(&out, 0, sizeof out);
    static const uint8_t nil[] = {0xc0};
    for (int i = 0; i < 2; i++) {
        const char *m = i ? "second" : "first";
        CHECK_RC(tiga_invoke_call(req, l, m, strlen(m), nil, 1, eid, after, 10000, 50, id, &eid,
                                  &out), TIGA_OK);
        CHECK(out.found && out.code == 0 && out.data_len == strlen(m) &&
              memcmp(out.data, m, strlen(m)) == 0);
        CHECK(eid == i + 1 && id[0] != 0);
        after = out.last_id;
        tiga_response_clear(&out);
    }
    CHECK(wait_child(kid) == 0);
    /* the ack given with the second call let its append drop the first request */
    tiga_channel_info info;
    CHECK_RC(tiga_channel_info_get(req, &info), TIGA_OK);
    CHECK(info.retained == 1 && info.first_id == 2);

    /* no server: the request is written, the wait times out, id_out names it */
    CHECK_RC(tiga_invoke_call(req, l, "m", 1, nil, 1, 0, after, 30, 0, id, &eid, &out),
             TIGA_ETIMEDOUT);
    CHECK(id[0] != 0 && eid == 3 && !out.found);
    /* a spin finds nothing either, and ends on time without sleeping */
    int64_t t0 = tiga_now_ns();
    CHECK_RC(tiga_response_spin(l, after, id, 200, &out), TIGA_ETIMEDOUT);
    CHECK(!out.found && tiga_now_ns() - t0 < INT64_C(100000000));
    CHECK_RC(tiga_response_spin(l, after, id, -1, &out), TIGA_EINVAL);
    /* the answer written meanwhile: a spin finds it */
    tiga_channel *resp = tiga_listener_channel(l);
    CHECK_RC(tiga_response_append(resp, id, "late", 4, 0, NULL), TIGA_OK);
    CHECK_RC(tiga_response_spin(l, after, id, 0, &out), TIGA_OK);
    CHECK(out.found && out.data_len == 4 && memcmp(out.data, "late", 4) == 0);
    tiga_response_clear(&out);
    /* an append that cannot be made: its error, nothing written, id_out empty */
    static uint8_t big[5000];
    big[0] = 0xc0;
    CHECK_RC(tiga_invoke_call(req, l, "m", 1, big, sizeof big, 0, after, 30, 0, id, &eid, &out),
             TIGA_ETOOBIG);
    CHECK(id[0] == 0 && tiga_channel_info_get(req, &info) == 0 && info.last_id == 3);
    /* timeout 0: the invoke is written and looked for in a spin, without a sleep */
    t0 = tiga_now_ns();
    CHECK_RC(tiga_invoke_call(req, l, "m", 1, nil, 1, 0, after, 0, 300, id, &eid, &out),
             TIGA_ETIMEDOUT);
    CHECK(id[0] != 0 && !out.found && tiga_now_ns() - t0 < INT64_C(100000000));
    CHECK_RC(tiga_response_append(resp, id, "spun", 4, 0, NULL), TIGA_OK);
    CHECK_RC(tiga_invoke_call(req, l, "m", 1, nil, 1, 0, after, 0, 0, id, &eid, &out),
             TIGA_ETIMEDOUT); /* a new invoke: its own id, not answered */
    CHECK_RC(tiga_response_spin(l, after, id, 0, &out), TIGA_ETIMEDOUT);
    tiga_response_clear(&out);
    tiga_listener_close(l);
    tiga_channel_close(req);
    remove_dir(dir);
}

TEST_MAIN_CHILDREN(children, T(test_request_scan), T(test_request_wait), T(test_response_find),
          T(test_invoke_call))
