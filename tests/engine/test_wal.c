/*
 * test_wal.c - the write-ahead log on real files: round trip of every record
 * type across segments, group commit, a corrupt tail and a tail cut at every
 * offset of its last record, damage before the tail, compaction (bounded
 * files, exactly the live tasks, crashes half-way), I/O errors (read-only
 * directory, a full file system), and a throughput figure.
 *
 * Every test works in its own mkdtemp() directory under /tmp, removed by the
 * teardown even when the test fails.
 */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wal.h"

/* --- fixture ---------------------------------------------------------- */

struct fx {
	char dir[64];  /* the mkdtemp directory */
	char log[128]; /* dir/log: the log directory (created by gs_wal_open) */
	char mnt[96];  /* dir/mnt when a test mounts a tmpfs there */
	bool mounted;
};

static int setup(void **st)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/gs-wal-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->dir);
	*st = f;
	return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(p);
	else
		unlink(p);
	return 0;
}

static int teardown(void **st)
{
	struct fx *f = *st;
	if (f->mounted)
		umount2(f->mnt, MNT_DETACH);
	chmod(f->log, 0755);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static uint64_t file_size(const char *dir, const char *name)
{
	char p[256];
	struct stat sb;
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return 0;
	return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static bool file_exists(const char *dir, const char *name)
{
	char p[256];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return 0;
	return access(p, F_OK) == 0;
}

static const char *seg(uint64_t seq)
{
	static _Thread_local char b[64];
	snprintf(b, sizeof(b), "wal-%016llx.log", (unsigned long long)seq);
	return b;
}

static uint64_t dir_bytes(const char *dir, int *files)
{
	char cmd[256];
	uint64_t total = 0;
	*files = 0;
	snprintf(cmd, sizeof(cmd), "%s", dir);
	DIR *d = opendir(cmd);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		total += file_size(dir, de->d_name);
		(*files)++;
	}
	closedir(d);
	return total;
}

static int read_file(const char *dir, const char *name, uint8_t **p, size_t *n)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return -1;
	fseek(fp, 0, SEEK_END);
	*n = (size_t)ftell(fp);
	fseek(fp, 0, SEEK_SET);
	*p = malloc(*n ? *n : 1);
	size_t k = fread(*p, 1, *n, fp);
	fclose(fp);
	return k == *n ? 0 : -1;
}

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	if (!fp)
		return -1;
	size_t k = fwrite(p, 1, n, fp);
	fclose(fp);
	return k == n ? 0 : -1;
}

/* --- generated records -------------------------------------------------- */

#define GEN_MAXDATA (100u << 10)

struct grec {
	gs_wal_rec r;
	char q[32];
	uint8_t *data;
};

static void gen_init(struct grec *g)
{
	memset(g, 0, sizeof(*g));
	g->data = malloc(GEN_MAXDATA);
	assert_non_null(g->data);
}

/* Record i, deterministic: every type, data of 0..~2 KB and now and then 100 KB. */
static void gen(uint64_t i, struct grec *g)
{
	gs_wal_rec *r = &g->r;
	uint8_t *data = g->data;
	memset(r, 0, sizeof(*r));
	r->type = 1 + (uint32_t)(i % 5);
	r->task = (i / 5 + 1) | (i << 40);
	r->time_us = 1700000000000000ull + i;
	uint32_t len = (uint32_t)((i * 37) % 2048);
	if (i % 997 == 0)
		len = GEN_MAXDATA;
	uint64_t s = i * 0x9E3779B97F4A7C15ull + 1;
	for (uint32_t k = 0; k < len; k += 8) {
		uint64_t x = gs_test_rand(&s);
		memcpy(data + k, &x, len - k < 8 ? len - k : 8);
	}
	switch (r->type) {
	case GS_WAL_SUBMIT:
		snprintf(g->q, sizeof(g->q), "queue-%u", (unsigned)(i % 7));
		r->queue = g->q;
		r->priority = (uint32_t)(i % 256);
		r->max_retries = (uint32_t)(i % 101);
		r->timeout_ms = (uint32_t)i;
		r->not_before_us = i % 3 ? 0 : r->time_us + 5000;
		r->data = len ? data : NULL;
		r->data_len = len;
		break;
	case GS_WAL_ASSIGN:
		r->worker = i * 3 + 1;
		r->attempt = 1 + (uint32_t)(i % 5);
		break;
	case GS_WAL_COMPLETE:
		r->state = i % 2 ? GS_TASK_DONE : GS_TASK_FAILED;
		r->status = (int32_t)(i % 256) - 128;
		r->reason = GS_REASON_EXIT;
		r->attempt = 1;
		r->data = len ? data : NULL;
		r->data_len = len;
		break;
	default:
		break;
	}
}

