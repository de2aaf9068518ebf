/* SPDX-License-Identifier: MIT */
/*
 * libtiga: the Tiga memory-mapped IPC protocol (file mode) in plain C.
 *
 * A channel (directory, name) is four files: tiga_<name>_state (16 bytes: the
 * version word and two reader counters), tiga_<name>_data_0 and _data_1 (the
 * double buffer, "capacity" bytes each) and tiga_<name>_notify (128 listener
 * slots).  The active buffer holds one MessagePack logbook
 * [last_id, [[id, instance, timestamp, message, media_type], ...]].
 * The wire contract is documented in docs/PROTOCOL-NOTES.md of the project.
 *
 * Conventions (every function):
 *   - int results are a status: 0 (TIGA_OK) is success, an operating-system
 *     failure is -errno, a library failure is one of enum tiga_status below
 *     (all below -4000).  tiga_strerror() names a status; tiga_last_error()
 *     gives the detail of the last failure on the calling thread (which file,
 *     which field, what was expected).
 *   - Out-parameters are written only on success.
 *   - Handles are opaque; *_close / *_free accept NULL.
 *   - Functions that may block take a timeout in milliseconds (-1 forever,
 *     0 do not wait) and return TIGA_EINTR when a signal interrupts the wait,
 *     so a caller can run its signal handlers and call again with the time left.
 *   - A channel handle may be used from several threads at once; closing it
 *     while another thread still uses it is undefined.
 */
#ifndef TIGA_H
#define TIGA_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(TIGA_BUILD_DLL)
#  define TIGA_API __declspec(dllexport) /* building libtiga.dll */
#elif defined(_WIN32)
#  define TIGA_API /* linked statically, or through the import library */
#elif defined(__GNUC__)
#  define TIGA_API __attribute__((visibility("default")))
#else
#  define TIGA_API
#endif

#ifdef __cplusplus
#  define TIGA_BEGIN_DECLS extern "C" {
#  define TIGA_END_DECLS }
#else
#  define TIGA_BEGIN_DECLS
#  define TIGA_END_DECLS
#endif

TIGA_BEGIN_DECLS

/* Library status codes.  OS failures are reported as -errno instead. */
enum tiga_status {
    TIGA_OK = 0,
    TIGA_ETIMEDOUT = -4001,  /* the deadline passed */
    TIGA_EINTR = -4002,      /* a signal arrived: call again with the time left */
    TIGA_EBADNAME = -4003,   /* channel name or client id rejected */
    TIGA_ECORRUPT = -4004,   /* the channel's bytes are not a valid logbook, or the checksum stays wrong */
    TIGA_EFULL = -4005,      /* the entry does not fit next to the entries still retained */
    TIGA_ETOOBIG = -4006,    /* the entry can never fit in this channel's capacity */
    TIGA_ETRUNCATED = -4007, /* a channel file is shorter than the protocol needs */
    TIGA_EINVAL = -4008,     /* an argument is out of range */
    TIGA_ENOMEM = -4009,     /* out of memory */
    TIGA_ENOSLOT = -4010,    /* all 128 listener slots are held by live processes */
    TIGA_ENOTREADY = -4011   /* no live listener appeared on the channel in time */
};

/* Fixed protocol numbers. */
enum tiga_limits {
    TIGA_STATE_SIZE = 16,
    TIGA_NOTIFY_SLOTS = 128,
    TIGA_NOTIFY_SIZE = 3072,
    TIGA_DEFAULT_CAPACITY = 1048576,
    /* The smallest capacity a new channel may have (room for a useful log),
     * and the largest payload a handle accepts: a data file longer than this
     * is used up to this size (a peer's huge sparse file costs nothing), a
     * version word that claims more is corrupt, and memory is allocated in
     * proportion to payloads, never to file sizes. */
    TIGA_MIN_CAPACITY = 1024,
    TIGA_MAX_CAPACITY = 1073741824,
    TIGA_SUBS_SLOTS = 128,          /* declared subscribers per channel (tiga_<name>_subs) */
    TIGA_SUBS_SLOT_SIZE = 64,
    TIGA_SUBS_SIZE = 8256,          /* 64-byte header and the slots */
    TIGA_INSTANCE_LEN = 36,
    TIGA_MAX_NAME_BYTES = 255
};

/* The library's version: the one place it is written (setup.py, the
 * Makefile and the Python package read it from here). */
#define TIGA_VERSION_MAJOR 0
#define TIGA_VERSION_MINOR 2
#define TIGA_VERSION_PATCH 0
#define TIGA_VERSION_STRING "0.2.0"

/* The version of the library that is running ("0.2.0"), which may differ
 * from the header a program was compiled with.  Static storage. */
