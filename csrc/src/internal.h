/* SPDX-License-Identifier: MIT */
/* Private declarations shared by the library's sources. */
#ifndef TIGA_INTERNAL_H
#define TIGA_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tiga.h"
#include "platform.h"

/* Record the detail of a failure for tiga_last_error() and return status. */
int tiga_fail(int status, const char *fmt, ...) PLAT_PRINTF(2, 3);
void tiga_clear_error(void);

/* ---- version word */
#define TIGA_SIZE_BITS 39
#define TIGA_SIZE_MASK ((UINT64_C(1) << TIGA_SIZE_BITS) - 1)
static inline unsigned tiga_ver_idx(uint64_t v) { return (unsigned)(v & 1u); }
static inline uint64_t tiga_ver_size(uint64_t v) { return (v >> 1) & TIGA_SIZE_MASK; }
static inline uint32_t tiga_ver_sum(uint64_t v) { return (uint32_t)(v >> 40); }
static inline uint64_t tiga_ver_make(unsigned idx, uint64_t size, uint64_t hash)
{
    return (uint64_t)idx | (size << 1) | ((hash & 0xFFFFFFu) << 40);
}

/* ---- logbook (logbook.c) */

/* Room kept in front of a payload buffer so that new headers can be written
 * in place before the first retained entry. */
#define TIGA_HEADROOM 32

typedef struct lb_header {
    bool enveloped;
    int64_t schema;          /* enveloped only */
    int64_t last_id;
    uint32_t count;          /* entries in the array */
    size_t entries_off;      /* offset of the first entry */
} lb_header;

typedef struct lb_entry {
    int64_t id;
    int64_t timestamp;
    const uint8_t *message;
    size_t message_len;
    const uint8_t *media_type;   /* NULL when nil */
    size_t media_type_len;
    char instance[37];
    const uint8_t *inst;         /* the instance as written when it is a str (else NULL) */
    size_t inst_len;
    size_t start, end;           /* byte range of the whole entry */
    /* Full decodes: the instance bytes `instance` was last parsed from.  The
     * next entry whose instance has the same bytes (nearly all: one writer
     * wrote them) is not parsed again.  Callers of a full decode set it to NULL
     * before the first entry. */
    const uint8_t *memo;
    size_t memo_len;
} lb_entry;

/* wyhash of base[0..n) whose part from `from` on is copied from a to b as it
 * is hashed (wyhash.c). */
uint64_t tiga_wyhash_tee(const uint8_t *base, size_t n, size_t from, const uint8_t *a,
                         uint8_t *b);

int lb_parse_header(const uint8_t *p, size_t n, lb_header *h);
/* The same from the first n bytes of a total-byte payload. */
int lb_parse_head(const uint8_t *p, size_t n, size_t total, lb_header *h);
/* Decode the entry at *off (fully when `full`, else only id and timestamp
 * and its extent); advances *off.  A full decode reads e->memo. */
int lb_next_entry(const uint8_t *p, size_t n, size_t *off, lb_entry *e, bool full);
/* Bytes needed to encode one entry. */
size_t lb_entry_size(const tiga_message *m, int64_t id, int64_t ts);
uint8_t *lb_write_entry(uint8_t *dst, const tiga_message *m, int64_t id, const char *instance,
                        int64_t ts);
/* Encode the header into tmp (at most TIGA_HEADROOM bytes); returns length. */
size_t lb_encode_header(uint8_t *tmp, bool enveloped, int64_t schema, int64_t last_id,
                        uint32_t count);

/* A payload held with TIGA_HEADROOM bytes of room in front of it, with an
 * index of where each entry starts. */
typedef struct lb_buf {
    uint8_t *mem;            /* allocation: lb_buf_total(cap) bytes */
    uint8_t *spare;          /* a second one, to load a new payload beside the old */
    size_t cap;              /* payload room */
    size_t start;            /* payload begins at mem + start */
    size_t len;              /* payload length */
    lb_header h;             /* parsed header of the payload (valid when len > 0) */
    /* index: entry k (0 <= k < cnt) starts at mem + pos[head + k]; this
     * handle first saw it at seen[head + k] (its clock, ns) */
    size_t *pos;
    int64_t *seen;
    size_t pos_cap, head, cnt;
    size_t old_cnt;          /* leading entries known to be trimmable */
    int64_t rule_keep, rule_age; /* the trim rule old_cnt was found under */
    uint64_t deferred;       /* trimmable bytes summed over appends since a trim */
    int64_t first_id;        /* id of entry 0 */
    int64_t max_id;          /* the highest entry id indexed since the last reset */
    bool consecutive;        /* ids are first_id, first_id + 1, ... */
    /* Foreign clocks: when set, an entry not written by the appending
     * instance is aged from when this buffer first saw it (seen[]), not from
     * its timestamp, which may come from another clock (PROTOCOL-NOTES). */
    bool foreign_clocks;
    int64_t now_ns;          /* the time newly indexed entries are first seen at */
} lb_buf;

