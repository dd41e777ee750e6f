/*
 * wal_read.c - replay: finds the newest complete snapshot and the segments
 * after it, passes every intact record on in write order, cuts a torn tail
 * off the last segment, removes files a snapshot replaced, and says what it
 * found in a gs_wal_report.  Serves gs_wal_replay and gs_wal_open.  One
 * thread per replay; the caller holds the directory's LOCK.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gs_error.h"
#include "wal_impl.h"

#define READ_CHUNK (1u << 20)

/* --- reports -------------------------------------------------------------- */

void wal_rep_say(gs_wal_report *r, bool warning, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	if (warning)
		r->warnings++;
}

/* --- reading -------------------------------------------------------------- */

struct reader {
	int fd;
	uint8_t *buf;
	size_t cap, pos, len;
	uint64_t base; /* file offset of buf[0] */
};

/* Makes n bytes available at pos: 1, or 0 at end of file, -1 read error, -2 no memory. */
static int rd_need(struct reader *r, size_t n)
{
	if (r->len - r->pos >= n)
		return 1;
	if (r->pos) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->base += r->pos;
		r->len -= r->pos;
		r->pos = 0;
	}
	if (n > r->cap) {
		size_t c = n < READ_CHUNK ? READ_CHUNK : n;
		uint8_t *b = realloc(r->buf, c);
		if (!b)
			return -2;
		r->buf = b;
		r->cap = c;
	}
	while (r->len < n) {
		ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0)
			return 0;
		r->len += (size_t)k;
	}
	return 1;
}

enum scan_result { SCAN_CLEAN, SCAN_BAD, SCAN_ERR };

struct scan {
	int dfd;
	gs_wal_replay_fn fn;
	void *arg;
	gs_wal_report *rep;
	struct reader rd;
	int err; /* SCAN_ERR: the gs_status */
	/* what gs_wal_open continues from: */
	uint64_t last_seq, last_end, max_seq;
	uint64_t log_bytes, snap_bytes;
};

typedef int (*rec_cb)(void *ctx, const gs_wal_rec *r);

/*
 * Reads file `name` (header `magic`, `seq`), passing each intact record to
 * cb.  SCAN_CLEAN: *end is the file's end.  SCAN_BAD: *end is the offset of
 * the first bad record, *why says what was wrong.  SCAN_ERR: s->err.
 */
static enum scan_result scan_file(struct scan *s, const char *name, const char *magic, uint64_t seq,
                                  rec_cb cb, void *ctx, uint64_t *end, const char **why)
{
	struct reader *rd = &s->rd;
	int fd = openat(s->dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		s->err = GS_EIO;
		wal_rep_say(s->rep, false, "%s: open: %s", name, strerror(errno));
		return SCAN_ERR;
	}
	rd->fd = fd;
	rd->pos = rd->len = 0;
	rd->base = 0;
	enum scan_result res = SCAN_CLEAN;
	int k = rd_need(rd, GS_WAL_FILE_HEADER);
	if (k < 0)
		goto rd_err;
	if (k == 0 || !wal_file_header_ok(rd->buf, magic, seq)) {
		*end = 0;
		*why =
		    k && memcmp(rd->buf, magic, 8) == 0 && wal_get32(rd->buf + 8) > WAL_FILE_VERSION
		        ? "file version newer than this gsched reads (upgrade gsched)"
		        : "bad file header";
		res = SCAN_BAD;
		goto out;
	}
	rd->pos = GS_WAL_FILE_HEADER;
	for (;;) {
		*end = rd->base + rd->pos;
		k = rd_need(rd, GS_WAL_RECORD_HEADER);
		if (k < 0)
			goto rd_err;
		if (k == 0) {
			if (rd->len == rd->pos)
				goto out; /* clean end */
			*why = "record header cut short";
			res = SCAN_BAD;
			goto out;
		}
		uint32_t len = wal_get32(rd->buf + rd->pos);
		if (len > GS_WAL_MAX_RECORD - GS_WAL_RECORD_HEADER) {
			*why = "impossible record length";
			res = SCAN_BAD;
			goto out;
		}
		k = rd_need(rd, GS_WAL_RECORD_HEADER + (size_t)len);
		if (k < 0)
			goto rd_err;
		if (k == 0) {
			*why = "record cut short";
			res = SCAN_BAD;
			goto out;
		}
		const uint8_t *h = rd->buf + rd->pos;
		uint32_t crc = gs_wal_crc32c(0, h, 4);
		crc = gs_wal_crc32c(crc, h + 8, 1 + (size_t)len);
		gs_wal_rec r;
		if (crc != wal_get32(h + 4)) {
			*why = "checksum mismatch";
			res = SCAN_BAD;
			goto out;
		}
		if (!wal_rec_decode(h[8], h + GS_WAL_RECORD_HEADER, len, &r)) {
			*why = "malformed record";
			res = SCAN_BAD;
			goto out;
		}
		rd->pos += GS_WAL_RECORD_HEADER + (size_t)len;
		int rc = cb(ctx, &r);
		if (rc != 0) {
			s->err = rc;
			res = SCAN_ERR;
			goto out;
		}
	}
rd_err:
	if (k == -2) {
		s->err = GS_ENOMEM;
		wal_rep_say(s->rep, false, "%s: out of memory", name);
	} else {
		s->err = GS_EIO;
		wal_rep_say(s->rep, false, "%s: read: %s", name, strerror(errno));
	}
	res = SCAN_ERR;
out:
	close(fd);
	rd->fd = -1;
	return res;
}

