/*
 * wal.h - the write-ahead log: what `gsched server --data-dir DIR` keeps so
 * that no acknowledged task is lost when the machine restarts.
 *
 * Owns: one directory and the files in it.
 *
 *   wal-<seq>.log     segments, <seq> 16 hex digits, 1, 2, ... in write order
 *   snap-<seq>.log    a snapshot of the live tasks: it replaces every segment
 *                     before wal-<seq>.log
 *   *.tmp             files being created; ignored and removed on open
 *   LOCK              flock()ed by the open handle: one writer per directory
 *
 * Every file starts with a 32-byte header (magic, version, seq, CRC-32C).
 * Then records, little-endian:
 *
 *   [u32 len][u32 crc][u8 type][payload: len bytes]
 *
 * crc is the CRC-32C (Castagnoli) of the len field, the type byte and the
 * payload.  A record is at most GS_WAL_MAX_RECORD bytes, header included.
 * Payload per type (u64/u32 integers, "bytes" = u32 length + the bytes):
 *
 *   SUBMIT    id, submitted_us, not_before_us, priority, max_retries,
 *             timeout_ms, queue name (u16 length, bytes, NUL), spec bytes
 *   ASSIGN    id, assigned_us, worker, attempt
 *   COMPLETE  id, finished_us, status (i32), state (u8: DONE | FAILED),
 *             reason (u8), attempt, result bytes
 *   CANCEL    id, cancelled_us
 *   RELEASE   id                       (the result was fetched or expired)
 *   KEY       flags (u8: 1 = committed), created_us, digest, key (u16
 *             length + bytes), n (u32), n task IDs (u64)   (file version 3)
 *   SNAPSHOT_BEGIN / SNAPSHOT_END      seq, written_us / seq, task count,
 *                                      gen_high (u32; file version 2)
 *
 * Writing.  gs_wal_append() encodes a record into an in-memory buffer and
 * returns its LSN (1, 2, ... per open handle; LSNs are not stored on disk).
 * gs_wal_sync() writes everything appended so far with one write and one
 * fdatasync, then advances the durable LSN: that is group commit.  The module
 * starts no thread: the caller decides when to sync (the server runs a
 * committer thread that syncs every --fsync-ms, and RPC threads that must not
 * acknowledge before their record is on disk call gs_wal_wait_durable()).
 * Appends go on while a sync is writing: the sync takes the buffer and
 * leaves an empty one.  Concurrent gs_wal_sync() callers queue behind one
 * another and a caller whose records the previous fsync already covered
 * returns without one, so even "every caller syncs" batches.  Past opts.buffer_bytes, an append
 * writes the buffer out itself (no fsync), so memory stays bounded.  A segment past
 * opts.segment_bytes is closed at the next sync and a new one started.
 *
 * Reading.  gs_wal_open() (and gs_wal_replay(), which only reads and
 * repairs) passes every intact record to a callback, in write order: first
 * the newest complete snapshot (SNAPSHOT_BEGIN, its tasks, SNAPSHOT_END),
 * then every segment from that snapshot's seq on.  A bad record (wrong
 * checksum, impossible length, type or payload, or cut short) in the LAST
 * segment is a torn tail: the file is cut there (ftruncate + fsync), the
 * report says so, and every record before it has been delivered.  A bad
 * record in an older segment cannot come from a crash (a segment is
 * fdatasync'ed before the next is created), so it is GS_EIO and nothing is
 * changed: an operator decides.  A missing segment (a gap in the seqs, or
 * older segments gone without a valid snapshot replacing them) is GS_EIO too.
 *
 * Compaction.  gs_wal_compact() closes the current segment (fdatasync) and
 * starts segment K, so appends and syncs go on into K meanwhile; then it
 * writes snap-K.log.tmp from the caller's iteration of the live tasks, ends
 * it with SNAPSHOT_END, fsyncs it, renames it to snap-K.log, fsyncs the
 * directory, and only then removes the segments before K and older
 * snapshots.  A crash at any point leaves either the old segments (the .tmp
 * is ignored) or the complete snapshot plus the segments from K on (the old
 * segments are ignored and removed on the next open).  Replaying the
 * segments from K on over a snapshot taken after K began is safe because
 * the fold below is idempotent (see gs_wal_state).
 *
 * The state fold.  gs_wal_state folds records into the live tasks, keyed by
 * task ID: SUBMIT creates a QUEUED task (or fills in the spec of one already
 * known; it never resets a state); ASSIGN records the attempt; COMPLETE and
 * CANCEL set the final state; RELEASE removes the task for good (later
 * records of that ID are ignored).  A task seen ASSIGNED comes back QUEUED:
 * delivery is at-least-once across a restart.  A task whose SUBMIT never
 * reached the log (its submitter was never acknowledged) is dropped.
 *
 * Idempotency keys.  A keyed Submit appends KEY (flags 0) before the
 * SUBMITs of its tasks, and is acknowledged once the last SUBMIT is durable.
 * A KEY whose tasks are not all in the log (each SUBMITted, or RELEASEd) was
 * cut by a torn tail before its acknowledgement: the fold drops the key AND
 * the tasks of it that made it, so a keyed batch is all or nothing across a
 * crash and the client's retry creates it once.  A snapshot writes each live
 * key with flag 1 (committed: its released tasks are legitimately absent).
 * The later KEY record of a key wins (a key is reused only once every task
 * of its earlier use was released).  A key none of whose tasks is live is
 * dead: gs_wal_state_each_key skips it.
 *
 * Thread-safety: gs_wal_append, gs_wal_flush, gs_wal_sync, gs_wal_durable_lsn,
 * gs_wal_appended_lsn, gs_wal_wait_durable, gs_wal_stats and gs_wal_compact
 * may be called from any thread of the process that opened the handle (a
 * mutex and a condition variable inside; compactions run one at a time,
 * a second one gets GS_EBUSY).  gs_wal_close: no other call in flight.
 * gs_wal_replay must not run on a directory some handle has open (GS_EBUSY).
 * gs_wal_state is not thread-safe: one thread at a time.
 *
 * Errors: GS_EINVAL (bad argument or record; nothing appended), GS_ETOOBIG
 * (record over opts.max_record), GS_ENOMEM, GS_EBUSY (directory locked by
 * another handle, or a compaction already running), GS_ETIMEOUT
 * (wait_durable ran out), GS_ENOTFOUND (replay of a missing directory), GS_EIO (an OS call failed,
 * errno says why; or the log is damaged before its tail, the report says where).  A failed write or
 * fsync makes the handle fail for good: every later append and sync returns GS_EIO with the first
 * errno, because after a failed fsync the kernel may have dropped the dirty
 * pages and retrying would only pretend.  Restart and replay.
 *
 * Buffers: records passed to gs_wal_append and gs_wal_snap_add are copied;
 * the caller keeps ownership.  Records and tasks passed to callbacks point
 * into the reader's buffers and are valid during the callback only.  Tasks
 * from gs_wal_state stay valid until gs_wal_state_free.
 */