TIGA_API const char *tiga_version(void);

/* ---------------------------------------------------------------- errors */

/* Short text for a status (library or -errno).  Never NULL, static storage. */
TIGA_API const char *tiga_strerror(int status);

/* Detail of the last failure on this thread ("" if none).  Thread-local
 * storage, valid until the next libtiga call on the same thread. */
TIGA_API const char *tiga_last_error(void);

/* ---------------------------------------------------------------- checksum */

/* wyhash "final version 3" of p[0..n) with the given seed (the protocol
 * uses seed 0 and stores the low 24 bits).  Pure, thread-safe. */
TIGA_API uint64_t tiga_wyhash(const void *p, size_t n, uint64_t seed);

/* ---------------------------------------------------------------- names */

/* TIGA_OK if `name` is acceptable as a channel name or client id: not empty,
 * not "." or "..", no '/', '\\', NUL or control characters, and
 * "tiga_<name>_data_0" at most 255 bytes.  Otherwise TIGA_EBADNAME (detail in
 * tiga_last_error).  `len` is the byte length (the name need not be
 * NUL-terminated; an embedded NUL is rejected). */
TIGA_API int tiga_validate_name(const char *name, size_t len);

/* ---------------------------------------------------------------- channel */

typedef struct tiga_channel tiga_channel;

/* Options for tiga_channel_open.  Fill with tiga_channel_options_init, then
 * change what you need. */
typedef struct tiga_channel_options {
    uint64_t capacity;        /* size of each data file when they are created; 0 = 1 MiB;
                                 TIGA_MIN_CAPACITY to TIGA_MAX_CAPACITY.
                                 Existing files keep their size: the capacity is taken
                                 from data_0 as found. */
    int64_t min_age_ms;       /* entries younger than this are never trimmed (default 1000) */
    int64_t reader_grace_ms;  /* how long a writer waits for readers to leave a buffer
                                 before it forces the counter to 0 (default 1000) */
    int64_t lock_timeout_ms;  /* how long an append waits for the channel lock (default 10000) */
    int64_t write_timeout_ms; /* when an append does not fit, wait this long for old entries
                                 to age out and be trimmed before TIGA_EFULL (default 0) */
    int32_t flush;            /* non-zero: fdatasync the data file after every write */
    int32_t create_dir;       /* non-zero (default): create the directory if it is missing */
    uint32_t mode;            /* permission bits of files this open creates (default 0600,
                                 whatever the umask); directories it creates get the same
                                 with x added wherever r is (0600 -> 0700, 0660 -> 0770).
                                 Existing files and directories keep theirs. */
    int32_t private_files;    /* non-zero: refuse channel files another user owns (for a
                                 private directory); symbolic links are always refused */
    int64_t read_min_age_ms;  /* entries every live declared subscriber has read are kept
                                 this long (for readers that declare nothing, such as the
                                 peers); -1 (default) = min_age_ms, 0 = trimmed once read.
                                 Entries a declared subscriber has not read are kept
                                 whatever their age, up to the capacity. */
    int64_t pace_ms;          /* how long one append may wait for a declared subscriber
                                 that is reading (its position moved in the last 10 ms)
                                 to read on, when it has 256 KiB or more of entries
                                 unread (default 1; 0 = never wait).  Every write hashes
                                 and every read verifies the unread entries again: a
                                 writer that runs ahead makes both pay for them at each
                                 write.  A stopped subscriber is not waited for. */
} tiga_channel_options;

/* One message to append.  media_type NULL means nil. */
typedef struct tiga_message {
    const uint8_t *data;
    size_t len;
    const char *media_type;
} tiga_message;

/* One decoded logbook entry.  Pointers point into the owning
 * tiga_read_result and live as long as it does. */
typedef struct tiga_entry {
    int64_t id;
    int64_t timestamp;            /* the writer's monotonic clock */
    const uint8_t *message;
    size_t message_len;
    const char *media_type;       /* NULL when nil; else media_type_len bytes, not NUL-terminated */
    size_t media_type_len;
    char instance[40];            /* lowercase 8-4-4-4-12 GUID text, NUL-terminated */
} tiga_entry;

