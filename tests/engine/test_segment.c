/*
 * test_segment.c - named segments: attach sees the creator's engine, a
 * segment of another layout is refused (GS_ELAYOUT), a missing one is
 * GS_ENOTFOUND, and so is one not ready (being made, or abandoned by a maker
 * that died, which gs_engine_create makes again in place), and a dead owner
 * is detected and recovered from.
 */
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "segment.h"
#include "task_table.h"

#define NOW 1000000u

static char seg_name[64];

static int setup(void **st)
{
	(void)st;
	snprintf(seg_name, sizeof(seg_name), "/gstest-seg-%d", (int)getpid());
	shm_unlink(seg_name);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	shm_unlink(seg_name); /* whatever a failed test left */
	return 0;
}

static gs_engine *create_named(uint32_t max_tasks)
{
	gs_engine_opts o;
	memset(&o, 0, sizeof(o));
	o.segment_name = seg_name;
	o.geom.max_tasks = max_tasks;
	o.geom.max_workers = 8;
	o.geom.max_payload = 4096;
	o.geom.arena_bytes = 1 << 20;
	gs_engine *e = NULL;
	assert_int_equal(gs_engine_create(&o, &e), GS_OK);
	assert_int_equal(gs_engine_queue(e, "default", false, &DQ), GS_OK);
	return e;
}

static void t_missing(void **st)
{
	(void)st;
	gs_engine *e = NULL;
	bool dead = false;
	assert_int_equal(gs_engine_attach(seg_name, &e, &dead), GS_ENOTFOUND);
	assert_null(e);
	assert_int_equal(gs_engine_attach("no-slash", &e, &dead), GS_EINVAL);
	assert_int_equal(gs_seg_unlink(seg_name), GS_ENOTFOUND);
}

static void t_attach_shares(void **st)
{
	(void)st;
	gs_engine *c = create_named(64);
	/* A second create of the name fails unless replacing. */
	gs_engine_opts o;
	memset(&o, 0, sizeof(o));
	o.segment_name = seg_name;
	gs_engine *x = NULL;
	errno = 0;
	assert_int_equal(gs_engine_create(&o, &x), GS_EIO);
	assert_int_equal(errno, EEXIST);
	o.segment_name = "bad/name";
	assert_int_equal(gs_engine_create(&o, &x), GS_EINVAL);

	gs_engine *a = NULL;
	bool dead = true;
	assert_int_equal(gs_engine_attach(seg_name, &a, &dead), GS_OK);
	assert_false(dead);
	assert_int_equal(gs_engine_geom(a)->max_tasks, 64);
	assert_int_equal(gs_engine_segment(a)->size, gs_engine_segment(c)->size);
	const char pl[] = "shared";
	gs_task_spec s = gs_test_spec(DQ, 3, pl, sizeof(pl));
	uint64_t id;
	assert_int_equal(gs_engine_submit(c, &s, 1, NOW, &id), GS_OK);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(a, 1, 1ull << DQ, NOW, &w), GS_OK);
	gs_assignment as;
	assert_int_equal(gs_engine_pop_assign(a, DQ, w, NOW, &as), GS_OK);
	assert_int_equal(as.task, id);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_payload(a, id, &p, &len), GS_OK);
	assert_memory_equal(p, pl, sizeof(pl));
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(c, id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_ASSIGNED);
	assert_int_equal(ti.worker, w);
	GS_CHECK(c);
	gs_engine_close(a, false);
	gs_engine_close(c, true);
	assert_int_equal(gs_engine_attach(seg_name, &a, &dead), GS_ENOTFOUND);
}

/* Changes one header field, expects attach to refuse, and puts it back. */
#define expect_layout(f, l, b) expect_layout_(#f, f, l, b)
static void expect_layout_(const char *what, void *field, size_t len, uint64_t bad)
{
	uint8_t save[8];
	memcpy(save, field, len);
	memcpy(field, &bad, len); /* little-endian: low bytes of `bad` */
	gs_engine *a = NULL;
	bool dead;
	int rc = gs_engine_attach(seg_name, &a, &dead);
	memcpy(field, save, len);
	if (rc == GS_OK)
		gs_engine_close(a, false);
	if (rc != GS_ELAYOUT)
		fail_msg("attach with %s changed: %d, want GS_ELAYOUT", what, rc);
	assert_int_equal(gs_engine_attach(seg_name, &a, &dead), GS_OK);
	gs_engine_close(a, false);
}