#ifndef GS_WAL_H
#define GS_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task_table.h"

#define GS_WAL_MAX_RECORD     (64u << 20) /* a record, header included */
#define GS_WAL_MAX_QUEUE_NAME 255u
#define GS_WAL_RECORD_HEADER  9u /* len, crc, type */
#define GS_WAL_FILE_HEADER    32u

enum gs_wal_type {
	GS_WAL_SUBMIT = 1,
	GS_WAL_ASSIGN = 2,
	GS_WAL_COMPLETE = 3,
	GS_WAL_CANCEL = 4,
	GS_WAL_RELEASE = 5,
	GS_WAL_SNAPSHOT_BEGIN = 6, /* written by gs_wal_compact only */
	GS_WAL_SNAPSHOT_END = 7,
	GS_WAL_KEY = 8, /* an idempotency key and its task IDs (file version 3) */
};

#define GS_WAL_KEY_COMMITTED 1u /* KEY flags: written by a snapshot */
#define GS_WAL_MAX_KEY       128u

/* One record; which fields matter depends on type (see the table above). */
typedef struct gs_wal_rec {
	uint32_t type;          /* enum gs_wal_type */
	uint64_t task;          /* every type but the snapshot markers */
	uint64_t time_us;       /* submitted / assigned / finished / cancelled / written */
	const char *queue;      /* SUBMIT: NUL-terminated, 1..GS_WAL_MAX_QUEUE_NAME bytes */
	uint32_t priority;      /* SUBMIT */
	uint32_t max_retries;   /* SUBMIT */
	uint32_t timeout_ms;    /* SUBMIT */
	uint64_t not_before_us; /* SUBMIT */
	const void *data;       /* SUBMIT: the spec payload; COMPLETE: the result */
	uint32_t data_len;
	uint64_t worker;  /* ASSIGN */
	uint32_t attempt; /* ASSIGN, COMPLETE */
	uint32_t state;   /* COMPLETE: GS_TASK_DONE or GS_TASK_FAILED */
	int32_t status;   /* COMPLETE */
	uint32_t reason;  /* COMPLETE: enum gs_task_reason */
	uint64_t seq;     /* SNAPSHOT_*: the first segment after the snapshot */
	uint64_t count;   /* SNAPSHOT_END: tasks in the snapshot */
	/* SNAPSHOT_END: the highest task-ID generation the writer had issued
	 * (gs_wal_snap_gen_high), so that released IDs the snapshot no longer
	 * names are still never handed out again (0 in version-1 files). */
	uint32_t gen_high;
	/* KEY: the key, the request digest, flags (GS_WAL_KEY_COMMITTED) and
	 * n_ids task IDs: `ids` when appending; when replaying, `ids_le` points
	 * at n_ids little-endian u64 in the reader's buffer (gs_wal_rec_id). */
	const void *key;
	uint32_t key_len; /* 1..GS_WAL_MAX_KEY */
	uint32_t flags;
	uint64_t digest;
	const uint64_t *ids;
	const uint8_t *ids_le;
	uint32_t n_ids;
} gs_wal_rec;