/* Result of a read.  Free with tiga_read_result_free. */
typedef struct tiga_read_result {
    int64_t last_id;              /* the logbook's last_id (below the caller's after_id only
                                     when reset is set) */
    int64_t missed;               /* ids after after_id that were trimmed before this read */
    int32_t reset;                /* 1: the log's last_id was below after_id (a peer reset
                                     the log, or the channel was made anew): the entries
                                     are those after 0, the new log from its start */
    int32_t uniform;              /* 1: every returned entry has the first one's writer
                                     instance and media type (bindings may share them) */
    int64_t schema_version;       /* -1: plain form; otherwise the envelope's schema version */
    uint64_t version;             /* the state word the payload was read under (0: empty) */
    size_t retained;              /* entries retained in the logbook */
    int64_t first_id;             /* id of the oldest retained entry (0: none) */
    size_t payload_len;           /* bytes of the payload */
    size_t count;                 /* entries returned (id > after_id), in id order */
    tiga_entry *entries;
    const uint8_t *bytes;         /* the copied payload bytes the entries' pointers point */
    size_t bytes_len;             /*   into (for bindings that slice one buffer) */
    void *owner;                  /* private */
} tiga_read_result;

/* Statistics of a channel, for tools. */
typedef struct tiga_channel_info {
    uint64_t version;
    uint64_t capacity;
    uint64_t payload_len;
    int64_t last_id;
    int64_t retained;
    int64_t first_id;             /* 0 when nothing is retained */
    int64_t schema_version;       /* -1 plain */
    int32_t readers0;
    int32_t readers1;
    /* Payloads this handle has loaded since it was opened: read whole, or
     * as a delta (only the header and new entries read, the entries it kept
     * taken from the previous payload; every one verified by its checksum). */
    uint64_t full_loads;
    uint64_t delta_loads;
    /* Times this handle saw the log's last_id go below what it had seen
     * (a peer reset the log), and remapped the data files after another
     * process grew them; the highest id it has seen (its appends issue ids
     * above it). */
    uint64_t resets;
    uint64_t grown;
    int64_t high_id;
} tiga_channel_info;

/* Set the defaults: capacity 1 MiB, min age 1000 ms, reader grace 1000 ms,
 * lock timeout 10000 ms, write timeout 0, no flush, create the directory,
 * mode 0600, files of other owners accepted. */
TIGA_API void tiga_channel_options_init(tiga_channel_options *opt);

/* Open (or create) channel `name` in directory `dir`.  opt may be NULL for
 * the defaults.  Creates the directory (mode 0700 by default, see
 * opt->mode) and any missing file (0600 by default, created exclusively):
 * state 16 zero bytes, notify 3072 zero bytes (both with their disk blocks
 * allocated, so that a full disk fails the open with -ENOSPC instead of a
 * SIGBUS at the first touch), data files at opt->capacity (sparse; a write
 * that finds no disk space fails with -ENOSPC).  A channel file that is a
 * symbolic link is refused (-ELOOP), as is one that is not a regular file
 * (-EINVAL) or, with opt->private_files, one another user owns (-EPERM).  An existing state or notify file of another non-zero size
 * is TIGA_ETRUNCATED/TIGA_ECORRUPT and left untouched; an existing data_0
 * gives the capacity, a shorter data_1 is TIGA_ETRUNCATED.
 * All four files are mapped; reads and writes copy through the mappings.  A
 * data file that another process truncates below the mapping would make a
 * copy fault with SIGBUS, so the first open installs a process-wide SIGBUS
 * handler (sigaction, SA_SIGINFO) that turns such a fault into
 * TIGA_ETRUNCATED for the call and hands every other SIGBUS to the handler
 * it replaced (or the default action).  A later open installs it again only
 * if the disposition went back to the default; a handler installed after
 * it should hand SIGBUS on to the one it found (as Python's faulthandler
 * does), or truncation faults kill the process.
 * Errors: TIGA_EBADNAME, TIGA_EINVAL, TIGA_ETRUNCATED, TIGA_ECORRUPT,
 * TIGA_ENOMEM, -errno.  Thread-safe.  On success *out owns the handle. */
TIGA_API int tiga_channel_open(const char *dir, const char *name,
                               const tiga_channel_options *opt, tiga_channel **out);

/* Close a handle: unmaps and closes the files.  NULL is a no-op. */
TIGA_API void tiga_channel_close(tiga_channel *ch);

/* The capacity (bytes per data file): found at open, larger once another
 * process grew the data files and this handle met a payload that needed it. */
TIGA_API uint64_t tiga_channel_capacity(const tiga_channel *ch);

/* The current version word (atomic load; 0 = nothing written).  Never blocks. */
TIGA_API uint64_t tiga_channel_version(const tiga_channel *ch);

/* Change the minimum age (ms, >= 0) used by this handle's appends. */
TIGA_API int tiga_channel_set_min_age(tiga_channel *ch, int64_t min_age_ms);