static void t_layout(void **st)
{
	(void)st;
	gs_engine *c = create_named(64);
	struct gs_seg_header *h = gs_engine_segment(c)->hdr;
	expect_layout(&h->magic, 8, GS_SEG_MAGIC ^ 1);
	expect_layout(&h->version, 4, GS_SEG_VERSION + 1);
	expect_layout(&h->header_size, 4, h->header_size + 8);
	expect_layout(&h->geom.max_tasks, 4, 128);
	expect_layout(&h->geom.max_workers, 4, 4096);
	expect_layout(&h->geom.max_payload, 4, 2u << 20);
	expect_layout(&h->geom.arena_bytes, 8, 2u << 20);
	expect_layout(&h->layout.arena, 8, h->layout.arena + 4096);
	/* Not ready (ready never set): not there yet. */
	uint32_t one = 1;
	atomic_store(&h->ready, 0);
	gs_engine *a = NULL;
	bool dead;
	int rc = gs_engine_attach(seg_name, &a, &dead);
	atomic_store(&h->ready, one);
	if (rc == GS_OK)
		gs_engine_close(a, false);
	assert_int_equal(rc, GS_ENOTFOUND);
	gs_engine_close(c, true);

	/* An object of that name nothing was written in (a maker that died
	 * before or after setting its size): not there either. */
	int fd = shm_open(seg_name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16), 0);
	assert_int_equal(gs_engine_attach(seg_name, &a, &dead), GS_ENOTFOUND);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(gs_engine_attach(seg_name, &a, &dead), GS_ENOTFOUND);
	/* While a live maker holds it, creating it is refused (attach it later)... */
	struct flock fl = {.l_type = F_WRLCK,
	                   .l_whence = SEEK_SET,
	                   .l_start = GS_SEG_MAKING_LOCK_BYTE,
	                   .l_len = 1};
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
	gs_engine_opts mo = {.segment_name = seg_name, .geom = {.max_tasks = 128}};
	errno = 0;
	assert_int_equal(gs_engine_create(&mo, &a), GS_EIO);
	assert_int_equal(errno, EEXIST);
	/* ...once its maker is gone, it is made again in place and works. */
	fl.l_type = F_UNLCK;
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
	close(fd);
	assert_int_equal(gs_engine_create(&mo, &a), GS_OK);
	uint64_t id = 0;
	gs_task_spec sp = gs_test_spec(DQ, 1, "x", 1);
	assert_int_equal(gs_engine_submit(a, &sp, 1, NOW, &id), GS_OK);
	gs_engine *b = NULL;
	assert_int_equal(gs_engine_attach(seg_name, &b, &dead), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(b, id, &ti), GS_OK);
	gs_engine_close(b, false);
	gs_engine_close(a, false);
	/* A ready segment is never taken over: creating it stays an error. */
	errno = 0;
	assert_int_equal(gs_engine_create(&mo, &a), GS_EIO);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(gs_seg_unlink(seg_name), GS_OK);
}

/* A child creates the segment, works in it and dies; the parent takes over. */
static void t_owner_dead(void **st)
{
	(void)st;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gs_engine_opts o;
		memset(&o, 0, sizeof(o));
		o.segment_name = seg_name;
		o.geom.max_tasks = 64;
		o.geom.max_workers = 8;
		o.geom.max_payload = 4096;
		o.geom.arena_bytes = 1 << 20;
		gs_engine *e;
		uint32_t q;
		uint64_t ids[3], w;
		gs_assignment a;
		char big[100];
		memset(big, 'x', sizeof(big));
		gs_task_spec s[3] = {gs_test_spec(0, 1, big, 100), gs_test_spec(0, 2, NULL, 0),
		                     gs_test_spec(0, 3, "abc", 3)};
		if (gs_engine_create(&o, &e) != GS_OK || gs_engine_queue(e, "default", 0, &q))
			_exit(2);
		for (int i = 0; i < 3; i++)
			s[i].queue = q;
		if (gs_engine_submit(e, s, 3, NOW, ids) != GS_OK ||
		    gs_engine_worker_register(e, 4, 1ull << q, NOW, &w) != GS_OK ||
		    gs_engine_pop_assign(e, q, w, NOW, &a) != GS_OK || a.task != ids[2])
			_exit(3);
		_exit(0); /* no close: the segment stays, its owner gone */
	}
	int status = 0;
	uint64_t t0 = gs_test_mono_us();
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (gs_test_mono_us() - t0 > 10000000u) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("the child hung");
		}
		usleep(1000);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	gs_engine *e = NULL;
	bool dead = false;
	assert_int_equal(gs_engine_attach(seg_name, &e, &dead), GS_OK);
	assert_true(dead);
	struct gs_seg_header *h = gs_engine_segment(e)->hdr;
	uint64_t epoch = atomic_load(&h->epoch);
	gs_recovery_report rep;
	assert_int_equal(gs_engine_recover(e, &rep), GS_OK);
	assert_int_equal(atomic_load(&h->owner_pid), getpid());
	assert_int_equal(atomic_load(&h->epoch), epoch + 1);
	assert_false(gs_seg_owner_dead(gs_engine_segment(e)));
	GS_CHECK(e);
	assert_int_equal(gs_engine_queue(e, "default", false, &DQ), GS_OK);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 2);
	/* It works: the two queued tasks pop in order, payload intact. */
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 4, 1ull << DQ, NOW, &w), GS_OK);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.priority, 2);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.priority, 1);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_payload(e, a.task, &p, &len), GS_OK);
	assert_int_equal(len, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 'x');
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	assert_int_equal(gs_engine_finish(e, a.task, w, 1, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_release(e, a.task), GS_OK);
	gs_task_spec s = gs_test_spec(DQ, 0, "new", 3);
	uint64_t id;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	GS_CHECK(e);
	gs_engine_close(e, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(t_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_attach_shares, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_layout, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_owner_dead, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
