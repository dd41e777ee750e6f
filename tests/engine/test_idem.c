/*
 * test_idem.c - idempotency keys (idem_table.h, gs_engine_submit_idem) and
 * their records in the write-ahead log (KEY, wal.h).
 *
 *   basic        a key's first submit queues, a retry gets the same IDs
 *   mismatch     same key, another task count or digest: GS_ESTATE, nothing
 *                changes; bad key lengths: GS_EINVAL
 *   retention    a key lives while one of its tasks does; then it is free
 *   big batch    IDs in the arena; released with the key
 *   full         a small key table fills (GS_EFULL, KEYS_FULL) and frees up
 *                once the tasks of a key are released
 *   threads      racing submits of one key create one set
 *   recovery     gs_engine_recover keeps live keys, drops half-inserted ones
 *   partial      a key committed, its batch cut mid-publish: recovery
 *                publishes the rest (roll forward)
 *   restore      gs_engine_idem_restore after a replay
 *   wal          KEY records replayed; a KEY cut before its SUBMITs drops its
 *                tasks; compaction keeps live keys and drops dead ones
 *
 * White-box (engine_impl.h) for forging a half-inserted key.
 */
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_impl.h"
#include "test_util.h"
#include "wal.h"

static gs_engine *mk(uint32_t max_tasks, uint32_t max_keys)
{
	gs_engine_opts o;
	memset(&o, 0, sizeof(o));
	o.geom.max_tasks = max_tasks;
	o.geom.max_workers = 16;
	o.geom.max_payload = 64 << 10;
	o.geom.arena_bytes = 4u << 20;
	o.geom.max_keys = max_keys;
	gs_engine *e = NULL;
	assert_int_equal(gs_engine_create(&o, &e), GS_OK);
	assert_int_equal(gs_engine_queue(e, "default", false, &DQ), GS_OK);
	return e;
}

static gs_idem_req key(const char *k, uint64_t digest)
{
	gs_idem_req r = {.key = k, .key_len = (uint32_t)strlen(k), .digest = digest};
	return r;
}

static int submit_k(gs_engine *e, const char *k, uint64_t digest, size_t n, uint64_t *ids,
                    enum gs_idem_outcome *oc)
{
	gs_task_spec sp[64];
	assert_true(n <= 64);
	for (size_t i = 0; i < n; i++)
		sp[i] = gs_test_spec(DQ, 1, "payload", 7);
	gs_idem_req r = key(k, digest);
	return gs_engine_submit_idem(e, &r, sp, n, 1000, ids, oc);
}

static uint64_t queued(gs_engine *e)
{
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	return qs.queued;
}

/* Releases a task however far it got: cancel (if not final), then release. */
static void drop_task(gs_engine *e, uint64_t id)
{
	gs_engine_cancel(e, id, 2000, NULL, NULL);
	assert_int_equal(gs_engine_release(e, id), GS_OK);
}

/* Takes every queued task off its queue (freeing released slots). */
static void drain(gs_engine *e)
{
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 1000, ~0ull & 1ull << DQ, 1, &w), GS_OK);
	gs_assignment a;
	while (gs_engine_pop_assign(e, DQ, w, 3, &a) == GS_OK)
		;
	assert_int_equal(gs_engine_worker_dead(e, w, 4, NULL, NULL), GS_OK);
}