/* Append n >= 1 messages as consecutive entries in one new version.
 * Takes the channel lock (in-process mutex, then flock on the state file,
 * within lock_timeout_ms), reads the active logbook, drops the leading
 * entries older than the minimum age, appends, writes the other buffer,
 * publishes the version word and signals live listeners.  Retained entries
 * are copied as bytes, never re-encoded.  *first_id (may be NULL) gets the
 * id of the first appended entry.  Nothing is written on failure.
 * When the entries do not fit beside the retained ones, waits (without the
 * lock) up to write_timeout_ms for the oldest to reach the minimum age.
 * Appends of other threads through the same handle that queue up meanwhile
 * go out in the same version (see tiga_channel_pending_writes).
 * Errors: TIGA_ETOOBIG (can never fit), TIGA_EFULL (does not fit now),
 * TIGA_ECORRUPT, TIGA_ETRUNCATED, TIGA_ETIMEDOUT (lock), TIGA_EINVAL, -errno.
 * Blocks (lock, reader grace).  Thread-safe. */
TIGA_API int tiga_channel_append(tiga_channel *ch, const tiga_message *msgs, size_t n,
                                 int64_t *first_id);

/* tiga_channel_append of n messages packed back to back in one buffer:
 * message i is the next lens[i] bytes of data (the lengths must add up to
 * data_len), all with media_type (NULL for nil).  For bindings: one buffer
 * and one array cross the boundary instead of n message structs. */
TIGA_API int tiga_channel_append_packed(tiga_channel *ch, const uint8_t *data, size_t data_len,
                                        const size_t *lens, size_t n, const char *media_type,
                                        int64_t *first_id);

/* tiga_channel_append of one message (data, len, media_type NULL for nil):
 * the same, without building a tiga_message. */
TIGA_API int tiga_channel_append1(tiga_channel *ch, const uint8_t *data, size_t len,
                                  const char *media_type, int64_t *id);

/* Read the entries with id > after_id (a negative after_id counts as 0).  If
 * the log's last_id is below after_id, the log went back (a peer reset it, or
 * the channel was made anew): the result has reset set and holds the entries
 * after 0.  On success *out is a new result the caller frees with
 * tiga_read_result_free.  The payload is copied out under
 * the reader counter and its checksum verified on the copy; a mismatch is
 * retried a bounded number of times, then TIGA_ECORRUPT.  A channel with
 * nothing written gives an empty result with last_id 0.
 * Errors: TIGA_ECORRUPT, TIGA_ETRUNCATED, TIGA_ENOMEM, -errno.  Thread-safe. */
TIGA_API int tiga_channel_read(tiga_channel *ch, int64_t after_id, tiga_read_result **out);

/* tiga_channel_read without a copy of the entries' bytes, for a caller that
 * copies them out at once: the result's bytes are the handle's own verified
 * copy of the payload, and the handle stays locked (other threads' calls on
 * it wait) until tiga_channel_read_done(ch, *out), which frees the result.
 * Nothing else may be called on the handle in between.  On failure nothing
 * is held. */
TIGA_API int tiga_channel_read_borrow(tiga_channel *ch, int64_t after_id, tiga_read_result **out);

/* The end of a tiga_channel_read_borrow: frees r and unlocks the handle. */
TIGA_API void tiga_channel_read_done(tiga_channel *ch, tiga_read_result *r);

/* Acknowledge: entries with id <= ack_id were consumed by their reader, so
 * this handle's appends may trim them whatever their age (used by a client
 * for requests its server has answered).  Never lowers the mark. */
TIGA_API int tiga_channel_set_ack(tiga_channel *ch, int64_t ack_id);

/* Free a read result.  NULL is a no-op. */
TIGA_API void tiga_read_result_free(tiga_read_result *r);

/* How many appends of this handle's threads are queued for the next write
 * right now.  Appends made at the same time through one handle are written
 * together (group commit): one version, one checksum and one wake-up for
 * all, each call still getting its own consecutive ids and its own result.
 * For diagnostics and tests. */
TIGA_API size_t tiga_channel_pending_writes(tiga_channel *ch);

/* Fill *info with the channel's numbers (reads and verifies the payload). */
TIGA_API int tiga_channel_info_get(tiga_channel *ch, tiga_channel_info *info);

/* Signal every live listener of the channel (done by append already).
 * Clears slots of dead owners on the way.  *woken (may be NULL) gets the
 * number of live slots signalled. */
TIGA_API int tiga_channel_signal(tiga_channel *ch, int32_t *woken);

/* *linked = 1 if all four of the handle's files still have their names, 0 if
 * one was unlinked (a scavenger or a person deleted the channel: the handle
 * works on files nobody else will open; reopen it).  On Windows a deleted
 * file lives on, pending deletion, until its last handle closes: it counts
 * as unlinked, as does a name that now leads to another file. */
TIGA_API int tiga_channel_linked(tiga_channel *ch, int32_t *linked);