static bool rec_eq(const gs_wal_rec *a, const gs_wal_rec *b)
{
	if (a->type != b->type || a->task != b->task)
		return false;
	switch (a->type) {
	case GS_WAL_SUBMIT:
		return a->time_us == b->time_us && strcmp(a->queue, b->queue) == 0 &&
		       a->priority == b->priority && a->max_retries == b->max_retries &&
		       a->timeout_ms == b->timeout_ms && a->not_before_us == b->not_before_us &&
		       a->data_len == b->data_len &&
		       (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
	case GS_WAL_ASSIGN:
		return a->time_us == b->time_us && a->worker == b->worker &&
		       a->attempt == b->attempt;
	case GS_WAL_COMPLETE:
		return a->time_us == b->time_us && a->state == b->state && a->status == b->status &&
		       a->reason == b->reason && a->attempt == b->attempt &&
		       a->data_len == b->data_len &&
		       (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
	case GS_WAL_CANCEL:
		return a->time_us == b->time_us;
	default:
		return true;
	}
}

/* Replay callback: record k must be gen(k). */
struct check {
	uint64_t next, mismatches;
	struct grec g;
};

static int check_cb(void *arg, const gs_wal_rec *r)
{
	struct check *c = arg;
	gen(c->next, &c->g);
	if (!rec_eq(&c->g.r, r))
		c->mismatches++;
	c->next++;
	return 0;
}

/* Appends gen(from .. to-1). */
static void append_range(gs_wal *w, struct grec *g, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++) {
		gen(i, g);
		uint64_t lsn;
		assert_int_equal(gs_wal_append(w, &g->r, &lsn), GS_OK);
	}
}

/* Replays f->log and checks it holds exactly gen(0 .. n-1). */
static void expect_log(struct fx *f, uint64_t n, gs_wal_report *rep)
{
	struct check c = {0};
	gen_init(&c.g);
	int rc = gs_wal_replay(f->log, check_cb, &c, rep);
	free(c.g.data);
	if (rc != GS_OK)
		print_error("replay: %s: %s\n", gs_strerror(rc), rep->message);
	assert_int_equal(rc, GS_OK);
	assert_int_equal(c.mismatches, 0);
	assert_int_equal(c.next, n);
	assert_int_equal(rep->records, n);
}

/* --- tests ---------------------------------------------------------------- */

static void t_crc(void **st)
{
	(void)st;
	assert_int_equal(gs_wal_crc32c(0, "123456789", 9), 0xE3069283u);
	/* Continuing equals one pass, at every split and alignment. */
	uint8_t buf[103];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	uint32_t whole = gs_wal_crc32c(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut++)
		assert_int_equal(
		    gs_wal_crc32c(gs_wal_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut), whole);
}

static void t_round_trip(void **st)
{
	struct fx *f = *st;
	const uint64_t n = gs_test_count(20000, 10);
	gs_wal_opts o = {.segment_bytes = gs_test_count(256 << 10, 8)};
	gs_wal *w;
	gs_wal_report rep;
	struct grec g;
	gen_init(&g);

	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, &rep, &w), GS_OK);
	assert_int_equal(rep.records, 0);
	/* Syncs at uneven points, so records of all sizes straddle segment ends. */
	for (uint64_t i = 0; i < n; i += 333) {
		append_range(w, &g, i, i + 333 < n ? i + 333 : n);
		uint64_t d;
		assert_int_equal(gs_wal_sync(w, &d), GS_OK);
		assert_int_equal(d, i + 333 < n ? i + 333 : n);
	}
	gs_wal_stats s;
	gs_wal_stats_get(w, &s);
	assert_true(s.segment_seq > 5);
	assert_int_equal(gs_wal_close(w), GS_OK);

	expect_log(f, n, &rep);
	assert_true(rep.segments > 5);
	assert_false(rep.truncated);
	assert_int_equal(rep.warnings, 0);

	/* Reopen: appends go on after the replayed records. */
	struct check c = {0};
	gen_init(&c.g);
	assert_int_equal(gs_wal_open(f->log, &o, check_cb, &c, &rep, &w), GS_OK);
	assert_int_equal(c.next, n);
	assert_int_equal(c.mismatches, 0);
	free(c.g.data);
	append_range(w, &g, n, n + 100);
	assert_int_equal(gs_wal_close(w), GS_OK);
	expect_log(f, n + 100, &rep);
	free(g.data);
}

static void t_bad_input(void **st)
{
	struct fx *f = *st;
	gs_wal_opts o = {.max_record = 4096};
	gs_wal *w;
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &w), GS_OK);
	uint8_t big[5000] = {0};
	char longq[300];
	memset(longq, 'q', sizeof(longq) - 1);
	longq[sizeof(longq) - 1] = 0;
	gs_wal_rec r = {.type = GS_WAL_SUBMIT, .task = 1, .queue = "default"};
	r.data = big;
	r.data_len = sizeof(big);
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_ETOOBIG);
	r.data_len = 10;
	r.queue = longq;
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_EINVAL);
	r.queue = "";
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_EINVAL);
	r.queue = NULL;
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_EINVAL);
	r.queue = "default";
	r.data = NULL;
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_EINVAL);
	gs_wal_rec m = {.type = GS_WAL_SNAPSHOT_BEGIN};
	assert_int_equal(gs_wal_append(w, &m, NULL), GS_EINVAL);
	m.type = 99;
	assert_int_equal(gs_wal_append(w, &m, NULL), GS_EINVAL);
	gs_wal_rec c = {.type = GS_WAL_COMPLETE, .task = 1, .state = GS_TASK_QUEUED};
	assert_int_equal(gs_wal_append(w, &c, NULL), GS_EINVAL);
	assert_int_equal(gs_wal_appended_lsn(w), 0); /* nothing went in */
	assert_int_equal(gs_wal_wait_durable(w, 1, 0), GS_EINVAL);
	assert_int_equal(gs_wal_append(w, NULL, NULL), GS_EINVAL);
	assert_int_equal(gs_wal_append(NULL, &c, NULL), GS_EINVAL);

	/* A second handle on the same directory, or a replay under it: busy. */
	gs_wal *w2;
	gs_wal_report rep;
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, &rep, &w2), GS_EBUSY);
	assert_non_null(strstr(rep.message, "in use"));
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_EBUSY);
	assert_int_equal(gs_wal_close(w), GS_OK);

	gs_wal_opts bad = {.max_record = GS_WAL_MAX_RECORD + 1};
	assert_int_equal(gs_wal_open(f->log, &bad, NULL, NULL, NULL, &w), GS_EINVAL);
	bad = (gs_wal_opts){.segment_bytes = 100};
	assert_int_equal(gs_wal_open(f->log, &bad, NULL, NULL, NULL, &w), GS_EINVAL);
	assert_int_equal(gs_wal_replay("/nonexistent/gs-wal", NULL, NULL, &rep), GS_ENOTFOUND);
}

