/* SPDX-License-Identifier: MIT */
/* Invoke and response envelopes in C: the hot path of a round trip without
 * a MessagePack round trip through the caller's language. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char MEDIA[] = "application/x-msgpack";
#define MEDIA_LEN (sizeof MEDIA - 1)
static const char GZ[] = "application/x-msgpack-compressed";
#define GZ_LEN (sizeof GZ - 1)

static bool media_is(const lb_entry *e, const char *media, size_t len)
{
    return e->media_type_len == len && memcmp(e->media_type, media, len) == 0;
}

int tiga_invoke_append(tiga_channel *req, const char *method, size_t method_len,
                       const uint8_t *data, size_t data_len, char *id_out, int64_t *entry_id)
{
    if (!req || !method || !id_out || (data_len && !data))
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    if (data_len == 0)
        return tiga_fail(TIGA_EINVAL, "invoke data must be one MessagePack value");
    char id[37];
    tiga_new_guid(id);
    size_t n = 1 + mp_str_size(36) + 1 + mp_str_size(method_len) + data_len;
    uint8_t stack[512];
    uint8_t *buf = n <= sizeof stack ? stack : malloc(n);
    if (!buf)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    uint8_t *d = buf;
    *d++ = 0x94;
    d = mp_put_str(d, id, 36);
    *d++ = 0x01;
    d = mp_put_str(d, method, method_len);
    memcpy(d, data, data_len);
    tiga_message m = {buf, n, MEDIA};
    int rc = tiga_channel_append(req, &m, 1, entry_id);
    if (buf != stack)
        free(buf);
    if (rc == 0)
        memcpy(id_out, id, 37);
    return rc;
}

int tiga_response_append(tiga_channel *resp, const char *request_id, const char *data,
                         size_t data_len, int32_t code, int64_t *entry_id)
{
    if (!resp || !request_id || (data_len && !data))
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    size_t idl = strlen(request_id);
    size_t n = 1 + mp_str_size(idl) + 1 + mp_str_size(data_len) + mp_int_size(code);
    uint8_t stack[512];
    uint8_t *buf = n <= sizeof stack ? stack : malloc(n);
    if (!buf)
        return tiga_fail(TIGA_ENOMEM, "out of memory");
    uint8_t *d = buf;
    *d++ = 0x94;
    d = mp_put_str(d, request_id, idl);
    *d++ = 0x02;
    d = mp_put_str(d, data, data_len);
    d = mp_put_int(d, code);
    tiga_message m = {buf, (size_t)(d - buf), MEDIA};
    int rc = tiga_channel_append(resp, &m, 1, entry_id);
    if (buf != stack)
        free(buf);
    return rc;
}

void tiga_response_clear(tiga_response *r)
{
    if (!r)
        return;
    free(r->data);
    memset(r, 0, sizeof *r);
}

/* Lock ch (the caller unlocks) and bring its payload up to date: *b is the
 * cache, NULL when nothing is retained; *last_id the newest id, at least
 * after_id, unless the log went back (its last_id is below after_id: a peer
 * reset it): then *reset is set, *last_id is the log's and *after_id becomes
 * 0, so that the caller looks at the new log from its start. */
static int look(tiga_channel *ch, int64_t *after_id, int64_t *last_id, int32_t *reset,
                const lb_buf **b)
{
    *b = NULL;
    *reset = 0;
    plat_mutex_lock(&ch->lock);
    int rc = ch_load(ch);
    if (rc)
        return rc;
    const lb_buf *c = &ch->cache;
    int64_t top = c->len ? c->h.last_id : 0;
    if (*after_id < 0)
        *after_id = 0;
    if (top < *after_id) {
        *reset = 1;
        *after_id = 0;
    }
    *last_id = top > *after_id ? top : *after_id;
    if (c->len && c->cnt)
        *b = c;
    return 0;
}