/* *out = number of live listener slots (dead owners' slots are cleared). */
TIGA_API int tiga_channel_live_listeners(tiga_channel *ch, int32_t *out);

/* ---------------------------------------------------------------- logbook codec */

/* Decode a logbook payload held in memory (no files): the same decoder the
 * channel uses.  Entries with id > after_id are returned. */
TIGA_API int tiga_logbook_decode(const uint8_t *payload, size_t len, int64_t after_id,
                                 tiga_read_result **out);

/* Build the payload that appending msgs[0..n) to `old` (NULL/0: an empty
 * logbook) gives, as the channel's append does: trim entries with timestamp
 * older than now_ns - min_age_ns, keep the old form and schema version, use
 * `instance` (36 chars) and timestamp now_ns for the new entries.  Fails with
 * TIGA_ETOOBIG / TIGA_EFULL against `capacity`.  *out_len gets the length;
 * *out (malloc'ed) is freed with tiga_free. */
TIGA_API int tiga_logbook_append(const uint8_t *old, size_t old_len,
                                 const tiga_message *msgs, size_t n,
                                 const char *instance, int64_t now_ns, int64_t min_age_ns,
                                 uint64_t capacity, uint8_t **out, size_t *out_len);

/* Free memory returned by libtiga (tiga_logbook_append).  NULL is a no-op. */
TIGA_API void tiga_free(void *p);

/* The monotonic clock used for entry timestamps (CLOCK_MONOTONIC ns). */
TIGA_API int64_t tiga_now_ns(void);

/* ---------------------------------------------------------------- listeners */

typedef struct tiga_listener tiga_listener;

/* Register a listener slot on channel `name` (opens the channel's files).
 * Errors: TIGA_ENOSLOT when all 128 slots are held by live processes, and
 * those of tiga_channel_open.  On success *out owns the listener. */
TIGA_API int tiga_listener_open(const char *dir, const char *name,
                                const tiga_channel_options *opt, tiga_listener **out);

/* Unregister the slot (if it still holds our token) and close.  NULL no-op. */
TIGA_API void tiga_listener_close(tiga_listener *l);

/* The listener's slot index (0..127). */
TIGA_API int32_t tiga_listener_slot(const tiga_listener *l);

/* The channel the listener watches (borrowed; lives as long as the listener). */
TIGA_API tiga_channel *tiga_listener_channel(tiga_listener *l);

/* Wait until the channel is signalled or its version word changes since the
 * last wait (or since open), for at most timeout_ms (-1 forever, 0 poll).
 * spin_us > 0 first spins that many microseconds on the wake and version
 * words before sleeping on the futex.  Returns TIGA_OK (signalled or new
 * data), TIGA_ETIMEDOUT or TIGA_EINTR.  If another process took the slot
 * over, the listener registers again.  Not for concurrent use of one
 * listener from several threads. */
TIGA_API int tiga_listener_wait(tiga_listener *l, int64_t timeout_ms, int64_t spin_us);

/* Wait until channel `ch` has a live listener, within timeout_ms.
 * Returns TIGA_OK, TIGA_ENOTREADY (timeout) or TIGA_EINTR. */
TIGA_API int tiga_channel_wait_listener(tiga_channel *ch, int64_t timeout_ms);

/* ---------------------------------------------------------------- declared subscribers */

/* A declared subscriber publishes the last id it has read in the channel's
 * fifth file, tiga_<name>_subs (ours: the peers never open it; see
 * PROTOCOL-NOTES).  Our writers then keep every entry it has not read yet,
 * whatever its age, up to the capacity (then a write waits, within
 * write_timeout_ms, or fails with TIGA_EFULL), and trim entries that every
 * live declared subscriber has read once they are read_min_age_ms old.  A
 * subscriber whose process died is let go of within 0.25 s, or at once when a
 * write would not fit.  Writers notice the first subscriber of a channel
 * within 1 ms when it also registers a listener (Python's subscriptions do),
 * within 10 ms otherwise; until then the minimum age alone decides. */
typedef struct tiga_subscriber tiga_subscriber;

/* Declare a subscriber of ch's channel that has read up to `position` (the
 * subscribers file is created when missing, with ch's mode).  TIGA_ENOSLOT
 * when all 128 slots are held by live processes.  *out owns the slot. */
TIGA_API int tiga_subscriber_open(tiga_channel *ch, int64_t position, tiga_subscriber **out);

/* Give the slot back (writers stop keeping entries for it).  NULL no-op. */
TIGA_API void tiga_subscriber_close(tiga_subscriber *s);

/* Publish the last id read.  A store; TIGA_ENOTREADY when a writer took
 * this subscriber for dead and gave its slot to another (open a new one). */
TIGA_API int tiga_subscriber_set(tiga_subscriber *s, int64_t position);