/* Group commit: many appends, one sync; threads waiting on their LSN. */
struct waiter {
	gs_wal *w;
	uint64_t n, failures;
};

static void *waiter_main(void *arg)
{
	struct waiter *a = arg;
	gs_wal_rec r = {.type = GS_WAL_RELEASE};
	for (uint64_t i = 0; i < a->n; i++) {
		uint64_t lsn;
		r.task = i + 1;
		if (gs_wal_append(a->w, &r, &lsn) != GS_OK ||
		    gs_wal_wait_durable(a->w, lsn, 10000) != GS_OK ||
		    gs_wal_durable_lsn(a->w) < lsn)
			a->failures++;
	}
	return NULL;
}

struct committer {
	gs_wal *w;
	int period_us;
	_Atomic int stop;
	uint64_t failures;
};

static void *committer_main(void *arg)
{
	struct committer *c = arg;
	while (!atomic_load(&c->stop)) {
		if (gs_wal_sync(c->w, NULL) != GS_OK)
			c->failures++;
		usleep((useconds_t)c->period_us);
	}
	return NULL;
}

static void t_group_commit(void **st)
{
	struct fx *f = *st;
	gs_wal *w;
	struct grec g;
	gen_init(&g);
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &w), GS_OK);
	append_range(w, &g, 0, 10000);
	gs_wal_stats s;
	gs_wal_stats_get(w, &s);
	assert_int_equal(s.appended_lsn, 10000);
	assert_int_equal(s.durable_lsn, 0);
	assert_int_equal(s.syncs, 0);
	assert_int_equal(gs_wal_wait_durable(w, 10000, 20), GS_ETIMEOUT);
	uint64_t d;
	assert_int_equal(gs_wal_sync(w, &d), GS_OK);
	assert_int_equal(d, 10000);
	gs_wal_stats_get(w, &s);
	assert_int_equal(s.syncs, 1); /* one fdatasync for all 10000 */
	assert_int_equal(s.buffered_bytes, 0);
	assert_int_equal(gs_wal_wait_durable(w, 10000, 0), GS_OK);
	assert_int_equal(gs_wal_sync(w, &d), GS_OK); /* nothing pending: no fsync */
	gs_wal_stats_get(w, &s);
	assert_int_equal(s.syncs, 1);

	/* Four threads, each waiting for its own record; one committer. */
	struct committer cm = {.w = w, .period_us = 1000};
	struct waiter ws[4];
	pthread_t ct, wt[4];
	assert_int_equal(pthread_create(&ct, NULL, committer_main, &cm), 0);
	for (int i = 0; i < 4; i++) {
		ws[i] = (struct waiter){.w = w, .n = gs_test_count(500, 5)};
		assert_int_equal(pthread_create(&wt[i], NULL, waiter_main, &ws[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(wt[i], NULL);
		assert_int_equal(ws[i].failures, 0);
	}
	atomic_store(&cm.stop, 1);
	pthread_join(ct, NULL);
	assert_int_equal(cm.failures, 0);
	gs_wal_stats_get(w, &s);
	uint64_t acks = 4 * ws[0].n;
	print_message("group commit: %llu acknowledged appends from 4 threads, %llu fsyncs\n",
	              (unsigned long long)acks, (unsigned long long)(s.syncs - 1));
	assert_true(s.syncs - 1 < acks); /* batched, not one per record */
	assert_int_equal(gs_wal_close(w), GS_OK);

	/* A buffer past buffer_bytes is written by the append itself, not lost. */
	gs_wal_opts o = {.buffer_bytes = 4096};
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &w), GS_OK);
	append_range(w, &g, 0, 50);
	gs_wal_stats_get(w, &s);
	assert_true(s.written_lsn > 0);
	assert_true(s.buffered_bytes < 4096 + GEN_MAXDATA + 64);
	assert_int_equal(gs_wal_close(w), GS_OK);
	free(g.data);
}

/*
 * Writes gen(0 .. n-1) into one segment; *intact is its size before the
 * last record, *full after it.
 */