int lb_buf_reserve(lb_buf *b, size_t cap);
void lb_buf_free(lb_buf *b);
/* Validate the payload in b (parse the header, walk every entry) and index it. */
int lb_buf_validate(lb_buf *b);
/* A new payload of len bytes was put at b->spare + TIGA_HEADROOM (and its
 * checksum verified): validate it (entries it shares byte for byte with the
 * current payload are not walked again) and make it the current one. */
int lb_buf_adopt(lb_buf *b, size_t len);
/* Loading a new payload that keeps some of the cached entries (a delta read):
 * the new header and the new entries at the end come from the file, the kept
 * entries from the cache, and the checksum over the whole composed payload
 * decides whether that was right. */
#define LB_DELTA_MAX_KEPT 32             /* kept entries, each checked by a read */
#define LB_DELTA_MIN_BYTES (64 * 1024)   /* kept bytes */
#define LB_DELTA_MIN_ENTRY (8 * 1024)    /* kept bytes per kept entry */
typedef struct lb_delta {
    size_t k0;               /* the first cached entry kept */
    size_t kept;             /* entries kept */
    size_t from;             /* offset in mem of entry k0 */
    size_t kept_bytes;       /* their bytes */
    size_t tail_len;         /* bytes after them, to read from the file */
    size_t start;            /* where the composed payload begins in mem */
} lb_delta;
/* Can any new payload be read as a delta of the cached one (enough cached
 * entry bytes, consecutive ids)?  Needs no look at the new payload. */
bool lb_buf_delta_may(const lb_buf *b);
/* Does the payload of len bytes with header h keep a run of the cached
 * entries, and is it worth composing it around them? */
bool lb_buf_delta_plan(const lb_buf *b, const lb_header *h, size_t len, lb_delta *d);
/* Bytes of cached entry k (0 <= k < cnt). */
size_t lb_buf_entry_len(const lb_buf *b, size_t k);
/* Write the new header (h->entries_off bytes of hdr) in front of the kept
 * entries, moving them if there is no room; returns the composed payload's
 * start, whose last d->tail_len bytes the caller fills.  The cache no longer
 * holds the old payload: lb_buf_delta_commit or lb_buf_drop must follow. */
uint8_t *lb_buf_delta_place(lb_buf *b, const uint8_t *hdr, const lb_header *h, lb_delta *d);
/* The composed payload verified: make it the cache's, indexing the new
 * entries (on failure the cache is dropped). */
int lb_buf_delta_commit(lb_buf *b, const lb_header *h, const lb_delta *d);
/* Forget the cached payload (the buffers stay). */
void lb_buf_drop(lb_buf *b);
/* Decode the entries with id > after_id of the (validated) payload in b;
 * borrow: the result's bytes are b's own (valid while b stays as it is). */
int lb_buf_decode(const lb_buf *b, int64_t after_id, bool borrow, tiga_read_result **out);
/* Append msgs to the payload in b in place (trim, write entries after the
 * last one, rewrite the header right before the first retained entry). */
/* floor_id: the new entries get ids above it too (a writer never issues an
 * id at or below one it has seen, even when a peer's log went back).
 * keep_from > 0 (declared subscribers): entries with id >= keep_from are
 * never trimmed, and those below it once read_age_ns old (or acknowledged);
 * 0: entries older than min_age_ns (or acknowledged) may go. */
int lb_buf_append(lb_buf *b, const tiga_message *msgs, size_t n, const char *instance,
                  int64_t now_ns, int64_t min_age_ns, int64_t ack_id, int64_t floor_id,
                  int64_t keep_from, int64_t read_age_ns,
                  uint64_t capacity, int64_t *first_id, bool *moved);
/* The time entry k's age is measured from (see foreign_clocks). */
int64_t lb_buf_entry_time(const lb_buf *b, size_t k, const lb_entry *e, const char *instance);
/* Bytes of the cached entries with id >= id (0 when the ids are not
 * consecutive: only asked where a guess is good enough). */
size_t lb_buf_bytes_from(const lb_buf *b, int64_t id);
/* Index (0..cnt) of the first entry with id > after_id in the payload of b. */
size_t lb_buf_first_after(const lb_buf *b, int64_t after_id);
/* lowercase 8-4-4-4-12 text of 16 GUID bytes in text order */
void lb_guid_text(const uint8_t b[16], char out[37]);

/* ---- MessagePack pieces for envelopes (logbook.c) */
size_t mp_int_size(int64_t v);
size_t mp_str_size(size_t n);
uint8_t *mp_put_int(uint8_t *d, int64_t v);
uint8_t *mp_put_str(uint8_t *d, const void *s, size_t n);
/* A response envelope [id: str, 2, data: str, code: int, ...]: 0 and its
 * fields, or -1 for anything else. */
/* An invoke envelope [str id, 1, str method, data] of exactly four elements:
 * data and data_len get the rest of the message (the data element, unchecked). */