/* The subscriber's slot (0..127). */
TIGA_API int32_t tiga_subscriber_slot(const tiga_subscriber *s);

/* *live = declared subscribers alive now (dead ones are let go of),
 * *lowest = the lowest position among them (-1 when there is none). */
TIGA_API int tiga_channel_subscribers(tiga_channel *ch, int32_t *live, int64_t *lowest);

/* ---------------------------------------------------------------- wait sets */

/* Many listeners waited on by one thread: the asyncio bridge keeps one per
 * process instead of a thread per wait.  Only the thread that waits may add,
 * remove and wait; tiga_waitset_kick may be called from any thread.  Each
 * watch keeps what it has seen apart from its listener (other threads may
 * wait on the same listener meanwhile), unless TIGA_WATCH_CONSUME: then the
 * listener's own "seen" state is used and updated, as by tiga_listener_wait.
 * Linux sleeps in futex_waitv (5.16+) on up to 127 slots, Windows in
 * WaitForMultipleObjects on up to 63; beyond that, on older kernels, and with
 * TIGA_WAITSET_POLL, the wait sleeps in slices of at most 8 ms. */
typedef struct tiga_waitset tiga_waitset;
enum tiga_waitset_flags {
    TIGA_WAITSET_POLL = 1,  /* tiga_waitset_open: never the multi-wait call (tests, escape hatch) */
    TIGA_WATCH_CONSUME = 1  /* tiga_waitset_add: use and update the listener's own news */
};

/* Make an empty wait set.  flags: 0 or TIGA_WAITSET_POLL.  *out owns it. */
TIGA_API int tiga_waitset_open(int32_t flags, tiga_waitset **out);

/* Free the set; the listeners stay the caller's.  NULL is a no-op. */
TIGA_API void tiga_waitset_close(tiga_waitset *ws);

/* End the current (or the next) tiga_waitset_wait early.  Any thread. */
TIGA_API void tiga_waitset_kick(tiga_waitset *ws);

/* Watch listener l under the caller's key (unique in the set).  *ready (may
 * be NULL) = 1 when a TIGA_WATCH_CONSUME watch has news already (taken, as a
 * wait would).  The listener must outlive the watch.  TIGA_EINVAL for a key
 * watched already, TIGA_ENOMEM. */
TIGA_API int tiga_waitset_add(tiga_waitset *ws, tiga_listener *l, uint64_t key, int32_t flags,
                              int32_t *ready);

/* Stop watching key: TIGA_OK, or TIGA_EINVAL when no watch has it. */
TIGA_API int tiga_waitset_remove(tiga_waitset *ws, uint64_t key);

/* The number of watches in the set (0 for NULL). */
TIGA_API int32_t tiga_waitset_size(const tiga_waitset *ws);

/* Wait until watches have news, a kick, or timeout_ms (-1 forever): the keys
 * of up to cap watches with news go to keys[], their count to *n (0 after a
 * kick).  Blocks; only the set's own thread.  TIGA_OK or TIGA_ETIMEDOUT. */
TIGA_API int tiga_waitset_wait(tiga_waitset *ws, int64_t timeout_ms, uint64_t *keys, int32_t cap,
                               int32_t *n);

/* ---------------------------------------------------------------- watchdogs */

/* Noticing work that runs long, without a thread that wakes while nothing
 * does: a server marks the start and the end of each handler in a slot of
 * its own numbering (a store each; a kick only after a quiet spell of 0.25
 * s), and one thread sleeps in tiga_watchdog_wait until a slot has been
 * busy for stale_us.  The Python server hands a client's reading to a new
 * thread that way when a sync handler runs long. */
typedef struct tiga_watchdog tiga_watchdog;

/* A watchdog of `slots` slots (1 to 65536), all idle.  *out owns it. */
TIGA_API int tiga_watchdog_open(int32_t slots, tiga_watchdog **out);

/* Free it (no thread may be waiting in it).  NULL is a no-op. */
TIGA_API void tiga_watchdog_close(tiga_watchdog *wd);

/* Work in `slot` begins now / has ended.  Any thread; a slot out of range
 * is ignored; never blocks. */
TIGA_API void tiga_watchdog_begin(tiga_watchdog *wd, int32_t slot);
TIGA_API void tiga_watchdog_end(tiga_watchdog *wd, int32_t slot);

/* End the current (or the next) tiga_watchdog_wait with *slot = -1.  Any thread. */
TIGA_API void tiga_watchdog_kick(tiga_watchdog *wd);

/* Wait until the work in some slot has gone on for stale_us: TIGA_OK with
 * that slot in *slot (the same work is reported again only after another
 * stale_us), TIGA_OK with *slot = -1 after a kick, or TIGA_ETIMEDOUT after
 * timeout_ms (-1 forever).  Blocks; one waiting thread per watchdog. */