/* The i-th task ID of a KEY record (from ids, else from ids_le). */
uint64_t gs_wal_rec_id(const gs_wal_rec *r, uint32_t i);

/* A live idempotency key: what the fold gives back and a snapshot holds. */
typedef struct gs_wal_key {
	const void *key;
	uint32_t key_len;
	uint64_t digest, created_us;
	const uint64_t *ids;
	uint32_t n_ids;
} gs_wal_key;

/* A live task: what the fold gives back and what a snapshot holds. */
typedef struct gs_wal_task {
	uint64_t id;
	uint32_t state; /* GS_TASK_QUEUED, DONE, FAILED or CANCELLED */
	const char *queue;
	uint32_t priority, max_retries, timeout_ms;
	uint64_t submitted_us, not_before_us;
	const void *spec;
	uint32_t spec_len;
	uint32_t attempt; /* last attempt assigned, 0 if never */
	/* final states: */
	int32_t status;
	uint32_t reason;
	uint64_t finished_us;
	const void *result;
	uint32_t result_len;
} gs_wal_task;

typedef struct gs_wal_opts {
	uint64_t segment_bytes; /* start a new segment past this; 0: 64 MiB */
	uint32_t max_record;    /* largest record accepted, <= GS_WAL_MAX_RECORD; 0: that */
	uint64_t buffer_bytes;  /* an append writes the buffer out past this; 0: 4 MiB */
	/*
	 * Testing only, 0 otherwise: gs_wal_compact stops as if the process
	 * died at that point (GS_WAL_CRASH_*), leaving its files as they are.
	 */
	int crash_point;
} gs_wal_opts;

enum gs_wal_crash_point {
	GS_WAL_CRASH_NONE = 0,
	GS_WAL_CRASH_BEFORE_SNAPSHOT_END = 1, /* snapshot tasks written, no END, not renamed */
	GS_WAL_CRASH_BEFORE_UNLINK = 2,       /* snapshot complete and renamed, old files kept */
};

