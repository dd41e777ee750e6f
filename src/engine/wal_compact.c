/*
 * wal_compact.c - compaction: replaces the segments with a snapshot of the
 * live tasks and keys (snap-K.log), written beside the log while appends
 * and syncs go on into segment K, then removes what it replaced.  wal.h
 * says in which order and why a crash at any point is safe.
 *
 * Thread-safety: gs_wal_compact may run beside every other call but close;
 * cmu lets one run at a time (a second gets GS_EBUSY).  It takes io only for
 * the barrier at its start, so the snapshot is written without holding up
 * the writer.  A gs_wal_snap belongs to the compaction's thread.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"
#include "wal_impl.h"

#define SNAP_BUF_BYTES (1u << 20)

/* --- compaction ---------------------------------------------------------- */

struct gs_wal_snap {
	gs_wal *w;
	int fd;
	struct wbuf buf;
	uint64_t off, tasks;
	uint32_t gen_high;
	int err;
	int err_errno;
};

static int snap_put(gs_wal_snap *s, const gs_wal_rec *r)
{
	uint32_t payload;
	int rc = wal_rec_check(r, s->w->o.max_record, true, &payload);
	if (rc != GS_OK)
		return rc;
	size_t total = GS_WAL_RECORD_HEADER + (size_t)payload;
	rc = wal_wbuf_reserve(&s->buf, total);
	if (rc != GS_OK)
		return rc;
	wal_rec_encode(r, payload, s->buf.p + s->buf.len);
	s->buf.len += total;
	return GS_OK;
}

static int snap_flush(gs_wal_snap *s)
{
	if (s->err)
		return s->err;
	if (s->buf.len && wal_write_all(s->fd, s->buf.p, s->buf.len, s->off) != 0) {
		s->err = GS_EIO;
		s->err_errno = errno;
		return GS_EIO;
	}
	s->off += s->buf.len;
	s->buf.len = 0;
	return GS_OK;
}

int gs_wal_snap_add(gs_wal_snap *s, const gs_wal_task *t)
{
	if (!s || !t)
		return GS_EINVAL;
	if (s->err)
		return s->err;
	gs_wal_rec sub = {.type = GS_WAL_SUBMIT,
	                  .task = t->id,
	                  .time_us = t->submitted_us,
	                  .queue = t->queue,
	                  .priority = t->priority,
	                  .max_retries = t->max_retries,
	                  .timeout_ms = t->timeout_ms,
	                  .not_before_us = t->not_before_us,
	                  .data = t->spec,
	                  .data_len = t->spec_len};
	gs_wal_rec fin = {.task = t->id, .time_us = t->finished_us};
	switch (t->state) {
	case GS_TASK_DELAYED:
	case GS_TASK_QUEUED:
	case GS_TASK_ASSIGNED:
	case GS_TASK_RUNNING:
	case GS_TASK_COMPLETING:
		break;
	case GS_TASK_DONE:
	case GS_TASK_FAILED:
		fin.type = GS_WAL_COMPLETE;
		fin.state = t->state;
		fin.status = t->status;
		fin.reason = t->reason;
		fin.attempt = t->attempt;
		fin.data = t->result;
		fin.data_len = t->result_len;
		break;
	case GS_TASK_CANCELLED:
		fin.type = GS_WAL_CANCEL;
		break;
	default:
		return GS_EINVAL;
	}
	/* Check both before writing either: a rejected task leaves no trace. */
	uint32_t payload;
	int rc = wal_rec_check(&sub, s->w->o.max_record, false, &payload);
	if (rc == GS_OK && fin.type)
		rc = wal_rec_check(&fin, s->w->o.max_record, false, &payload);
	if (rc != GS_OK)
		return rc;
	size_t mark = s->buf.len;
	rc = snap_put(s, &sub);
	if (rc == GS_OK && t->attempt && fin.type != GS_WAL_COMPLETE) {
		gs_wal_rec as = {.type = GS_WAL_ASSIGN, .task = t->id, .attempt = t->attempt};
		rc = snap_put(s, &as);
	}
	if (rc == GS_OK && fin.type)
		rc = snap_put(s, &fin);
	if (rc != GS_OK) {
		s->buf.len = mark;
		return rc;
	}
	s->tasks++;
	if (s->buf.len >= SNAP_BUF_BYTES)
		return snap_flush(s);
	return GS_OK;
}

void gs_wal_snap_gen_high(gs_wal_snap *s, uint32_t gen)
{
	if (s && gen > s->gen_high)
		s->gen_high = gen;
}