TIGA_API int tiga_watchdog_wait(tiga_watchdog *wd, int64_t stale_us, int64_t timeout_ms,
                                int32_t *slot);

/* ---------------------------------------------------------------- invoke envelopes */

/* A response found by tiga_response_find / tiga_response_wait. */
typedef struct tiga_response {
    int64_t last_id;      /* the response log's last id when the scan ended */
    int32_t reset;        /* 1: that last id is below after_id (the log went back; the scan
                             looked at the new log from its start) */
    int32_t found;        /* 1: the response with the id was found */
    int32_t code;         /* its code (0 success, -1 failure) */
    int32_t unjudged;     /* entries after after_id the scan could not read (compressed
                             envelopes): the caller should decode them itself */
    uint8_t *data;        /* response data (UTF-8, owned; freed by tiga_response_clear) */
    size_t data_len;
} tiga_response;

/* Append an invoke envelope [id, 1, method, data] as an application/x-msgpack
 * entry.  `data` is one MessagePack-encoded value (copied as it is); id_out
 * (37 bytes) gets the fresh request id, *entry_id the entry's id.  Errors as
 * tiga_channel_append.  Thread-safe. */
TIGA_API int tiga_invoke_append(tiga_channel *req, const char *method, size_t method_len,
                                const uint8_t *data, size_t data_len, char *id_out,
                                int64_t *entry_id);

/* Append a response envelope [id, 2, data, code] (uncompressed
 * application/x-msgpack, readable by every peer); *entry_id (may be NULL)
 * gets the entry's id.  Thread-safe. */
TIGA_API int tiga_response_append(tiga_channel *resp, const char *request_id,
                                  const char *data, size_t data_len, int32_t code,
                                  int64_t *entry_id);

/* Look through the response entries with id > after_id for the response to
 * request_id.  Fills *out (clear it with tiga_response_clear).  Thread-safe. */
TIGA_API int tiga_response_find(tiga_channel *resp, int64_t after_id, const char *request_id,
                                tiga_response *out);

/* tiga_response_find on the listener's channel, waiting on the listener
 * between looks, until found, an unjudged entry appears, or timeout_ms.
 * TIGA_OK (check out->found), TIGA_ETIMEDOUT or TIGA_EINTR. */
TIGA_API int tiga_response_wait(tiga_listener *l, int64_t after_id, const char *request_id,
                                int64_t timeout_ms, int64_t spin_us, tiga_response *out);

/* tiga_response_find on the listener's channel, looking again whenever its
 * version word changes, for at most spin_us microseconds, without sleeping
 * (an event loop's quick look before it hands the wait to its wait set).
 * TIGA_OK (check out->found / out->unjudged) or TIGA_ETIMEDOUT.  Takes no
 * news from the listener. */
TIGA_API int tiga_response_spin(tiga_listener *l, int64_t after_id, const char *request_id,
                                int64_t spin_us, tiga_response *out);

/* Free out->data and zero *out.  NULL is a no-op. */
TIGA_API void tiga_response_clear(tiga_response *r);

/* A client's whole invoke in one call: tiga_channel_set_ack(req, ack_id) when
 * ack_id > 0, tiga_invoke_append on req, then tiga_response_wait on the
 * response listener l (entries after after_id) for the new request's id.
 * If the append fails its error is returned and id_out[0] is 0 (nothing was
 * written); otherwise id_out holds the request id and the result is that of
 * the wait: TIGA_OK (check out->found / out->unjudged), TIGA_ETIMEDOUT or
 * TIGA_EINTR, after which the caller may go on with tiga_response_wait.
 * timeout_ms 0 never sleeps: the wait is tiga_response_spin for spin_us (an
 * event loop's write and quick look; one look when spin_us is 0). */
TIGA_API int tiga_invoke_call(tiga_channel *req, tiga_listener *l, const char *method,
                              size_t method_len, const uint8_t *data, size_t data_len,
                              int64_t ack_id, int64_t after_id, int64_t timeout_ms,
                              int64_t spin_us, char *id_out, int64_t *entry_id,
                              tiga_response *out);

/* What tiga_request_next found after the given id. */
enum tiga_request_status {
    TIGA_REQUEST_NONE = 0,   /* nothing to serve: no entry, or only entries a server skips
                                (messages without an envelope media type, responses) */
    TIGA_REQUEST_INVOKE = 1, /* an invoke envelope [id, 1, method, data], decoded below */
    TIGA_REQUEST_OTHER = 2   /* an entry the caller must judge itself (compressed, another
                                envelope shape, garbage): entry_id names it */
};