int tiga_response_find(tiga_channel *ch, int64_t after_id, const char *request_id,
                       tiga_response *out)
{
    if (!ch || !request_id || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    size_t idl = strlen(request_id);
    tiga_response_clear(out);
    const lb_buf *b;
    int rc = look(ch, &after_id, &out->last_id, &out->reset, &b);
    if (rc || !b)
        goto done;
    const uint8_t *p = b->mem + b->start;
    for (size_t k = lb_buf_first_after(b, after_id); k < b->cnt; k++) {
        lb_entry e;
        size_t off = b->pos[b->head + k] - b->start;
        if ((rc = lb_next_entry(p, b->len, &off, &e, false)))
            goto done;
        if (e.id <= after_id || !e.media_type)
            continue;
        if (!media_is(&e, MEDIA, MEDIA_LEN)) {
            if (media_is(&e, GZ, GZ_LEN))
                out->unjudged++;
            continue;
        }
        const uint8_t *id, *data;
        size_t il, dl;
        int64_t code;
        if (mp_parse_response(e.message, e.message_len, &id, &il, &data, &dl, &code) != 0)
            continue;
        if (il != idl || memcmp(id, request_id, il) != 0)
            continue;
        out->data = malloc(dl ? dl : 1);
        if (!out->data) {
            rc = tiga_fail(TIGA_ENOMEM, "out of memory");
            goto done;
        }
        if (dl)
            memcpy(out->data, data, dl);
        out->data_len = dl;
        out->code = code < INT32_MIN ? INT32_MIN : code > INT32_MAX ? INT32_MAX : (int32_t)code;
        out->found = 1;
        break;
    }
done:
    plat_mutex_unlock(&ch->lock);
    return rc;
}

/* tiga_response_find when the version word changed since *looked (or is 0):
 * 1 with rc set when the caller is done (found, unjudged, or an error), 0 to
 * go on waiting. */
static int look_again(tiga_channel *ch, uint64_t *looked, int64_t after_id,
                      const char *request_id, tiga_response *out, int *rc)
{
    uint64_t v = tiga_channel_version(ch);
    if (v == *looked && v != 0)
        return 0;
    *rc = tiga_response_find(ch, after_id, request_id, out);
    if (*rc || out->found || out->unjudged)
        return 1;
    *looked = v;
    return 0;
}

int tiga_response_wait(tiga_listener *l, int64_t after_id, const char *request_id,
                       int64_t timeout_ms, int64_t spin_us, tiga_response *out)
{
    if (!l || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    tiga_channel *ch = tiga_listener_channel(l);
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : plat_now_ns() + timeout_ms * 1000000;
    uint64_t looked = 0; /* version word of the last look: no new look without a change */
    for (;;) {
        int rc;
        if (look_again(ch, &looked, after_id, request_id, out, &rc))
            return rc;
        int64_t now = plat_now_ns();
        if (now >= deadline)
            return TIGA_ETIMEDOUT;
        int64_t left = deadline == INT64_MAX ? -1 : (deadline - now + 999999) / 1000000;
        rc = tiga_listener_wait(l, left, spin_us);
        if (rc && rc != TIGA_ETIMEDOUT)
            return rc; /* TIGA_EINTR among them */
    }
}

int tiga_response_spin(tiga_listener *l, int64_t after_id, const char *request_id,
                       int64_t spin_us, tiga_response *out)
{
    if (!l || !out || spin_us < 0)
        return tiga_fail(TIGA_EINVAL, "NULL argument or negative spin");
    tiga_channel *ch = tiga_listener_channel(l);
    int64_t end = plat_now_ns() + (spin_us < INT64_C(1000000) ? spin_us : INT64_C(1000000)) * 1000;
    uint64_t looked = 0;
    for (unsigned round = 1;; round++) {
        int rc;
        if (look_again(ch, &looked, after_id, request_id, out, &rc))
            return rc;
        if (plat_now_ns() >= end)
            return TIGA_ETIMEDOUT;
        for (int i = 0; i < 32; i++)
            plat_cpu_relax();
        if ((round & 3) == 0)
            plat_yield(); /* the server may be queued on this CPU */
    }
}

int tiga_invoke_call(tiga_channel *req, tiga_listener *l, const char *method, size_t method_len,
                     const uint8_t *data, size_t data_len, int64_t ack_id, int64_t after_id,
                     int64_t timeout_ms, int64_t spin_us, char *id_out, int64_t *entry_id,
                     tiga_response *out)
{
    if (!req || !l || !id_out || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    id_out[0] = 0;
    if (ack_id > 0)
        tiga_channel_set_ack(req, ack_id);
    int rc = tiga_invoke_append(req, method, method_len, data, data_len, id_out, entry_id);
    if (rc)
        return rc; /* id_out untouched: still empty */
    if (timeout_ms == 0)
        return tiga_response_spin(l, after_id, id_out, spin_us, out);
    return tiga_response_wait(l, after_id, id_out, timeout_ms, spin_us, out);
}

void tiga_request_clear(tiga_request *r)
{
    if (!r)
        return;
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Copy the invoke's parts into out's own storage (NUL after id and method). */
static int keep_invoke(tiga_request *out, const uint8_t *id, size_t il, const uint8_t *m,
                       size_t ml, const uint8_t *d, size_t dl)
{
    size_t need = il + 1 + ml + 1 + dl;
    if (need > out->cap) {
        uint8_t *nb = realloc(out->buf, need);
        if (!nb)
            return tiga_fail(TIGA_ENOMEM, "out of memory");
        out->buf = nb;
        out->cap = need;
    }
    uint8_t *b = out->buf;
    memcpy(b, id, il);
    b[il] = 0;
    memcpy(b + il + 1, m, ml);
    b[il + 1 + ml] = 0;
    memcpy(b + il + ml + 2, d, dl);
    out->id = (const char *)b;
    out->id_len = il;
    out->method = (const char *)b + il + 1;
    out->method_len = ml;
    out->data = b + il + ml + 2;
    out->data_len = dl;
    return 0;
}

int tiga_request_next(tiga_channel *ch, int64_t after_id, tiga_request *out)
{
    if (!ch || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    out->status = TIGA_REQUEST_NONE;
    out->entry_id = out->timestamp = out->first_id = 0;
    out->reset = 0;
    out->id = out->method = NULL;
    out->data = NULL;
    out->id_len = out->method_len = out->data_len = 0;
    const lb_buf *b;
    int rc = look(ch, &after_id, &out->last_id, &out->reset, &b);
    if (rc || !b)
        goto done;
    const uint8_t *p = b->mem + b->start;
    lb_entry e;
    size_t off = b->pos[b->head] - b->start;
    if ((rc = lb_next_entry(p, b->len, &off, &e, false)))
        goto done;
    out->first_id = e.id;
    for (size_t k = lb_buf_first_after(b, after_id); k < b->cnt; k++) {
        off = b->pos[b->head + k] - b->start;
        if ((rc = lb_next_entry(p, b->len, &off, &e, false)))
            goto done;
        if (e.id <= after_id || !e.media_type)
            continue; /* a plain message: nothing for a server */
        bool mp = media_is(&e, MEDIA, MEDIA_LEN);
        if (!mp && !media_is(&e, GZ, GZ_LEN))
            continue;
        out->entry_id = e.id;
        out->timestamp = e.timestamp;
        const uint8_t *id, *m, *d;
        size_t il, ml, dl;
        if (mp && mp_parse_invoke(e.message, e.message_len, &id, &il, &m, &ml, &d, &dl) == 0) {
            rc = keep_invoke(out, id, il, m, ml, d, dl);
            if (rc == 0)
                out->status = TIGA_REQUEST_INVOKE;
            goto done;
        }
        int64_t code;
        if (mp && mp_parse_response(e.message, e.message_len, &id, &il, &d, &dl, &code) == 0)
            continue; /* a response (request and response share one channel) */
        out->status = TIGA_REQUEST_OTHER;
        goto done;
    }
done:
    plat_mutex_unlock(&ch->lock);
    return rc;
}

int tiga_request_wait(tiga_listener *l, int64_t after_id, int64_t timeout_ms, int64_t spin_us,
                      tiga_request *out)
{
    if (!l || !out)
        return tiga_fail(TIGA_EINVAL, "NULL argument");
    tiga_channel *ch = tiga_listener_channel(l);
    int rc = tiga_request_next(ch, after_id, out);
    if (rc || out->status != TIGA_REQUEST_NONE)
        return rc;
    rc = tiga_listener_wait(l, timeout_ms, spin_us);
    if (rc)
        return rc;
    int32_t reset = out->reset; /* the caller's position went back in the first look */
    rc = tiga_request_next(ch, out->last_id, out);
    out->reset |= reset;
    return rc;
}