/* Checks a snapshot's structure: BEGIN(seq), tasks, END(seq, count), nothing after. */
struct snap_check {
	uint64_t seq, tasks;
	int phase; /* 0: before BEGIN, 1: tasks, 2: after END */
};

static int snap_check_cb(void *ctx, const gs_wal_rec *r)
{
	struct snap_check *c = ctx;
	switch (c->phase) {
	case 0:
		if (r->type != GS_WAL_SNAPSHOT_BEGIN || r->seq != c->seq)
			return GS_EPROTO;
		c->phase = 1;
		return 0;
	case 1:
		if (r->type == GS_WAL_SNAPSHOT_END) {
			if (r->seq != c->seq || r->count != c->tasks)
				return GS_EPROTO;
			c->phase = 2;
			return 0;
		}
		if (r->type == GS_WAL_SUBMIT)
			c->tasks++;
		else if (r->type == GS_WAL_SNAPSHOT_BEGIN || r->type == GS_WAL_RELEASE)
			return GS_EPROTO;
		return 0;
	default:
		return GS_EPROTO;
	}
}

static int deliver_cb(void *ctx, const gs_wal_rec *r)
{
	struct scan *s = ctx;
	s->rep->records++;
	if (r->type == GS_WAL_SNAPSHOT_END)
		s->rep->snapshot_tasks = r->count;
	return s->fn ? s->fn(s->arg, r) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct seqs {
	uint64_t *v;
	size_t n, cap;
};

static int seqs_push(struct seqs *s, uint64_t v)
{
	if (s->n == s->cap) {
		size_t c = s->cap ? s->cap * 2 : 16;
		uint64_t *p = realloc(s->v, c * sizeof(*p));
		if (!p)
			return GS_ENOMEM;
		s->v = p;
		s->cap = c;
	}
	s->v[s->n++] = v;
	return GS_OK;
}

/* Lists segments and snapshots; removes *.tmp files (best effort). */
static int list_dir(struct scan *s, struct seqs *segs, struct seqs *snaps)
{
	int fd = dup(s->dfd);
	if (fd < 0)
		return GS_EIO;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return GS_EIO;
	}
	rewinddir(d);
	int rc = GS_OK;
	bool removed = false;
	struct dirent *de;
	while (rc == GS_OK && (de = readdir(d)) != NULL) {
		uint64_t seq;
		if (wal_parse_name(de->d_name, "wal-", &seq)) {
			rc = seqs_push(segs, seq);
		} else if (wal_parse_name(de->d_name, "snap-", &seq)) {
			rc = seqs_push(snaps, seq);
		} else if (wal_is_tmp_name(de->d_name)) {
			if (unlinkat(s->dfd, de->d_name, 0) == 0) {
				removed = true;
				wal_rep_say(s->rep, true,
				            "removed %s, left by an interrupted write", de->d_name);
			}
		}
	}
	closedir(d);
	if (removed)
		(void)wal_fsync_fd(s->dfd);
	if (rc == GS_OK && segs->n)
		qsort(segs->v, segs->n, sizeof(uint64_t), cmp_u64);
	if (rc == GS_OK && snaps->n)
		qsort(snaps->v, snaps->n, sizeof(uint64_t), cmp_u64);
	return rc;
}

