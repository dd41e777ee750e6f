/*
 * wal.c - the write-ahead log's writer: opens the log (replaying it through
 * wal_read.c), buffers appends, writes and fdatasyncs them with group
 * commit, starts a new segment when one is full, and closes.  See wal.h.
 *
 * Thread-safety: any thread may append, flush, sync, wait and read the
 * stats.  mu guards the buffer, the LSNs and the failure; io guards the
 * segment and serializes writes and fsyncs; io is taken before mu, and no
 * write or fsync happens under mu, so appends go on while a sync writes.
 */
#include "gs_clock.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"
#include "wal_impl.h"

#define DEF_SEGMENT_BYTES (64ull << 20)
#define DEF_BUFFER_BYTES  (4ull << 20)

/* --- writing ------------------------------------------------------------- */

int wal_wbuf_reserve(struct wbuf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return GS_OK;
	size_t c = b->cap ? b->cap : 64 * 1024;
	while (c - b->len < more)
		c *= 2;
	uint8_t *p = realloc(b->p, c);
	if (!p)
		return GS_ENOMEM;
	b->p = p;
	b->cap = c;
	return GS_OK;
}

/* Marks the handle failed for good; returns GS_EIO with errno = e. */
static int wal_fail(gs_wal *w, int e)
{
	pthread_mutex_lock(&w->mu);
	if (!w->failed) {
		w->failed = true;
		w->failed_errno = e;
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	errno = e;
	return GS_EIO;
}

/* mu held. */
static int failed_locked(gs_wal *w)
{
	if (!w->failed)
		return GS_OK;
	errno = w->failed_errno;
	return GS_EIO;
}

/* Writes the buffer out.  io held. */
static int flush_io(gs_wal *w)
{
	pthread_mutex_lock(&w->mu);
	int rc = failed_locked(w);
	if (rc != GS_OK) {
		pthread_mutex_unlock(&w->mu);
		return rc;
	}
	struct wbuf t = w->buf; /* spare is empty: swap */
	w->buf = w->spare;
	w->spare = t;
	uint64_t target = w->next_lsn - 1;
	pthread_mutex_unlock(&w->mu);

	size_t n = w->spare.len;
	if (n == 0)
		return GS_OK;
	w->spare.len = 0;
	if (wal_write_all(w->fd, w->spare.p, n, w->off) != 0) {
		int e = errno;
		(void)ftruncate(w->fd,
		                (off_t)w->off); /* no partial record left behind, if we can */
		return wal_fail(w, e);
	}
	w->off += n;
	if (w->spare.cap > 2 * w->o.buffer_bytes) { /* a burst: give the memory back */
		free(w->spare.p);
		w->spare = (struct wbuf){0};
	}
	pthread_mutex_lock(&w->mu);
	w->written_lsn = target;
	w->bytes_written += n;
	w->log_bytes += n;
	pthread_mutex_unlock(&w->mu);
	return GS_OK;
}

/* Closes the (synced) segment and starts the next.  io held. */
int wal_rotate_io(gs_wal *w)
{
	int fd = wal_create_segment(w->dfd, w->seq + 1);
	if (fd < 0)
		return wal_fail(w, errno);
	close(w->fd);
	w->fd = fd;
	w->seq++;
	w->off = GS_WAL_FILE_HEADER;
	pthread_mutex_lock(&w->mu);
	w->log_bytes += GS_WAL_FILE_HEADER;
	w->seq_pub = w->seq;
	pthread_mutex_unlock(&w->mu);
	return GS_OK;
}

/* Write + fdatasync, then a new segment if this one is full.  io held. */
int wal_sync_io(gs_wal *w)
{
	int rc = flush_io(w);
	if (rc != GS_OK)
		return rc;
	pthread_mutex_lock(&w->mu);
	uint64_t target = w->written_lsn;
	bool need = w->durable_lsn < target;
	pthread_mutex_unlock(&w->mu);
	if (need) {
		if (wal_fdatasync_fd(w->fd) != 0)
			return wal_fail(w, errno);
		pthread_mutex_lock(&w->mu);
		w->durable_lsn = target;
		w->syncs++;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	if (w->off >= w->o.segment_bytes)
		return wal_rotate_io(w);
	return GS_OK;
}

int gs_wal_open(const char *dir, const gs_wal_opts *opts, gs_wal_replay_fn fn, void *arg,
                gs_wal_report *report, gs_wal **out)
{
	gs_wal_report local;
	gs_wal_report *rep = report ? report : &local;
	memset(rep, 0, sizeof(*rep));
	if (!dir || !*dir || !out)
		return GS_EINVAL;
	*out = NULL;
	gs_wal_opts o = opts ? *opts : (gs_wal_opts){0};
	if (!o.segment_bytes)
		o.segment_bytes = DEF_SEGMENT_BYTES;
	if (!o.max_record)
		o.max_record = GS_WAL_MAX_RECORD;
	if (!o.buffer_bytes)
		o.buffer_bytes = DEF_BUFFER_BYTES;
	if (o.segment_bytes < 4096 || o.max_record > GS_WAL_MAX_RECORD || o.max_record < 256 ||
	    o.buffer_bytes < 4096 || o.crash_point < 0 ||
	    o.crash_point > GS_WAL_CRASH_BEFORE_UNLINK)
		return GS_EINVAL;

	/* The directory: created, and made durable in its parent, if absent. */
	if (mkdir(dir, 0755) == 0) {
		size_t l = strlen(dir);
		char *parent = malloc(l + 3);
		if (!parent)
			return GS_ENOMEM;
		memcpy(parent, dir, l + 1);
		while (l > 1 && parent[l - 1] == '/')
			parent[--l] = 0;
		char *slash = strrchr(parent, '/');
		if (!slash)
			strcpy(parent, ".");
		else if (slash == parent)
			parent[1] = 0;
		else
			*slash = 0;
		int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int e = pfd < 0 || wal_fsync_fd(pfd) != 0 ? errno : 0;
		if (pfd >= 0)
			close(pfd);
		free(parent);
		if (e) {
			wal_rep_say(rep, false, "%s: syncing its parent directory: %s", dir,
			            strerror(e));
			errno = e;
			return GS_EIO;
		}
	} else if (errno != EEXIST) {
		int e = errno;
		wal_rep_say(rep, false, "%s: cannot create the log directory: %s", dir,
		            strerror(e));
		errno = e;
		return GS_EIO;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		int e = errno;
		wal_rep_say(rep, false, "%s: %s", dir, strerror(e));
		errno = e;
		return GS_EIO;
	}
	int lfd;
	int rc = wal_lock_dir(dfd, true, &lfd);
	if (rc != GS_OK) {
		int e = errno;
		if (rc == GS_EBUSY)
			wal_rep_say(rep, false, "%s: in use by another open log", dir);
		else
			wal_rep_say(rep, false, "%s: cannot create its LOCK file: %s", dir,
			            strerror(e));
		close(dfd);
		errno = e;
		return rc;
	}

	struct wal_replay_end s;
	rc = wal_replay_dir(dfd, fn, arg, rep, &s);
	if (rc != GS_OK)
		goto fail_fds;

	gs_wal *w = calloc(1, sizeof(*w));
	if (!w) {
		rc = GS_ENOMEM;
		goto fail_fds;
	}
	w->dfd = dfd;
	w->lock_fd = lfd;
	w->o = o;
	w->next_lsn = 1;
	w->log_bytes = s.log_bytes;
	w->snapshot_bytes = s.snap_bytes;
	char name[64];
	if (s.last_seq) { /* go on in the last segment, now ending with an intact record */
		wal_seg_name(name, sizeof(name), s.last_seq, false);
		w->fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);
		w->seq = s.last_seq;
		w->off = s.last_end;
		/* A crashed process may have left it in the page cache only: what we
		 * replayed must be durable before anything is written after it. */
		if (w->fd >= 0 && wal_fdatasync_fd(w->fd) != 0) {
			close(w->fd);
			w->fd = -1;
		}
	} else {
		w->seq = 1;
		w->off = GS_WAL_FILE_HEADER;
		w->fd = wal_create_segment(dfd, 1);
		w->log_bytes = GS_WAL_FILE_HEADER;
	}
	if (w->fd < 0) {
		int e = errno;
		wal_rep_say(rep, false, "%s: opening the segment for writing: %s", dir,
		            strerror(e));
		free(w);
		errno = e;
		rc = GS_EIO;
		goto fail_fds;
	}
	w->seq_pub = w->seq;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->io, NULL);
	pthread_mutex_init(&w->cmu, NULL);
	if (w->off >= o.segment_bytes) {
		pthread_mutex_lock(&w->io);
		rc = wal_rotate_io(w);
		pthread_mutex_unlock(&w->io);
		if (rc != GS_OK) {
			wal_rep_say(rep, false, "%s: starting a new segment: %s", dir,
			            strerror(errno));
			gs_wal_close(w);
			return rc;
		}
	}
	*out = w;
	return GS_OK;

fail_fds:
	close(lfd);
	close(dfd);
	return rc;
}