static void write_log(struct fx *f, uint64_t n, uint64_t *intact, uint64_t *full)
{
	gs_wal *w;
	struct grec g;
	gen_init(&g);
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &w), GS_OK);
	append_range(w, &g, 0, n - 1);
	assert_int_equal(gs_wal_sync(w, NULL), GS_OK);
	*intact = file_size(f->log, seg(1));
	append_range(w, &g, n - 1, n);
	assert_int_equal(gs_wal_close(w), GS_OK);
	*full = file_size(f->log, seg(1));
	assert_true(*full > *intact + GS_WAL_RECORD_HEADER);
	free(g.data);
}

static void t_corrupt_tail(void **st)
{
	struct fx *f = *st;
	const uint64_t n = 203; /* record 202: an ASSIGN... */
	uint64_t intact, full;
	write_log(f, n, &intact, &full);
	uint8_t *pristine;
	size_t len;
	assert_int_equal(read_file(f->log, seg(1), &pristine, &len), 0);
	assert_int_equal(len, full);

	/* A flipped byte anywhere in the last record: length, crc, type, payload. */
	for (uint64_t off = intact; off < full; off++) {
		pristine[off] ^= 0x40;
		assert_int_equal(write_file(f->log, seg(1), pristine, len), 0);
		pristine[off] ^= 0x40;
		gs_wal_report rep;
		expect_log(f, n - 1, &rep);
		assert_true(rep.truncated);
		assert_int_equal(rep.truncated_at, intact);
		assert_int_equal(rep.truncated_bytes, full - intact);
		assert_true(rep.warnings >= 1);
		assert_non_null(strstr(rep.message, "torn tail"));
		assert_int_equal(file_size(f->log, seg(1)), intact);
	}

	/* Later appends work, and land after the intact records. */
	gs_wal *w;
	struct grec g;
	gen_init(&g);
	gs_wal_report rep;
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, &rep, &w), GS_OK);
	assert_int_equal(rep.records, n - 1);
	append_range(w, &g, n - 1, n + 50);
	assert_int_equal(gs_wal_close(w), GS_OK);
	expect_log(f, n + 50, &rep);
	assert_false(rep.truncated);

	/* Zeros past the end (a file extended but never written): cut too. */
	uint64_t size = file_size(f->log, seg(1));
	uint8_t zeros[4096] = {0};
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->log, seg(1));
	int fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	close(fd);
	expect_log(f, n + 50, &rep);
	assert_true(rep.truncated);
	assert_int_equal(file_size(f->log, seg(1)), size);
	free(g.data);
	free(pristine);
}

static void t_truncated_tail(void **st)
{
	struct fx *f = *st;
	const uint64_t n = 151; /* the last record, 150, is a SUBMIT with ~1 KB of spec */
	uint64_t intact, full;
	write_log(f, n, &intact, &full);
	uint8_t *pristine;
	size_t len;
	assert_int_equal(read_file(f->log, seg(1), &pristine, &len), 0);

	/* Cut at every offset inside the last record. */
	for (uint64_t cut = intact + 1; cut < full; cut++) {
		assert_int_equal(write_file(f->log, seg(1), pristine, cut), 0);
		gs_wal_report rep;
		expect_log(f, n - 1, &rep);
		assert_true(rep.truncated);
		assert_int_equal(rep.truncated_at, intact);
		assert_int_equal(rep.truncated_bytes, cut - intact);
		assert_int_equal(file_size(f->log, seg(1)), intact);
	}
	/* On a record boundary: nothing to cut. */
	gs_wal_report rep;
	assert_int_equal(write_file(f->log, seg(1), pristine, intact), 0);
	expect_log(f, n - 1, &rep);
	assert_false(rep.truncated);
	assert_int_equal(write_file(f->log, seg(1), pristine, full), 0);
	expect_log(f, n, &rep);
	assert_false(rep.truncated);
	free(pristine);
}

/* Damage before the tail is not a crash: GS_EIO, and nothing is changed. */
static void t_damage_before_tail(void **st)
{
	struct fx *f = *st;
	gs_wal_opts o = {.segment_bytes = 16 << 10};
	gs_wal *w;
	struct grec g;
	gen_init(&g);
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &w), GS_OK);
	for (uint64_t i = 0; i < 400; i += 20) {
		append_range(w, &g, i, i + 20);
		assert_int_equal(gs_wal_sync(w, NULL), GS_OK);
	}
	assert_int_equal(gs_wal_close(w), GS_OK);
	uint8_t *b;
	size_t len;
	assert_int_equal(read_file(f->log, seg(2), &b, &len), 0);
	b[len / 2] ^= 1;
	assert_int_equal(write_file(f->log, seg(2), b, len), 0);
	gs_wal_report rep;
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_EIO);
	assert_non_null(strstr(rep.message, seg(2)));
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, &rep, &w), GS_EIO);
	assert_int_equal(file_size(f->log, seg(2)), len);
	b[len / 2] ^= 1;
	assert_int_equal(write_file(f->log, seg(2), b, len), 0);
	free(b);

	/* A missing segment in the middle: GS_EIO too. */
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->log, seg(3));
	assert_int_equal(read_file(f->log, seg(3), &b, &len), 0);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_EIO);
	assert_non_null(strstr(rep.message, "missing"));
	assert_int_equal(write_file(f->log, seg(3), b, len), 0);
	expect_log(f, 400, &rep);
	free(b);
	free(g.data);
}

/* --- compaction --------------------------------------------------------- */