/* What a replay found.  message holds the last warning or the error. */
typedef struct gs_wal_report {
	uint64_t records;        /* records passed to the callback */
	uint64_t bytes;          /* bytes of intact records read */
	uint32_t segments;       /* segment files read */
	uint64_t snapshot_seq;   /* the snapshot used, 0 if none */
	uint64_t snapshot_tasks; /* tasks in it */
	uint64_t last_seq;       /* the newest segment read, 0 if none */
	bool truncated;          /* a torn tail was cut off the last segment */
	uint64_t truncated_at;   /* ...at this offset of that file */
	uint64_t truncated_bytes;
	uint32_t warnings; /* torn tail, invalid snapshot skipped, stray files removed */
	char message[320];
} gs_wal_report;

typedef struct gs_wal_stats {
	uint64_t appended_lsn, written_lsn, durable_lsn;
	uint64_t syncs;          /* fdatasyncs of segments */
	uint64_t bytes_written;  /* since open */
	uint64_t log_bytes;      /* segment bytes a replay would read (since the last snapshot) */
	uint64_t snapshot_bytes; /* size of the current snapshot, 0 if none */
	uint64_t segment_seq;    /* the segment being written */
	uint64_t buffered_bytes; /* appended, not yet written */
} gs_wal_stats;

typedef struct gs_wal gs_wal;
typedef struct gs_wal_snap gs_wal_snap;

/* Replay callback: 0 to go on; anything else stops the replay and is returned. */
typedef int (*gs_wal_replay_fn)(void *arg, const gs_wal_rec *r);

/* Compaction callback: add every live task with gs_wal_snap_add(); 0 or an error. */
typedef int (*gs_wal_live_fn)(void *arg, gs_wal_snap *snap);

/* --- the log ------------------------------------------------------------ */

/*
 * Opens the log in `dir` (created, with its parent fsync'ed, if absent):
 * locks it, replays it through fn (may be NULL) as gs_wal_replay does,
 * cutting a torn tail, then starts a new segment for appends.  opts may be
 * NULL.  report (may be NULL) says what the replay found.  GS_EBUSY if
 * another handle holds the directory; GS_EIO if it cannot be created,
 * written or is damaged before its tail.
 */
int gs_wal_open(const char *dir, const gs_wal_opts *opts, gs_wal_replay_fn fn, void *arg,
                gs_wal_report *report, gs_wal **out);

/*
 * Replays `dir` without opening it for writing (see above); cuts a torn
 * tail.  GS_ENOTFOUND if dir does not exist; GS_EBUSY if a handle has it open.
 */
int gs_wal_replay(const char *dir, gs_wal_replay_fn fn, void *arg, gs_wal_report *report);

/*
 * Buffers one record; *lsn (may be NULL) receives its LSN.  Not durable
 * until gs_wal_sync() covers it.  GS_EINVAL, GS_ETOOBIG, GS_ENOMEM (nothing
 * appended), GS_EIO (the handle failed, or writing a full buffer failed).
 */
int gs_wal_append(gs_wal *w, const gs_wal_rec *r, uint64_t *lsn);

/* Writes the buffer to the segment, without fsync.  GS_EIO. */
int gs_wal_flush(gs_wal *w);

/*
 * Makes every record appended before the call durable: one write, one
 * fdatasync (none if nothing is pending), then wakes gs_wal_wait_durable.
 * *durable_lsn (may be NULL) receives the durable LSN.  GS_EIO.
 */
int gs_wal_sync(gs_wal *w, uint64_t *durable_lsn);

uint64_t gs_wal_durable_lsn(gs_wal *w);
uint64_t gs_wal_appended_lsn(gs_wal *w);

/*
 * Waits until the record `lsn` is durable (someone else syncs).  timeout_ms
 * < 0 waits without limit.  GS_OK, GS_ETIMEOUT, GS_EIO (the handle failed:
 * it never will be), GS_EINVAL (lsn never appended).
 */
int gs_wal_wait_durable(gs_wal *w, uint64_t lsn, int timeout_ms);

/*
 * Replaces the log with a snapshot of the live tasks: fn adds each with
 * gs_wal_snap_add().  Appends and syncs may go on meanwhile; see above for
 * the order of events and why a crash anywhere is safe.  The caller must
 * make the engine change before appending its record, so that whatever
 * fn sees covers every record appended before the call.  GS_EBUSY (one
 * already running), GS_EIO, or fn's error (the snapshot is abandoned, the
 * log stays as it was).
 */