int gs_wal_append(gs_wal *w, const gs_wal_rec *r, uint64_t *lsn)
{
	if (!w || !r)
		return GS_EINVAL;
	uint32_t payload;
	int rc = wal_rec_check(r, w->o.max_record, false, &payload);
	if (rc != GS_OK)
		return rc;
	size_t total = GS_WAL_RECORD_HEADER + (size_t)payload;
	pthread_mutex_lock(&w->mu);
	rc = failed_locked(w);
	if (rc == GS_OK)
		rc = wal_wbuf_reserve(&w->buf, total);
	if (rc != GS_OK) {
		pthread_mutex_unlock(&w->mu);
		return rc;
	}
	wal_rec_encode(r, payload, w->buf.p + w->buf.len);
	w->buf.len += total;
	uint64_t l = w->next_lsn++;
	bool full = w->buf.len >= w->o.buffer_bytes;
	pthread_mutex_unlock(&w->mu);
	if (lsn)
		*lsn = l;
	return full ? gs_wal_flush(w) : GS_OK;
}

int gs_wal_flush(gs_wal *w)
{
	if (!w)
		return GS_EINVAL;
	pthread_mutex_lock(&w->io);
	int rc = flush_io(w);
	pthread_mutex_unlock(&w->io);
	return rc;
}