/*
 * The model: every record the test appends also goes into a gs_wal_state;
 * the compaction's live set is that state, and a replay must give it back.
 */
static int add_to_snap(void *arg, const gs_wal_task *t)
{
	return gs_wal_snap_add(arg, t);
}

static int live_from_state(void *arg, gs_wal_snap *snap)
{
	return gs_wal_state_each(arg, add_to_snap, snap);
}

struct model_log {
	gs_wal *w;
	gs_wal_state *m;
	uint8_t spec[64];
};

static void log_rec(struct model_log *ml, const gs_wal_rec *r)
{
	assert_int_equal(gs_wal_append(ml->w, r, NULL), GS_OK);
	assert_int_equal(gs_wal_state_apply(ml->m, r), GS_OK);
}

/* Task i: submitted; i % 20 == 0 stays live (queued, assigned, done,
 * failed or cancelled by i % 100); the rest complete and are released. */
static void task_life(struct model_log *ml, uint64_t i)
{
	uint64_t id = (i + 1) | (7ull << 32);
	memcpy(ml->spec, &i, sizeof(i));
	gs_wal_rec r = {.type = GS_WAL_SUBMIT,
	                .task = id,
	                .time_us = 1000 + i,
	                .queue = i % 3 ? "default" : "gpu",
	                .priority = (uint32_t)(i % 10),
	                .max_retries = 2,
	                .data = ml->spec,
	                .data_len = 8 + (uint32_t)(i % 50)};
	log_rec(ml, &r);
	int kind = i % 20 ? -1 : (int)(i % 100) / 20;
	if (kind == 0)
		return; /* queued */
	r = (gs_wal_rec){.type = GS_WAL_ASSIGN, .task = id, .worker = 9, .attempt = 1};
	log_rec(ml, &r);
	if (kind == 1)
		return; /* assigned: comes back queued, attempt 1 */
	if (kind == 4) {
		r = (gs_wal_rec){.type = GS_WAL_CANCEL, .task = id, .time_us = 5000 + i};
		log_rec(ml, &r);
		return;
	}
	r = (gs_wal_rec){.type = GS_WAL_COMPLETE,
	                 .task = id,
	                 .time_us = 5000 + i,
	                 .state = kind == 3 ? GS_TASK_FAILED : GS_TASK_DONE,
	                 .status = (int32_t)i,
	                 .reason = GS_REASON_EXIT,
	                 .attempt = 1,
	                 .data = "result",
	                 .data_len = 6};
	log_rec(ml, &r);
	if (kind < 0) {
		r = (gs_wal_rec){.type = GS_WAL_RELEASE, .task = id};
		log_rec(ml, &r);
	}
}

struct cmp_ctx {
	gs_wal_state *other;
	uint64_t mismatches, n;
};

static int cmp_task(void *arg, const gs_wal_task *a)
{
	struct cmp_ctx *c = arg;
	gs_wal_task b;
	c->n++;
	if (gs_wal_state_get(c->other, a->id, &b) != GS_OK || a->state != b.state ||
	    strcmp(a->queue, b.queue) != 0 || a->priority != b.priority ||
	    a->max_retries != b.max_retries || a->submitted_us != b.submitted_us ||
	    a->spec_len != b.spec_len || memcmp(a->spec, b.spec, a->spec_len) != 0 ||
	    a->attempt != b.attempt || a->status != b.status || a->reason != b.reason ||
	    a->result_len != b.result_len ||
	    (a->result_len && memcmp(a->result, b.result, a->result_len) != 0)) {
		if (c->mismatches++ == 0)
			print_error(
			    "task %llx: state %u/%u attempt %u/%u status %d/%d reason %u/%u "
			    "result %u/%u\n",
			    (unsigned long long)a->id, a->state, b.state, a->attempt, b.attempt,
			    a->status, b.status, a->reason, b.reason, a->result_len, b.result_len);
	}
	return 0;
}

/* The log in f->log folds to exactly the model's live tasks. */
static void expect_state(struct fx *f, gs_wal_state *model, gs_wal_report *rep)
{
	gs_wal_state *got;
	int rc = gs_wal_replay_state(f->log, &got, rep);
	if (rc != GS_OK)
		print_error("replay: %s: %s\n", gs_strerror(rc), rep->message);
	assert_int_equal(rc, GS_OK);
	assert_int_equal(gs_wal_state_count(got), gs_wal_state_count(model));
	assert_int_equal(gs_wal_state_orphans(got), 0);
	struct cmp_ctx c = {.other = got};
	assert_int_equal(gs_wal_state_each(model, cmp_task, &c), GS_OK);
	assert_int_equal(c.mismatches, 0);
	assert_int_equal(c.n, gs_wal_state_count(model));
	gs_wal_state_free(got);
}