static void t_basic(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	uint64_t a[3], b[3];
	enum gs_idem_outcome oc;
	assert_int_equal(submit_k(e, "order-1", 7, 3, a, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW);
	assert_int_equal(queued(e), 3);
	assert_int_equal(submit_k(e, "order-1", 7, 3, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(queued(e), 3);
	assert_int_equal(gs_engine_tasks_in_use(e), 3);
	/* Another key is another request. */
	assert_int_equal(submit_k(e, "order-2", 7, 3, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW);
	assert_true(b[0] != a[0]);
	/* Listing finds both. */
	size_t live = 0;
	for (uint32_t i = 0; i < gs_engine_idem_capacity(e); i++) {
		gs_idem_info info;
		uint64_t ids[8];
		if (gs_engine_idem_at(e, i, &info, ids, 8) != GS_OK)
			continue;
		live++;
		assert_int_equal(info.n, 3);
		assert_int_equal(info.digest, 7);
		if (info.key_len == 7 && memcmp(info.key, "order-1", 7) == 0)
			assert_memory_equal(ids, a, sizeof(a));
	}
	assert_int_equal(live, 2);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_mismatch(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	uint64_t a[3], b[4];
	enum gs_idem_outcome oc;
	assert_int_equal(submit_k(e, "k", 1, 3, a, &oc), GS_OK);
	assert_int_equal(submit_k(e, "k", 1, 4, b, &oc), GS_ESTATE);
	assert_int_equal(submit_k(e, "k", 2, 3, b, &oc), GS_ESTATE);
	assert_int_equal(queued(e), 3);
	assert_int_equal(gs_engine_tasks_in_use(e), 3);
	char long_key[GS_IDEM_MAX_KEY + 2];
	memset(long_key, 'x', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = 0;
	assert_int_equal(submit_k(e, long_key, 1, 1, b, &oc), GS_EINVAL);
	long_key[GS_IDEM_MAX_KEY] = 0; /* exactly the limit: fine */
	assert_int_equal(submit_k(e, long_key, 1, 1, b, &oc), GS_OK);
	assert_int_equal(submit_k(e, "", 1, 1, b, &oc), GS_EINVAL);
	/* A bad spec is refused before the key is looked at. */
	gs_task_spec bad = gs_test_spec(DQ, 999, NULL, 0);
	gs_idem_req r = key("k2", 0);
	assert_int_equal(gs_engine_submit_idem(e, &r, &bad, 1, 1, b, &oc), GS_EINVAL);
	assert_int_equal(submit_k(e, "k2", 0, 1, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_retention(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	uint64_t a[2], b[2];
	enum gs_idem_outcome oc;
	assert_int_equal(submit_k(e, "r", 0, 2, a, &oc), GS_OK);
	drop_task(e, a[0]);
	assert_int_equal(submit_k(e, "r", 0, 2, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING); /* a[1] keeps it */
	assert_memory_equal(a, b, sizeof(a));
	drop_task(e, a[1]);
	assert_int_equal(submit_k(e, "r", 0, 2, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW); /* every task gone: so is the key */
	assert_true(b[0] != a[0] && b[1] != a[1]);
	drain(e);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_big_batch(void **st)
{
	(void)st;
	gs_engine *e = mk(1024, 64);
	gs_task_spec sp[300];
	uint64_t a[300], b[300];
	for (int i = 0; i < 300; i++)
		sp[i] = gs_test_spec(DQ, 0, NULL, 0);
	gs_idem_req r = key("big", 42);
	enum gs_idem_outcome oc;
	for (int round = 0; round < 20; round++) {
		assert_int_equal(gs_engine_submit_idem(e, &r, sp, 300, 1, a, &oc), GS_OK);
		assert_int_equal(oc, GS_IDEM_NEW);
		assert_int_equal(gs_engine_submit_idem(e, &r, sp, 300, 1, b, &oc), GS_OK);
		assert_int_equal(oc, GS_IDEM_EXISTING);
		assert_memory_equal(a, b, sizeof(a));
		for (int i = 0; i < 300; i++)
			drop_task(e, a[i]);
		drain(e);
	}
	/* More IDs than one arena block holds: refused, nothing queued. */
	uint32_t max = gs_engine_idem_max_ids(e);
	assert_true(max >= 300);
	assert_int_equal(gs_idem_begin(&e->it, "huge", 4, 0, max + 1, 1, a, &(bool){false},
	                               &(uint32_t){0}, NULL),
	                 GS_ETOOBIG);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_full(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 16); /* window = 16 = the whole table */
	uint64_t ids[16][1], x[1];
	enum gs_idem_outcome oc;
	char k[32];
	for (int i = 0; i < 16; i++) {
		snprintf(k, sizeof(k), "full-%d", i);
		assert_int_equal(submit_k(e, k, 0, 1, ids[i], &oc), GS_OK);
		assert_int_equal(oc, GS_IDEM_NEW);
	}
	assert_int_equal(submit_k(e, "one-more", 0, 1, x, &oc), GS_EFULL);
	assert_int_equal(oc, GS_IDEM_KEYS_FULL);
	assert_int_equal(gs_engine_tasks_in_use(e), 16); /* nothing submitted */
	/* Known keys still answer. */
	assert_int_equal(submit_k(e, "full-3", 0, 1, x, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING);
	/* A key whose tasks are gone makes room. */
	drop_task(e, ids[5][0]);
	assert_int_equal(submit_k(e, "one-more", 0, 1, x, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW);
	drain(e);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

struct race {
	gs_engine *e;
	pthread_barrier_t go;
	uint64_t ids[8][4];
	int news[8], rcs[8];
	int round;
};

static void *race_main(void *arg)
{
	struct race *r = ((struct race **)arg)[0];
	int me = (int)(intptr_t)((void **)arg)[1];
	char k[32];
	snprintf(k, sizeof(k), "race-%d", r->round);
	pthread_barrier_wait(&r->go);
	enum gs_idem_outcome oc;
	int rc;
	for (int tries = 0; tries < 100000; tries++) {
		rc = submit_k(r->e, k, 9, 4, r->ids[me], &oc);
		if (rc != GS_EBUSY)
			break;
		sched_yield();
	}
	r->rcs[me] = rc; /* checked by the main thread (cmocka asserts there only) */
	r->news[me] = rc == GS_OK && oc == GS_IDEM_NEW;
	return NULL;
}

static void t_threads(void **st)
{
	(void)st;
	gs_engine *e = mk(1u << 14, 1024);
	int rounds = (int)gs_test_count(200, 10);
	for (int round = 0; round < rounds; round++) {
		struct race r = {.e = e, .round = round};
		pthread_barrier_init(&r.go, NULL, 4);
		pthread_t th[4];
		void *args[4][2];
		struct race *rp = &r;
		for (int i = 0; i < 4; i++) {
			args[i][0] = rp;
			args[i][1] = (void *)(intptr_t)i;
			pthread_create(&th[i], NULL, race_main, args[i]);
		}
		for (int i = 0; i < 4; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&r.go);
		for (int i = 0; i < 4; i++)
			assert_int_equal(r.rcs[i], GS_OK);
		assert_int_equal(r.news[0] + r.news[1] + r.news[2] + r.news[3], 1);
		for (int i = 1; i < 4; i++)
			assert_memory_equal(r.ids[0], r.ids[i], sizeof(r.ids[0]));
	}
	assert_int_equal(gs_engine_tasks_in_use(e), 4u * (uint32_t)rounds);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_recovery(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	uint64_t a[20], b[20], c[1];
	enum gs_idem_outcome oc;
	gs_task_spec sp[20];
	for (int i = 0; i < 20; i++)
		sp[i] = gs_test_spec(DQ, 0, NULL, 0);
	gs_idem_req big = key("big", 5);
	assert_int_equal(gs_engine_submit_idem(e, &big, sp, 20, 1, a, &oc), GS_OK);
	assert_int_equal(submit_k(e, "small", 5, 1, c, &oc), GS_OK);
	/* A half-inserted key, as a process killed mid-insert leaves it. */
	bool existing;
	uint32_t slot;
	uint64_t scratch[1];
	assert_int_equal(gs_idem_begin(&e->it, "half", 4, 0, 1, 1, scratch, &existing, &slot, NULL),
	                 GS_OK);
	gs_recovery_report rep;
	assert_int_equal(gs_engine_recover(e, &rep), GS_OK);
	GS_CHECK(e);
	/* Live keys survive, with their ID lists (arena blocks kept). */
	assert_int_equal(gs_engine_submit_idem(e, &big, sp, 20, 1, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING);
	assert_memory_equal(a, b, sizeof(a));
	/* The arena block was not handed out again: more blocks, same IDs. */
	uint8_t pay[200];
	memset(pay, 7, sizeof(pay));
	gs_task_spec ps = gs_test_spec(DQ, 0, pay, sizeof(pay));
	uint64_t pid;
	for (int i = 0; i < 50; i++)
		assert_int_equal(gs_engine_submit(e, &ps, 1, 1, &pid), GS_OK);
	assert_int_equal(gs_engine_submit_idem(e, &big, sp, 20, 1, b, &oc), GS_OK);
	assert_memory_equal(a, b, sizeof(a));
	/* The half-inserted one is gone: a submit under it is new. */
	assert_int_equal(submit_k(e, "half", 0, 1, c, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_NEW);
	gs_engine_close(e, false);
}

/* A process killed between a key's commit and the end of its publish: the
 * filled slots it had not published yet are published by recovery (roll
 * forward), so a retry's IDs all exist. */
static void t_partial_publish(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	uint64_t ids[8], again[8];
	enum gs_idem_outcome oc;
	assert_int_equal(submit_k(e, "cut", 9, 8, ids, &oc), GS_OK);
	/* Forge the cut: take every node out of the queue, put back the first
	 * three (published), leave the last five RESERVED and unlinked. */
	uint64_t popped[8];
	for (int i = 0; i < 8; i++)
		assert_int_equal(gs_task_heap_pop(&e->th, DQ, &popped[i]), GS_OK);
	assert_memory_equal(popped, ids, sizeof(ids));
	for (int i = 0; i < 3; i++)
		assert_int_equal(gs_task_heap_push(&e->th, DQ, 1, ids[i]), GS_OK);
	for (int i = 3; i < 8; i++) {
		struct gs_task_slot *sl = &e->tt.slots[gs_task_id_slot(ids[i])];
		atomic_store(&sl->word,
		             gs_word_make(gs_task_id_gen(ids[i]), 0, 0, false, GS_TASK_RESERVED));
	}
	gs_recovery_report rep;
	assert_int_equal(gs_engine_recover(e, &rep), GS_OK);
	assert_int_equal(rep.keyed_published, 5);
	assert_int_equal(rep.reserved_freed, 0);
	GS_CHECK(e);
	/* The retry gets the eight IDs, and all eight are queued, once each. */
	assert_int_equal(submit_k(e, "cut", 9, 8, again, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING);
	assert_memory_equal(again, ids, sizeof(ids));
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 8);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 16, 1ull << DQ, 1000, &w), GS_OK);
	bool seen[8] = {false};
	for (int i = 0; i < 8; i++) {
		gs_assignment a;
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, 1000, &a), GS_OK);
		int k = 0;
		while (k < 8 && ids[k] != a.task)
			k++;
		assert_true(k < 8);
		assert_false(seen[k]);
		seen[k] = true;
	}
	gs_assignment none;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, 1000, &none), GS_EEMPTY);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_restore(void **st)
{
	(void)st;
	gs_engine *e = mk(256, 64);
	gs_restore_task t = {.state = GS_TASK_QUEUED, .queue = DQ, .submitted_us = 1};
	uint64_t ids[2] = {gs_task_id(3, 7), gs_task_id(9, 7)};
	for (int i = 0; i < 2; i++) {
		t.id = ids[i];
		assert_int_equal(gs_engine_restore(e, &t, 10), GS_OK);
	}
	gs_idem_req k = key("restored", 77);
	assert_int_equal(gs_engine_idem_restore(e, &k, 5, ids, 2), GS_OK);
	assert_int_equal(gs_engine_idem_restore(e, &k, 5, ids, 2), GS_ESTATE);
	uint64_t gone[1] = {gs_task_id(20, 7)};
	gs_idem_req k2 = key("dead", 77);
	assert_int_equal(gs_engine_idem_restore(e, &k2, 5, gone, 1), GS_ENOTFOUND);
	assert_int_equal(gs_engine_restore_finish(e, 8, NULL), GS_OK);
	GS_CHECK(e);
	uint64_t b[2];
	enum gs_idem_outcome oc;
	assert_int_equal(submit_k(e, "restored", 77, 2, b, &oc), GS_OK);
	assert_int_equal(oc, GS_IDEM_EXISTING);
	assert_memory_equal(ids, b, sizeof(ids));
	gs_engine_close(e, false);
}

/* --- the log ------------------------------------------------------------- */

static char g_dir[128];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int wal_setup(void **st)
{
	(void)st;
	snprintf(g_dir, sizeof(g_dir), "/tmp/gs-test-idem-%d", (int)getpid());
	nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static int wal_teardown(void **st)
{
	(void)st;
	nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void put_submit(gs_wal *w, uint64_t id)
{
	gs_wal_rec r = {.type = GS_WAL_SUBMIT, .task = id, .time_us = id, .queue = "default"};
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_OK);
}

static void put_key(gs_wal *w, const char *k, const uint64_t *ids, uint32_t n)
{
	gs_wal_rec r = {.type = GS_WAL_KEY,
	                .time_us = 3,
	                .key = k,
	                .key_len = (uint32_t)strlen(k),
	                .digest = 11,
	                .ids = ids,
	                .n_ids = n};
	assert_int_equal(gs_wal_append(w, &r, NULL), GS_OK);
}

struct keys_seen {
	char names[8][32];
	uint32_t n_ids[8];
	int n;
};

static int key_cb(void *arg, const gs_wal_key *k)
{
	struct keys_seen *s = arg;
	assert_true(s->n < 8);
	snprintf(s->names[s->n], 32, "%.*s", (int)k->key_len, (const char *)k->key);
	s->n_ids[s->n] = k->n_ids;
	assert_int_equal(k->digest, 11);
	s->n++;
	return 0;
}

static bool seen(const struct keys_seen *s, const char *k)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->names[i], k) == 0)
			return true;
	return false;
}

static void replay(struct keys_seen *ks, gs_wal_state **out)
{
	gs_wal_report rep;
	assert_int_equal(gs_wal_replay_state(g_dir, out, &rep), GS_OK);
	memset(ks, 0, sizeof(*ks));
	assert_int_equal(gs_wal_state_each_key(*out, key_cb, ks), GS_OK);
}

static void t_wal_keys(void **st)
{
	(void)st;
	gs_wal *w;
	assert_int_equal(gs_wal_open(g_dir, NULL, NULL, NULL, NULL, &w), GS_OK);
	uint64_t a[2] = {gs_task_id(1, 1), gs_task_id(2, 1)};
	uint64_t b[1] = {gs_task_id(3, 1)};
	uint64_t c[3] = {gs_task_id(4, 1), gs_task_id(5, 1), gs_task_id(6, 1)};
	put_key(w, "alive", a, 2);
	put_submit(w, a[0]);
	put_submit(w, a[1]);
	put_key(w, "released", b, 1);
	put_submit(w, b[0]);
	gs_wal_rec rel = {.type = GS_WAL_RELEASE, .task = b[0]};
	assert_int_equal(gs_wal_append(w, &rel, NULL), GS_OK);
	/* Cut before its acknowledgement: KEY and one SUBMIT of three. */
	put_key(w, "torn", c, 3);
	put_submit(w, c[0]);
	assert_int_equal(gs_wal_close(w), GS_OK);

	struct keys_seen ks;
	gs_wal_state *s;
	replay(&ks, &s);
	assert_int_equal(ks.n, 1);
	assert_true(seen(&ks, "alive"));
	assert_int_equal(ks.n_ids[0], 2);
	gs_wal_task t;
	assert_int_equal(gs_wal_state_get(s, a[0], &t), GS_OK);
	assert_int_equal(gs_wal_state_get(s, c[0], &t), GS_ENOTFOUND); /* dropped with "torn" */
	assert_int_equal(gs_wal_state_unacked(s), 1);
	assert_int_equal(gs_wal_state_keys(s), 1);
	assert_int_equal(gs_wal_state_count(s), 2);
	gs_wal_state_free(s);
}

/* The compaction callback: a snapshot of what the state holds. */
static int snap_tasks(void *arg, const gs_wal_task *t)
{
	return gs_wal_snap_add(arg, t);
}

static int snap_keys(void *arg, const gs_wal_key *k)
{
	return gs_wal_snap_add_key(arg, k);
}

static int snap_fn(void *arg, gs_wal_snap *snap)
{
	gs_wal_state *s = arg;
	int rc = gs_wal_state_each(s, snap_tasks, snap);
	if (rc == GS_OK)
		rc = gs_wal_state_each_key(s, snap_keys, snap);
	return rc;
}

static void t_wal_compact(void **st)
{
	(void)st;
	gs_wal_state *s;
	assert_int_equal(gs_wal_state_new(&s), GS_OK);
	gs_wal *w;
	assert_int_equal(gs_wal_open(g_dir, NULL, gs_wal_state_fn, s, NULL, &w), GS_OK);
	uint64_t a[2] = {gs_task_id(1, 1), gs_task_id(2, 1)};
	uint64_t b[1] = {gs_task_id(3, 1)};
	gs_wal_rec recs[8];
	int nr = 0;
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_KEY,
	                          .time_us = 3,
	                          .key = "live",
	                          .key_len = 4,
	                          .digest = 11,
	                          .ids = a,
	                          .n_ids = 2};
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_SUBMIT, .task = a[0], .queue = "default"};
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_SUBMIT, .task = a[1], .queue = "default"};
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_RELEASE, .task = a[0]}; /* one of two left */
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_KEY,
	                          .time_us = 3,
	                          .key = "dead",
	                          .key_len = 4,
	                          .digest = 11,
	                          .ids = b,
	                          .n_ids = 1};
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_SUBMIT, .task = b[0], .queue = "default"};
	recs[nr++] = (gs_wal_rec){.type = GS_WAL_RELEASE, .task = b[0]};
	for (int i = 0; i < nr; i++) {
		assert_int_equal(gs_wal_append(w, &recs[i], NULL), GS_OK);
		assert_int_equal(gs_wal_state_apply(s, &recs[i]), GS_OK);
	}
	assert_int_equal(gs_wal_compact(w, snap_fn, s), GS_OK);
	assert_int_equal(gs_wal_close(w), GS_OK);
	gs_wal_state_free(s);

	/* Only the snapshot is left: the live key, committed although a[0]
	 * (released) is not in it; the dead key is gone. */
	struct keys_seen ks;
	replay(&ks, &s);
	assert_int_equal(ks.n, 1);
	assert_true(seen(&ks, "live"));
	gs_wal_task t;
	assert_int_equal(gs_wal_state_get(s, a[1], &t), GS_OK);
	assert_int_equal(gs_wal_state_unacked(s), 0);
	gs_wal_state_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_basic),
	    cmocka_unit_test(t_mismatch),
	    cmocka_unit_test(t_retention),
	    cmocka_unit_test(t_big_batch),
	    cmocka_unit_test(t_full),
	    cmocka_unit_test(t_threads),
	    cmocka_unit_test(t_recovery),
	    cmocka_unit_test(t_partial_publish),
	    cmocka_unit_test(t_restore),
	    cmocka_unit_test_setup_teardown(t_wal_keys, wal_setup, wal_teardown),
	    cmocka_unit_test_setup_teardown(t_wal_compact, wal_setup, wal_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