int gs_wal_snap_add_key(gs_wal_snap *s, const gs_wal_key *k)
{
	if (!s || !k)
		return GS_EINVAL;
	if (s->err)
		return s->err;
	gs_wal_rec r = {.type = GS_WAL_KEY,
	                .flags = GS_WAL_KEY_COMMITTED,
	                .time_us = k->created_us,
	                .digest = k->digest,
	                .key = k->key,
	                .key_len = k->key_len,
	                .ids = k->ids,
	                .n_ids = k->n_ids};
	int rc = snap_put(s, &r);
	if (rc == GS_OK && s->buf.len >= SNAP_BUF_BYTES)
		return snap_flush(s);
	return rc;
}

/* Removes the segments and snapshots before seq k.  Best effort: a file left is removed on open. */
static void remove_before(gs_wal *w, uint64_t k)
{
	int fd = dup(w->dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		if ((wal_parse_name(de->d_name, "wal-", &seq) ||
		     wal_parse_name(de->d_name, "snap-", &seq)) &&
		    seq < k)
			(void)unlinkat(w->dfd, de->d_name, 0);
	}
	closedir(d);
	(void)wal_fsync_fd(w->dfd);
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int gs_wal_compact(gs_wal *w, gs_wal_live_fn fn, void *arg)
{
	if (!w || !fn)
		return GS_EINVAL;
	if (pthread_mutex_trylock(&w->cmu) != 0)
		return GS_EBUSY;

	/* 1. Barrier: everything appended so far is durable in segments < K. */
	pthread_mutex_lock(&w->io);
	int rc = wal_sync_io(w);
	uint64_t covered = 0;
	if (rc == GS_OK) {
		pthread_mutex_lock(&w->mu);
		covered = w->log_bytes;
		pthread_mutex_unlock(&w->mu);
		rc = wal_rotate_io(w);
	}
	uint64_t k = w->seq;
	pthread_mutex_unlock(&w->io);
	if (rc != GS_OK) {
		pthread_mutex_unlock(&w->cmu);
		return rc;
	}

	/* 2. The snapshot, into a .tmp that replay ignores. */
	char tmp[64], fin[64];
	wal_snap_name(tmp, sizeof(tmp), k, true);
	wal_snap_name(fin, sizeof(fin), k, false);
	gs_wal_snap s = {.w = w,
	                 .fd = openat(w->dfd, tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644)};
	if (s.fd < 0) {
		pthread_mutex_unlock(&w->cmu);
		return GS_EIO;
	}
	rc = wal_wbuf_reserve(&s.buf, GS_WAL_FILE_HEADER);
	if (rc == GS_OK) {
		wal_file_header(s.buf.p, WAL_SNAP_MAGIC, k);
		s.buf.len = GS_WAL_FILE_HEADER;
		gs_wal_rec b = {.type = GS_WAL_SNAPSHOT_BEGIN, .seq = k, .time_us = wall_us()};
		rc = snap_put(&s, &b);
	}
	if (rc == GS_OK)
		rc = fn(arg, &s);
	if (rc == GS_OK && s.err)
		rc = s.err;
	if (rc == GS_OK && w->o.crash_point == GS_WAL_CRASH_BEFORE_SNAPSHOT_END) {
		rc = snap_flush(&s);
		close(s.fd);
		free(s.buf.p);
		pthread_mutex_unlock(&w->cmu);
		return rc;
	}

	/* 3. END, fsync, rename, fsync the directory: now the snapshot counts. */
	if (rc == GS_OK) {
		gs_wal_rec e = {.type = GS_WAL_SNAPSHOT_END,
		                .seq = k,
		                .count = s.tasks,
		                .gen_high = s.gen_high};
		rc = snap_put(&s, &e);
	}
	if (rc == GS_OK)
		rc = snap_flush(&s);
	if (rc == GS_OK && (wal_fsync_fd(s.fd) != 0 || renameat(w->dfd, tmp, w->dfd, fin) != 0 ||
	                    wal_fsync_fd(w->dfd) != 0))
		rc = GS_EIO;
	int e = rc == GS_EIO ? (s.err_errno ? s.err_errno : errno) : 0;
	close(s.fd);
	free(s.buf.p);
	if (rc != GS_OK) {
		(void)unlinkat(w->dfd, tmp, 0);
		pthread_mutex_unlock(&w->cmu);
		errno = e;
		return rc;
	}
	if (w->o.crash_point == GS_WAL_CRASH_BEFORE_UNLINK) {
		pthread_mutex_unlock(&w->cmu);
		return GS_OK;
	}

	/* 4. What the snapshot replaced goes. */
	remove_before(w, k);
	pthread_mutex_lock(&w->mu);
	w->log_bytes -= covered;
	w->snapshot_bytes = s.off;
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_unlock(&w->cmu);
	return GS_OK;
}