static void t_compaction(void **st)
{
	struct fx *f = *st;
	const uint64_t n = gs_test_count(100000, 10);
	gs_wal_opts o = {.segment_bytes = 1 << 20};
	struct model_log ml = {0};
	assert_int_equal(gs_wal_state_new(&ml.m), GS_OK);
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &ml.w), GS_OK);
	for (uint64_t i = 0; i < n; i++) {
		task_life(&ml, i);
		if (i % 1000 == 999)
			assert_int_equal(gs_wal_sync(ml.w, NULL), GS_OK);
	}
	assert_int_equal(gs_wal_sync(ml.w, NULL), GS_OK);
	assert_int_equal(gs_wal_state_count(ml.m), n / 20);
	int files;
	uint64_t before = dir_bytes(f->log, &files);
	gs_wal_stats s;
	gs_wal_stats_get(ml.w, &s);
	assert_true(s.log_bytes > 0);

	uint64_t t0 = gs_test_mono_us();
	assert_int_equal(gs_wal_compact(ml.w, live_from_state, ml.m), GS_OK);
	uint64_t t1 = gs_test_mono_us();
	uint64_t after = dir_bytes(f->log, &files);
	gs_wal_stats_get(ml.w, &s);
	print_message("compaction: %llu tasks submitted, %zu live: %llu bytes in the log before, "
	              "%llu after (%d files), %.1f ms\n",
	              (unsigned long long)n, gs_wal_state_count(ml.m), (unsigned long long)before,
	              (unsigned long long)after, files, (double)(t1 - t0) / 1000.0);
	assert_true(after < before / 10);
	assert_true(after < (n / 20) * 200 + 4096); /* ~100 bytes per live task */
	assert_int_equal(files, 3);                 /* LOCK, the snapshot, the new segment */
	assert_int_equal(s.log_bytes, GS_WAL_FILE_HEADER);
	assert_true(s.snapshot_bytes > 0);

	/* Life goes on after the snapshot: a second round, then compact again. */
	for (uint64_t i = n; i < n + n / 10; i++)
		task_life(&ml, i);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);
	gs_wal_report rep;
	expect_state(f, ml.m, &rep);
	assert_true(rep.snapshot_seq > 1);
	assert_int_equal(rep.snapshot_tasks, n / 20);

	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &ml.w), GS_OK);
	assert_int_equal(gs_wal_compact(ml.w, live_from_state, ml.m), GS_OK);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);
	expect_state(f, ml.m, &rep);
	gs_wal_state_free(ml.m);
}

/*
 * Records appended while the snapshot is being taken land after the
 * barrier, and the snapshot may already hold their effect: the fold must
 * give the same state either way.
 */
struct racing {
	struct model_log *ml;
	uint64_t from;
};

static int live_while_appending(void *arg, gs_wal_snap *snap)
{
	struct racing *r = arg;
	/* Submit, complete and release tasks "concurrently" (after the barrier,
	 * before the iteration sees the engine). */
	for (uint64_t i = r->from; i < r->from + 500; i++)
		task_life(r->ml, i);
	/* ... and release some tasks the snapshot will still hold. */
	int rc = gs_wal_state_each(r->ml->m, add_to_snap, snap);
	for (uint64_t i = 0; i < 200; i += 20) {
		gs_wal_rec rel = {.type = GS_WAL_RELEASE, .task = (i + 1) | (7ull << 32)};
		log_rec(r->ml, &rel);
	}
	return rc;
}

static void t_compaction_concurrent(void **st)
{
	struct fx *f = *st;
	struct model_log ml = {0};
	assert_int_equal(gs_wal_state_new(&ml.m), GS_OK);
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &ml.w), GS_OK);
	for (uint64_t i = 0; i < 2000; i++)
		task_life(&ml, i);
	struct racing r = {&ml, 2000};
	assert_int_equal(gs_wal_compact(ml.w, live_while_appending, &r), GS_OK);
	r.from = 2500;
	assert_int_equal(gs_wal_compact(ml.w, live_while_appending, &r), GS_OK);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);
	gs_wal_report rep;
	expect_state(f, ml.m, &rep);
	gs_wal_state_free(ml.m);
}

/* A compaction that "dies" half-way, at each of its two interesting points. */
static void crash_case(struct fx *f, int point)
{
	gs_wal_opts o = {.segment_bytes = 64 << 10, .crash_point = point};
	struct model_log ml = {0};
	assert_int_equal(gs_wal_state_new(&ml.m), GS_OK);
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, NULL, &ml.w), GS_OK);
	for (uint64_t i = 0; i < 5000; i++)
		task_life(&ml, i);
	assert_int_equal(gs_wal_sync(ml.w, NULL), GS_OK);
	gs_wal_stats s;
	gs_wal_stats_get(ml.w, &s);
	uint64_t k = s.segment_seq + 1;
	assert_int_equal(gs_wal_compact(ml.w, live_from_state, ml.m), GS_OK);
	/* Records after the barrier, then the "crash" (close: no clean-up). */
	for (uint64_t i = 5000; i < 5300; i++)
		task_life(&ml, i);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);

	char tmp[80], snap[64];
	snprintf(snap, sizeof(snap), "snap-%016llx.log", (unsigned long long)k);
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	assert_true(file_exists(f->log, seg(1))); /* the old segments are all there */
	if (point == GS_WAL_CRASH_BEFORE_SNAPSHOT_END) {
		assert_true(file_exists(f->log, tmp));
		assert_false(file_exists(f->log, snap));
	} else {
		assert_false(file_exists(f->log, tmp));
		assert_true(file_exists(f->log, snap));
	}
	gs_wal_report rep;
	expect_state(f, ml.m, &rep);
	assert_int_equal(rep.snapshot_seq, point == GS_WAL_CRASH_BEFORE_UNLINK ? k : 0);

	/* The next open finishes the job: stray files gone, same state. */
	o.crash_point = 0;
	assert_int_equal(gs_wal_open(f->log, &o, NULL, NULL, &rep, &ml.w), GS_OK);
	assert_false(file_exists(f->log, tmp));
	assert_int_equal(file_exists(f->log, seg(1)), point != GS_WAL_CRASH_BEFORE_UNLINK);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);
	expect_state(f, ml.m, &rep);
	gs_wal_state_free(ml.m);
}