int mp_parse_invoke(const uint8_t *p, size_t n, const uint8_t **id, size_t *id_len,
                    const uint8_t **method, size_t *method_len, const uint8_t **data,
                    size_t *data_len);
int mp_parse_response(const uint8_t *p, size_t n, const uint8_t **id, size_t *id_len,
                      const uint8_t **data, size_t *data_len, int64_t *code);

/* ---- channel.c for rpc.c */
struct tiga_channel;
int ch_load(struct tiga_channel *ch);   /* load_payload for a reader; caller holds ch->lock */

/* ---- identity */
void tiga_new_guid(char out[37]);

/* ---- notify (notify.c) */
typedef struct tiga_slot {
    _Atomic int64_t token;
    _Atomic int64_t owner_start;
    _Atomic int32_t owner_pid;
    _Atomic uint32_t wake;      /* the 'reserved' field: our futex word */
} tiga_slot;

struct tiga_channel;
int tiga_notify_signal(struct tiga_channel *ch, int32_t *woken);
/* A slot owner's token, and whether the owner of a slot (pid, start, token as
 * found in a file) is alive: shared by listener and subscriber slots. */
int64_t tiga_owner_token(int32_t pid, int64_t start);
bool tiga_owner_alive(int32_t pid, int64_t start, int64_t token);

/* ---- declared subscribers (subs.c) */
typedef struct tiga_subs tiga_subs;
/* The first id a live declared subscriber has not read (0: no subscriber,
 * the minimum age alone decides), for the log whose last id is last_id, and
 * how many live subscribers there are.  Sweeps dead ones every 0.25 s, or now
 * when force_sweep.  Caller holds ch->lock. */
int ch_subs_keep_from(struct tiga_channel *ch, int64_t last_id, bool force_sweep,
                      int64_t *keep_from, int32_t *live);
/* Pacing (subs.c).  Whether the slowest declared subscriber, which has not
 * read keep_from yet, is reading and has PACE_BYTES or more unread in the
 * cache (caller holds ch->lock); and the wait, up to opt.pace_ms, for it to
 * read on (caller holds no lock). */
bool ch_subs_pace_wanted(struct tiga_channel *ch, int64_t keep_from);
void ch_subs_pace(struct tiga_channel *ch);
void ch_subs_close(struct tiga_channel *ch);
int tiga_notify_live(tiga_slot *slots, int32_t *live);

/* ---- channel internals shared with notify.c */

/* One thread's append waiting to be written together with others' (group
 * commit): the thread that gets the locks writes every queued request in one
 * version and hands each its ids. */
typedef struct ch_pending {
    const tiga_message *msgs;
    size_t n;
    int64_t first_id;
    int state;                   /* PENDING_QUEUED / _LEAD / _DONE / _ALONE */
    plat_cond cond;              /* signalled when state changes */
    struct ch_pending *next;
} ch_pending;

struct tiga_channel {
    char *base;                  /* "<dir>/tiga_<name>" */
    plat_fd fd_state, fd_notify, fd_data[2];
    plat_fd fd_lock;             /* the state file opened again, for the append lock */
    int32_t lock_pid;            /* the process fd_lock was opened in */
    _Atomic uint64_t *version;   /* mapped state file */
    uint8_t *data[2];            /* mapped data files, capacity bytes each */
    _Atomic int32_t *readers;    /* [2] */
    tiga_slot *slots;            /* mapped notify file */
    plat_wakeups *wakeups;       /* what signals its slots (named events on Windows) */
    uint64_t capacity;
    tiga_channel_options opt;
    char instance[37];
    plat_mutex lock;             /* serialises this handle's users */
    lb_buf cache;                /* last payload seen by this handle */
    uint64_t cache_version;      /* version word the cache holds (0: none) */
    uint64_t published;          /* the last version word this handle published */
    uint64_t full_loads, delta_loads; /* payloads read whole, read as a delta */
    int64_t high_id;             /* the highest id this handle has seen in the log */
    uint64_t resets, grown;      /* logs seen going back; remaps after a peer grew the files */
    bool below;                  /* the log is below high_id now (counted once in resets) */
    /* What this handle last wrote into each data file, for delta writes:
     * valid while no other writer has written since. */
    bool own_valid[2];
    size_t own_len[2];
    int64_t ack_id;              /* entries with id <= ack_id may be trimmed at any age */
    /* declared subscribers: their file (NULL: none found yet), and when and
     * under which notify signature it was last looked for, swept */
    tiga_subs *subs;
    uint64_t subs_sig;
    int64_t subs_sig_at, subs_looked, subs_swept;
    int64_t pace_keep, pace_moved; /* the slowest position seen, and since when */
    atomic_bool pace_hint;         /* the last write left a subscriber much to read */
    /* group commit: appends of this handle's threads waiting for a writer */
    plat_mutex gq_lock;
    ch_pending *gq_head, *gq_tail;
    size_t gq_len;
    bool gq_busy;                /* a thread is writing for the queue */
};

#endif