int gs_wal_compact(gs_wal *w, gs_wal_live_fn fn, void *arg);

/* Adds one live task to the snapshot being written.  GS_EINVAL, GS_ETOOBIG, GS_EIO. */
int gs_wal_snap_add(gs_wal_snap *snap, const gs_wal_task *t);

/* Adds one live idempotency key to the snapshot (a committed KEY record).
 * GS_EINVAL, GS_ETOOBIG, GS_EIO. */
int gs_wal_snap_add_key(gs_wal_snap *snap, const gs_wal_key *k);

/* Records (the maximum of) the highest ID generation issued so far in the
 * snapshot being written: its SNAPSHOT_END carries it (see gen_high). */
void gs_wal_snap_gen_high(gs_wal_snap *snap, uint32_t gen);

void gs_wal_stats_get(gs_wal *w, gs_wal_stats *out);

/*
 * Syncs what is pending, frees the handle and unlocks the directory; returns
 * the sync's status (GS_EIO if the handle had failed).  No other call may be
 * in flight: join the committer and every thread that may be in
 * gs_wal_wait_durable first (the final sync releases them).
 */
int gs_wal_close(gs_wal *w);

/* Human-readable record type, for logs. */
const char *gs_wal_type_name(uint32_t type);

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (0 to start). */
uint32_t gs_wal_crc32c(uint32_t crc, const void *p, size_t n);

/* --- the state fold ----------------------------------------------------- */

typedef struct gs_wal_state gs_wal_state;

int gs_wal_state_new(gs_wal_state **out);
void gs_wal_state_free(gs_wal_state *s);

/* Folds one record in.  GS_ENOMEM; records of unknown or marker types are ignored. */
int gs_wal_state_apply(gs_wal_state *s, const gs_wal_rec *r);

/* A gs_wal_replay_fn: arg is a gs_wal_state. */
int gs_wal_state_fn(void *arg, const gs_wal_rec *r);

/*
 * The highest task-ID generation in any record folded in (live, released or
 * orphaned) or remembered by a snapshot's SNAPSHOT_END: new IDs after a
 * restart must have a higher one (gs_engine_restore_finish).
 */
uint32_t gs_wal_state_gen_high(const gs_wal_state *s);

/* Live tasks, dropped orphans (records of a task whose SUBMIT is absent).
 * The count does not settle the keys: call it after gs_wal_state_each (or
 * _keys) to leave out tasks dropped with a KEY cut before its ack. */
size_t gs_wal_state_count(const gs_wal_state *s);
size_t gs_wal_state_orphans(const gs_wal_state *s);

/*
 * Calls fn for each live task in submission order (submitted_us, then log
 * order); fn returns 0 to go on, anything else stops and is returned.
 */
int gs_wal_state_each(gs_wal_state *s, int (*fn)(void *arg, const gs_wal_task *t), void *arg);

/*
 * Calls fn for each live idempotency key (at least one of its tasks live;
 * see "Idempotency keys" above), in no particular order; fn returns 0 to go
 * on.  Call once the replay is complete: it settles the keys first (drops
 * those cut by a torn tail, with their tasks), as gs_wal_state_each does.
 */
int gs_wal_state_each_key(gs_wal_state *s, int (*fn)(void *arg, const gs_wal_key *k), void *arg);

/* Live keys; tasks dropped because their KEY was cut before its
 * acknowledgement (both settle the keys first, like _each). */
size_t gs_wal_state_keys(gs_wal_state *s);
size_t gs_wal_state_unacked(gs_wal_state *s);

/* Looks a task up by ID: GS_ENOTFOUND if not live. */
int gs_wal_state_get(gs_wal_state *s, uint64_t id, gs_wal_task *out);

/*
 * Convenience: a fresh state filled by gs_wal_replay(dir).  On error *out
 * is NULL.
 */
int gs_wal_replay_state(const char *dir, gs_wal_state **out, gs_wal_report *report);

#endif /* GS_WAL_H */