static void t_compaction_crash_before_end(void **st)
{
	crash_case(*st, GS_WAL_CRASH_BEFORE_SNAPSHOT_END);
}

static void t_compaction_crash_before_unlink(void **st)
{
	crash_case(*st, GS_WAL_CRASH_BEFORE_UNLINK);
}

/* A snapshot damaged after the fact, its segments gone: refuse, do not guess. */
static void t_snapshot_damaged(void **st)
{
	struct fx *f = *st;
	struct model_log ml = {0};
	assert_int_equal(gs_wal_state_new(&ml.m), GS_OK);
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &ml.w), GS_OK);
	for (uint64_t i = 0; i < 1000; i++)
		task_life(&ml, i);
	assert_int_equal(gs_wal_compact(ml.w, live_from_state, ml.m), GS_OK);
	assert_int_equal(gs_wal_close(ml.w), GS_OK);
	const char *snap = "snap-0000000000000002.log";
	uint8_t *b;
	size_t len;
	assert_int_equal(read_file(f->log, snap, &b, &len), 0);
	b[len / 2] ^= 0x10;
	assert_int_equal(write_file(f->log, snap, b, len), 0);
	gs_wal_report rep;
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_EIO);
	assert_non_null(strstr(rep.message, "missing"));
	free(b);
	gs_wal_state_free(ml.m);
}

/* --- I/O errors ----------------------------------------------------------- */

static void t_not_a_directory(void **st)
{
	struct fx *f = *st;
	assert_int_equal(write_file(f->dir, "log", (const uint8_t *)"x", 1), 0);
	gs_wal *w;
	gs_wal_report rep;
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, &rep, &w), GS_EIO);
	assert_non_null(strstr(rep.message, f->log));
	print_message("not a directory: %s\n", rep.message);
}

static void t_read_only(void **st)
{
	struct fx *f = *st;
	gs_wal *w;
	gs_wal_report rep;
	if (geteuid() != 0) {
		assert_int_equal(mkdir(f->log, 0500), 0);
	} else {
		/* root ignores permissions: a read-only tmpfs it is */
		assert_int_equal(mkdir(f->mnt, 0755), 0);
		if (mount("gswal", f->mnt, "tmpfs", MS_RDONLY, "size=1m") != 0) {
			print_message("skipped: cannot mount a read-only tmpfs: %s\n",
			              strerror(errno));
			skip();
		}
		f->mounted = true;
		snprintf(f->log, sizeof(f->log), "%s", f->mnt);
	}
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, &rep, &w), GS_EIO);
	print_message("read-only directory: %s\n", rep.message);
	assert_non_null(strstr(rep.message, "LOCK"));
	/* A replay of an empty read-only directory still works. */
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_OK);
}

/* Fills a tiny tmpfs: the failing sync is GS_EIO/ENOSPC, and stays failed. */
static void t_disk_full(void **st)
{
	struct fx *f = *st;
	assert_int_equal(mkdir(f->mnt, 0755), 0);
	if (mount("gswal", f->mnt, "tmpfs", 0, "size=256k") != 0) {
		print_message("skipped: cannot mount a tmpfs (needs root): %s\n", strerror(errno));
		skip();
	}
	f->mounted = true;
	snprintf(f->log, sizeof(f->log), "%s/log", f->mnt);
	gs_wal *w;
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &w), GS_OK);
	uint8_t spec[1000];
	memset(spec, 7, sizeof(spec));
	gs_wal_rec r = {
	    .type = GS_WAL_SUBMIT, .queue = "default", .data = spec, .data_len = sizeof(spec)};
	int rc = GS_OK, e = 0;
	uint64_t i;
	for (i = 1; i < 10000 && rc == GS_OK; i++) {
		r.task = i;
		assert_int_equal(gs_wal_append(w, &r, NULL), GS_OK);
		if (i % 10 == 0) {
			rc = gs_wal_sync(w, NULL);
			e = errno;
		}
	}
	assert_int_equal(rc, GS_EIO);
	assert_int_equal(e, ENOSPC);
	uint64_t durable = gs_wal_durable_lsn(w);
	print_message("disk full after %llu records (%llu durable): %s\n",
	              (unsigned long long)(i - 1), (unsigned long long)durable, strerror(e));
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_EIO); /* failed for good */
	assert_int_equal(gs_wal_sync(w, NULL), GS_EIO);
	assert_int_equal(gs_wal_wait_durable(w, durable + 1, 1000), GS_EIO);
	assert_int_equal(gs_wal_close(w), GS_EIO);
	/* Every durable record is still there. */
	gs_wal_state *s;
	gs_wal_report rep;
	assert_int_equal(gs_wal_replay_state(f->log, &s, &rep), GS_OK);
	assert_true(gs_wal_state_count(s) >= durable);
	for (uint64_t t = 1; t <= durable; t++) {
		gs_wal_task task;
		assert_int_equal(gs_wal_state_get(s, t, &task), GS_OK);
	}
	gs_wal_state_free(s);
}