static int cut_tail(struct scan *s, const char *name, uint64_t at)
{
	int fd = openat(s->dfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)at) != 0 || wal_fsync_fd(fd) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

static uint64_t file_size(int dfd, const char *name)
{
	struct stat st;
	return fstatat(dfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

/* The whole replay: snapshot, segments, torn tail, obsolete files. */
static int scan_dir(struct scan *s)
{
	struct seqs segs = {0}, snaps = {0};
	char name[64];
	uint64_t end = 0;
	const char *why = "";
	int rc = list_dir(s, &segs, &snaps);
	if (rc != GS_OK) {
		wal_rep_say(s->rep, false, "listing the log directory: %s",
		            rc == GS_EIO ? strerror(errno) : gs_strerror(rc));
		goto out;
	}
	if (segs.n)
		s->max_seq = segs.v[segs.n - 1];
	if (snaps.n && snaps.v[snaps.n - 1] > s->max_seq)
		s->max_seq = snaps.v[snaps.n - 1];

	/* The newest complete snapshot. */
	uint64_t snap = 0;
	for (size_t i = snaps.n; i-- > 0;) {
		struct snap_check c = {snaps.v[i], 0, 0};
		wal_snap_name(name, sizeof(name), snaps.v[i], false);
		enum scan_result res =
		    scan_file(s, name, WAL_SNAP_MAGIC, snaps.v[i], snap_check_cb, &c, &end, &why);
		if (res == SCAN_ERR && s->err != GS_EPROTO) {
			rc = s->err;
			goto out;
		}
		if (res == SCAN_CLEAN && c.phase == 2) {
			snap = snaps.v[i];
			break;
		}
		wal_rep_say(s->rep, true, "%s is not a complete snapshot (%s): ignored", name,
		            res == SCAN_BAD ? why : "bad structure");
	}

	/* The segments it needs: from `snap` on, or from 1, with no gap. */
	size_t first = 0;
	while (first < segs.n && segs.v[first] < snap)
		first++;
	uint64_t want = snap ? snap : 1;
	if ((first < segs.n && segs.v[first] != want) || (first == segs.n && (snap || snaps.n))) {
		wal_seg_name(name, sizeof(name), want, false);
		wal_rep_say(s->rep, false, "%s is missing%s: the log is incomplete", name,
		            snap ? "" : " and no valid snapshot replaces it");
		rc = GS_EIO;
		goto out;
	}
	for (size_t i = first + 1; i < segs.n; i++) {
		if (segs.v[i] != segs.v[i - 1] + 1) {
			wal_seg_name(name, sizeof(name), segs.v[i - 1] + 1, false);
			wal_rep_say(s->rep, false, "%s is missing: the log is incomplete", name);
			rc = GS_EIO;
			goto out;
		}
	}

	if (snap) {
		wal_snap_name(name, sizeof(name), snap, false);
		enum scan_result res =
		    scan_file(s, name, WAL_SNAP_MAGIC, snap, deliver_cb, s, &end, &why);
		if (res == SCAN_ERR) {
			rc = s->err;
			goto out;
		}
		if (res == SCAN_BAD) { /* it was fine a moment ago */
			wal_rep_say(s->rep, false, "%s changed while being read", name);
			rc = GS_EIO;
			goto out;
		}
		s->rep->snapshot_seq = snap;
		s->rep->bytes += end;
		s->snap_bytes = end;
	}

	for (size_t i = first; i < segs.n; i++) {
		bool last = i + 1 == segs.n;
		wal_seg_name(name, sizeof(name), segs.v[i], false);
		enum scan_result res =
		    scan_file(s, name, WAL_SEG_MAGIC, segs.v[i], deliver_cb, s, &end, &why);
		if (res == SCAN_ERR) {
			rc = s->err;
			goto out;
		}
		if (res == SCAN_BAD) {
			if (!last || end == 0) {
				wal_rep_say(s->rep, false,
				            "%s: %s at offset %" PRIu64
				            " before the end of the log: damaged, not repaired",
				            name, why, end);
				rc = GS_EIO;
				goto out;
			}
			uint64_t size = file_size(s->dfd, name);
			if (cut_tail(s, name, end) != 0) {
				wal_rep_say(s->rep, false,
				            "%s: cutting the torn tail at %" PRIu64 ": %s", name,
				            end, strerror(errno));
				rc = GS_EIO;
				goto out;
			}
			s->rep->truncated = true;
			s->rep->truncated_at = end;
			s->rep->truncated_bytes = size > end ? size - end : 0;
			wal_rep_say(s->rep, true,
			            "%s: %s at offset %" PRIu64 ": torn tail of %" PRIu64
			            " bytes cut off, every record before it kept",
			            name, why, end, s->rep->truncated_bytes);
		}
		s->rep->segments++;
		s->rep->last_seq = segs.v[i];
		s->rep->bytes += end;
		s->log_bytes += end;
		s->last_seq = segs.v[i];
		s->last_end = end;
	}

	/* Files the snapshot replaced: a compaction was interrupted before it removed them. */
	bool removed = false;
	for (size_t i = 0; i < first; i++) {
		wal_seg_name(name, sizeof(name), segs.v[i], false);
		removed |= unlinkat(s->dfd, name, 0) == 0;
	}
	for (size_t i = 0; i < snaps.n && snaps.v[i] < snap; i++) {
		wal_snap_name(name, sizeof(name), snaps.v[i], false);
		removed |= unlinkat(s->dfd, name, 0) == 0;
	}
	if (removed) {
		(void)wal_fsync_fd(s->dfd);
		s->rep->warnings++;
		if (!s->rep->message[0])
			wal_rep_say(s->rep, false, "removed files replaced by snapshot %016" PRIx64,
			            snap);
	}
	rc = GS_OK;
out:
	free(segs.v);
	free(snaps.v);
	return rc;
}

int wal_replay_dir(int dfd, gs_wal_replay_fn fn, void *arg, gs_wal_report *rep,
                   struct wal_replay_end *end)
{
	struct scan s = {.dfd = dfd, .fn = fn, .arg = arg, .rep = rep, .rd = {.fd = -1}};
	int rc = scan_dir(&s);
	free(s.rd.buf);
	if (end)
		*end = (struct wal_replay_end){.last_seq = s.last_seq,
		                               .last_end = s.last_end,
		                               .log_bytes = s.log_bytes,
		                               .snap_bytes = s.snap_bytes};
	return rc;
}

int gs_wal_replay(const char *dir, gs_wal_replay_fn fn, void *arg, gs_wal_report *report)
{
	gs_wal_report local;
	gs_wal_report *rep = report ? report : &local;
	memset(rep, 0, sizeof(*rep));
	if (!dir)
		return GS_EINVAL;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		wal_rep_say(rep, false, "%s: %s", dir, strerror(errno));
		return errno == ENOENT ? GS_ENOTFOUND : GS_EIO;
	}
	int lfd;
	int rc = wal_lock_dir(dfd, false, &lfd);
	if (rc != GS_OK) {
		wal_rep_say(rep, false, "%s: %s", dir,
		            rc == GS_EBUSY ? "in use by an open log" : strerror(errno));
		close(dfd);
		return rc;
	}
	rc = wal_replay_dir(dfd, fn, arg, rep, NULL);
	if (lfd >= 0)
		close(lfd);
	close(dfd);
	return rc;
}