int gs_wal_sync(gs_wal *w, uint64_t *durable_lsn)
{
	if (!w)
		return GS_EINVAL;
	pthread_mutex_lock(&w->mu);
	int rc = failed_locked(w);
	uint64_t want = w->next_lsn - 1; /* what was appended before this call */
	uint64_t d = w->durable_lsn;
	pthread_mutex_unlock(&w->mu);
	if (rc == GS_OK && d < want) {
		pthread_mutex_lock(&w->io);
		/* Whoever held io may have synced our records already: then one
		 * fsync served several callers, which is group commit without a
		 * timer. */
		d = gs_wal_durable_lsn(w);
		if (d < want) {
			rc = wal_sync_io(w);
			d = gs_wal_durable_lsn(w);
		}
		pthread_mutex_unlock(&w->io);
	}
	if (durable_lsn)
		*durable_lsn = d;
	return rc;
}

uint64_t gs_wal_durable_lsn(gs_wal *w)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	uint64_t d = w->durable_lsn;
	pthread_mutex_unlock(&w->mu);
	return d;
}

uint64_t gs_wal_appended_lsn(gs_wal *w)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	uint64_t a = w->next_lsn - 1;
	pthread_mutex_unlock(&w->mu);
	return a;
}

int gs_wal_wait_durable(gs_wal *w, uint64_t lsn, int timeout_ms)
{
	if (!w)
		return GS_EINVAL;
	struct timespec dl = {0, 0};
	if (timeout_ms >= 0)
		dl = gs_clock_after_ms(CLOCK_MONOTONIC, timeout_ms);
	int rc = GS_OK;
	pthread_mutex_lock(&w->mu);
	if (lsn >= w->next_lsn)
		rc = GS_EINVAL;
	while (rc == GS_OK && w->durable_lsn < lsn) {
		rc = failed_locked(w);
		if (rc != GS_OK)
			break;
		if (timeout_ms < 0) {
			pthread_cond_wait(&w->cv, &w->mu);
		} else if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT) {
			rc = w->durable_lsn >= lsn ? GS_OK : GS_ETIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

void gs_wal_stats_get(gs_wal *w, gs_wal_stats *out)
{
	if (!out)
		return;
	if (!w) {
		*out = (gs_wal_stats){0};
		return;
	}
	pthread_mutex_lock(&w->mu);
	*out = (gs_wal_stats){
	    .appended_lsn = w->next_lsn - 1,
	    .written_lsn = w->written_lsn,
	    .durable_lsn = w->durable_lsn,
	    .syncs = w->syncs,
	    .bytes_written = w->bytes_written,
	    .log_bytes = w->log_bytes,
	    .snapshot_bytes = w->snapshot_bytes,
	    .segment_seq = w->seq_pub,
	    .buffered_bytes = w->buf.len,
	};
	pthread_mutex_unlock(&w->mu);
}

int gs_wal_close(gs_wal *w)
{
	if (!w)
		return GS_OK;
	int rc = gs_wal_sync(w, NULL);
	int e = errno;
	close(w->fd);
	close(w->lock_fd); /* releases the flock */
	close(w->dfd);
	pthread_mutex_destroy(&w->cmu);
	pthread_mutex_destroy(&w->io);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->buf.p);
	free(w->spare.p);
	free(w);
	errno = e;
	return rc;
}