/* The same without root: a file size limit makes write(2) fail (EFBIG). */
static void t_write_error_rlimit(void **st)
{
	struct fx *f = *st;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		gs_wal *w;
		if (gs_wal_open(f->log, NULL, NULL, NULL, NULL, &w) != GS_OK)
			_exit(10);
		struct rlimit rl = {64 << 10, 64 << 10};
		setrlimit(RLIMIT_FSIZE, &rl);
		uint8_t spec[1000] = {0};
		gs_wal_rec r = {
		    .type = GS_WAL_SUBMIT, .queue = "q", .data = spec, .data_len = sizeof(spec)};
		int rc = GS_OK;
		for (uint64_t i = 1; i < 1000 && rc == GS_OK; i++) {
			r.task = i;
			if (gs_wal_append(w, &r, NULL) != GS_OK)
				_exit(11);
			if (i % 10 == 0)
				rc = gs_wal_sync(w, NULL);
		}
		int e = errno;
		if (rc != GS_EIO || e != EFBIG)
			_exit(12);
		if (gs_wal_append(w, &r, NULL) != GS_EIO)
			_exit(13);
		gs_wal_close(w);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* What was durable replays; a partial write, if any, is cut. */
	gs_wal_report rep;
	assert_int_equal(gs_wal_replay(f->log, NULL, NULL, &rep), GS_OK);
	assert_true(rep.records >= 60);
}

/* --- throughput ----------------------------------------------------------- */

struct appender {
	gs_wal *w;
	uint64_t until_us, n;
	bool wait, self_sync; /* self_sync: no committer, each caller syncs (--fsync-ms 0) */
	uint64_t failures;
};

static void *appender_main(void *arg)
{
	struct appender *a = arg;
	uint8_t spec[64] = {1};
	gs_wal_rec r = {
	    .type = GS_WAL_SUBMIT, .queue = "default", .data = spec, .data_len = sizeof(spec)};
	while (gs_test_mono_us() < a->until_us) {
		uint64_t lsn;
		r.task = ++a->n;
		if (gs_wal_append(a->w, &r, &lsn) != GS_OK)
			a->failures++;
		if (a->self_sync && gs_wal_sync(a->w, NULL) != GS_OK)
			a->failures++;
		if (a->wait && gs_wal_wait_durable(a->w, lsn, 10000) != GS_OK)
			a->failures++;
	}
	return NULL;
}

static void run_throughput(struct fx *f, int threads, bool wait, bool self_sync, double secs)
{
	gs_wal *w;
	assert_int_equal(gs_wal_open(f->log, NULL, NULL, NULL, NULL, &w), GS_OK);
	struct committer cm = {.w = w, .period_us = 5000};
	struct appender ap[64];
	pthread_t ct, at[64];
	uint64_t t0 = gs_test_mono_us();
	if (self_sync)
		atomic_store(&cm.stop, 1);
	assert_int_equal(pthread_create(&ct, NULL, committer_main, &cm), 0);
	for (int i = 0; i < threads; i++) {
		ap[i] = (struct appender){.w = w,
		                          .until_us = t0 + (uint64_t)(secs * 1e6),
		                          .wait = wait,
		                          .self_sync = self_sync};
		assert_int_equal(pthread_create(&at[i], NULL, appender_main, &ap[i]), 0);
	}
	uint64_t total = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(at[i], NULL);
		assert_int_equal(ap[i].failures, 0);
		total += ap[i].n;
	}
	atomic_store(&cm.stop, 1);
	pthread_join(ct, NULL);
	assert_int_equal(gs_wal_sync(w, NULL), GS_OK);
	uint64_t t1 = gs_test_mono_us();
	gs_wal_stats s;
	gs_wal_stats_get(w, &s);
	assert_int_equal(s.durable_lsn, total);
	print_message("throughput: %d thread(s)%s, %s: %.0f appends/s, "
	              "%llu fsyncs, %.1f records per fsync, %.1f MB written\n",
	              threads, wait ? " each waiting for its ack" : "",
	              self_sync ? "each syncs itself" : "a committer syncs every 5 ms",
	              (double)total * 1e6 / (double)(t1 - t0), (unsigned long long)s.syncs,
	              (double)total / (double)(s.syncs ? s.syncs : 1),
	              (double)s.bytes_written / 1e6);
	assert_int_equal(gs_wal_close(w), GS_OK);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%s", f->log);
	nftw(cmd, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void t_throughput(void **st)
{
	struct fx *f = *st;
	double secs = GS_TEST_SCALED ? 0.2 : 1.0;
	run_throughput(f, 1, false, false, secs);
	run_throughput(f, 8, true, false, secs);
	run_throughput(f, 8, true, true, secs);
	run_throughput(f, 64, true, false, secs);
	run_throughput(f, 64, true, true, secs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_crc),
	    cmocka_unit_test_setup_teardown(t_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_bad_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_corrupt_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_truncated_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_damage_before_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_compaction_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_compaction_crash_before_end, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_compaction_crash_before_unlink, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_snapshot_damaged, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_not_a_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_read_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_disk_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_write_error_rlimit, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_throughput, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
