/*
 * wal_impl.h - what the write-ahead log's files share: the file format's
 * constants, little-endian fields, the handle's fields and the functions one
 * part of the log calls in another.  Not a public header: wal.h is.
 *
 *   wal_crc32c.c   the checksum
 *   wal_record.c   records: check, encode, decode
 *   wal_file.c     file names, headers, writes and fsyncs, the LOCK
 *   wal_read.c     replay: snapshot, segments, torn-tail repair, reports
 *   wal.c          the writer: open, append, group commit, close
 *   wal_compact.c  compaction into a snapshot
 *   wal_state.c    the state fold (needs nothing from here)
 */
#ifndef GS_WAL_IMPL_H
#define GS_WAL_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wal.h"

#define WAL_SEG_MAGIC    "GSWALSEG"
#define WAL_SNAP_MAGIC   "GSWALSNP"
#define WAL_FILE_VERSION 3u /* 3: KEY records; 2: SNAPSHOT_END carries gen_high; 1, 2 read */

/* --- little-endian fields ------------------------------------------------ */

static inline void wal_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wal_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void wal_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t wal_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wal_get64(const uint8_t *p)
{
	return (uint64_t)wal_get32(p) | (uint64_t)wal_get32(p + 4) << 32;
}

/* --- records (wal_record.c) ---------------------------------------------- */

/*
 * Checks a record and computes its payload size.  Markers only when
 * `markers` (compaction writes them, callers may not).  GS_EINVAL, GS_ETOOBIG.
 */
int wal_rec_check(const gs_wal_rec *r, uint32_t max_record, bool markers, uint32_t *payload);

/* Writes a checked record, header and payload (GS_WAL_RECORD_HEADER + payload bytes), at dst. */
void wal_rec_encode(const gs_wal_rec *r, uint32_t payload, uint8_t *dst);

/* Decodes a payload whose checksum held into *r (pointing into p); false if it is malformed. */
bool wal_rec_decode(uint32_t type, const uint8_t *p, size_t n, gs_wal_rec *r);

/* --- files (wal_file.c) -------------------------------------------------- */

/* Fills a file header: magic, WAL_FILE_VERSION, seq, CRC. */
void wal_file_header(uint8_t h[GS_WAL_FILE_HEADER], const char *magic, uint64_t seq);

/* Whether h is a valid header of file `seq` with `magic` (versions 1..WAL_FILE_VERSION). */
bool wal_file_header_ok(const uint8_t *h, const char *magic, uint64_t seq);

/* "wal-<seq>.log" / "snap-<seq>.log", with ".tmp" appended when tmp, into out[n]. */
void wal_seg_name(char *out, size_t n, uint64_t seq, bool tmp);
void wal_snap_name(char *out, size_t n, uint64_t seq, bool tmp);

/* "<prefix><16 hex>.log" -> *seq (not 0); false for any other name. */
bool wal_parse_name(const char *name, const char *prefix, uint64_t *seq);

/* Whether name is a wal-* or snap-* file being created (*.tmp). */
bool wal_is_tmp_name(const char *name);

/* pwrite()s all n bytes at off, retrying short writes and EINTR: 0, or -1 with errno. */
int wal_write_all(int fd, const void *buf, size_t n, uint64_t off);

/* fsync / fdatasync, retried on EINTR: 0, or -1 with errno. */
int wal_fsync_fd(int fd);
int wal_fdatasync_fd(int fd);

/* Creates segment seq whole or not at all; its fd, open for writing, or -1 with errno. */
int wal_create_segment(int dfd, uint64_t seq);

/* Takes the directory lock: GS_EBUSY if held; *fd -1 if the file cannot exist here. */
int wal_lock_dir(int dfd, bool create, int *fd);

/* --- reading (wal_read.c) ------------------------------------------------ */

/* Sets r->message; counts a warning when `warning`. */
__attribute__((format(printf, 3, 4))) void wal_rep_say(gs_wal_report *r, bool warning,
                                                       const char *fmt, ...);

/* Where a replay ended: what gs_wal_open goes on from. */
struct wal_replay_end {
	uint64_t last_seq, last_end; /* the newest segment and its end (intact); 0 if none */
	uint64_t log_bytes;          /* segment bytes read */
	uint64_t snap_bytes;         /* size of the snapshot read, 0 if none */
};

/*
 * The whole replay of directory dfd, which the caller has locked (see wal.h,
 * "Reading"): records to fn (may be NULL), torn tail cut, obsolete files
 * removed, *rep filled in (zeroed by the caller).  end may be NULL.  GS_OK,
 * fn's error, GS_ENOMEM or GS_EIO (rep->message says why).
 */
int wal_replay_dir(int dfd, gs_wal_replay_fn fn, void *arg, gs_wal_report *rep,
                   struct wal_replay_end *end);

/* --- writing (wal.c) ----------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Makes room for `more` bytes past len.  GS_ENOMEM. */
int wal_wbuf_reserve(struct wbuf *b, size_t more);

struct gs_wal {
	int dfd, lock_fd;
	gs_wal_opts o;
	/* mu guards the fields up to `io`; cv signals durable_lsn and failure. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct wbuf buf; /* appended, not yet written */
	uint64_t next_lsn, written_lsn, durable_lsn;
	bool failed;
	int failed_errno;
	uint64_t syncs, bytes_written, log_bytes, snapshot_bytes, seq_pub;
	/* io guards the segment and the spare buffer; taken before mu. */
	pthread_mutex_t io;
	struct wbuf spare;
	int fd;
	uint64_t seq, off;
	/* one compaction at a time */
	pthread_mutex_t cmu;
};

/* Write + fdatasync, then a new segment if this one is full.  io held.  GS_EIO. */
int wal_sync_io(gs_wal *w);

/* Closes the (synced) segment and starts the next.  io held.  GS_EIO. */
int wal_rotate_io(gs_wal *w);

#endif /* GS_WAL_IMPL_H */