/* The next request of a server's request log, read by tiga_request_next /
 * tiga_request_wait.  Zero it before first use; the storage it owns is reused
 * from call to call and freed by tiga_request_clear. */
typedef struct tiga_request {
    int32_t status;       /* enum tiga_request_status */
    int64_t entry_id;     /* the invoke's (or the entry to judge's) entry id */
    int64_t timestamp;    /* that entry's timestamp */
    int64_t last_id;      /* the newest id seen; with NONE everything up to it was skipped */
    int64_t first_id;     /* the oldest retained id of the log (0 when empty) */
    int32_t reset;        /* 1: the log's last id is below after_id (it went back): the
                             scan looked at the new log from its start */
    const char *id;       /* the request id (UTF-8 as written; id_len bytes + NUL) */
    size_t id_len;
    const char *method;   /* the method (method_len bytes + NUL) */
    size_t method_len;
    const uint8_t *data;  /* the data element: one MessagePack value, undecoded */
    size_t data_len;
    uint8_t *buf;         /* owned storage behind id, method and data */
    size_t cap;
} tiga_request;

/* The first entry with id > after_id that is an invoke or that the caller must
 * judge; entries a server has nothing to do with are skipped.  Thread-safe. */
TIGA_API int tiga_request_next(tiga_channel *req, int64_t after_id, tiga_request *out);

/* A server's wait and read in one call: tiga_request_next on the listener's
 * channel; if there is nothing, one tiga_listener_wait, then one more look.
 * TIGA_OK (check out->status: NONE after a wake-up without news),
 * TIGA_ETIMEDOUT (out->last_id still tells what was skipped) or TIGA_EINTR. */
TIGA_API int tiga_request_wait(tiga_listener *l, int64_t after_id, int64_t timeout_ms,
                               int64_t spin_us, tiga_request *out);

/* Free the storage of *r and zero it.  NULL is a no-op. */
TIGA_API void tiga_request_clear(tiga_request *r);

/* The name of the Windows named event for listener slot `slot` (0..127) of
 * the notify file at notify_path, or with slot -1 the `_listener_ready`
 * event (PROTOCOL section 5): "tiga_wait_handle_file_<16 hex>_slot_<i>",
 * the hex being wyhash final3 of the path as the peers derive it (the full
 * path, upper-cased).  Computed on every platform; only Windows has the
 * events.  TIGA_EINVAL when cap is too small (78 bytes always suffice). */
TIGA_API int tiga_event_name(const char *notify_path, int32_t slot, char *out, size_t cap);

/* ---------------------------------------------------------------- append lock */

typedef struct tiga_lock tiga_lock;

/* Take the lock every append to channel `name` in `dir` takes (flock on
 * its state file; on Windows LockFileEx on a byte past its end), waiting up
 * to timeout_ms (-1: without limit), for a check-then-act that must not
 * interleave with appends or with another process's check (a scavenger's
 * liveness check and unlink).  The state file must exist: -ENOENT
 * otherwise, TIGA_ETIMEDOUT when the wait ran out.  The lock is held by this
 * object, not by the thread: another tiga_lock_open in the same process
 * waits for it too. */
TIGA_API int tiga_lock_open(const char *dir, const char *name, int64_t timeout_ms,
                            tiga_lock **out);

/* Release and free.  NULL is a no-op. */
TIGA_API void tiga_lock_close(tiga_lock *lock);

/* ---------------------------------------------------------------- directory watch */

typedef struct tiga_dirwatch tiga_dirwatch;

/* Watch `dir` for files being created or moved in (inotify on Linux,
 * ReadDirectoryChangesW on Windows; on other systems every wait simply
 * times out).  On success *out owns it. */
TIGA_API int tiga_dirwatch_open(const char *dir, tiga_dirwatch **out);

/* Wait up to timeout_ms for a change.  TIGA_OK (something appeared; the
 * events are drained), TIGA_ETIMEDOUT or TIGA_EINTR. */
TIGA_API int tiga_dirwatch_wait(tiga_dirwatch *w, int64_t timeout_ms);

/* Close the watch.  NULL is a no-op. */
TIGA_API void tiga_dirwatch_close(tiga_dirwatch *w);

/* ---------------------------------------------------------------- processes */

/* The owner_start value this library writes for process `pid` (see the
 * listener slots: .NET UTC ticks on the peers' scale), 0 if unknown. */
TIGA_API int64_t tiga_process_start_ticks(int32_t pid);

/* 1 if (pid, owner_start) names a live process (owner_start 0: the pid
 * exists), else 0. */
TIGA_API int tiga_process_alive(int32_t pid, int64_t owner_start);

TIGA_END_DECLS

#endif /* TIGA_H */
