/*
 * test_threads.c - concurrency within one process.
 *
 * t_mpmc: 2 producers and 2 consumers move 1,000,000 tasks of random
 * priorities (a few levels) through one queue.  Each payload names its
 * producer and sequence number; every task must be popped exactly once, none
 * lost, and each consumer must see the sequence numbers of each (producer,
 * priority) increase (FIFO within a priority).  Consumers pop with
 * gs_engine_pop_assign to their own workers, then finish and release.
 *
 * t_rcu: readers look workers up in the RCU worker table while a writer adds
 * and removes them; a record's context is freed only after a grace period,
 * which the readers check by its contents (ASan catches a use after free).
 */
#include "test_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "worker_table.h"

/*
 * liburcu is not instrumented: its own threads (call_rcu, the hash table's
 * resize workqueue) free what other threads allocated, synchronised by
 * barriers TSan cannot see.  Ignore accesses made from uninstrumented code
 * (a TSan option, not a suppression); our code stays fully checked, with the
 * RCU ordering annotated in worker_table.c.
 */
#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "ignore_noninstrumented_modules=1";
}
#endif

#define NPROD  2
#define NCONS  2
#define NPRIO  4
#define NOW    1000000u
#define BUDGET 150000000u /* us: every loop stops by then */

struct msg {
	uint32_t producer, prio;
	uint64_t seq;
};

static struct {
	gs_engine *e;
	uint64_t per_producer;
	_Atomic uint8_t *seen[NPROD]; /* pops per (producer, seq) */
	_Atomic uint64_t popped;
	_Atomic bool stop;
	uint64_t deadline;
	uint64_t workers[NCONS];
	_Atomic int errors;
	char error[256];
} T;

static void report(const char *fmt, uint64_t a, uint64_t b, uint64_t c)
{
	if (atomic_fetch_add(&T.errors, 1) == 0)
		snprintf(T.error, sizeof(T.error), fmt, (unsigned long long)a,
		         (unsigned long long)b, (unsigned long long)c);
	atomic_store(&T.stop, true);
}

static void *producer(void *arg)
{
	uint32_t p = (uint32_t)(uintptr_t)arg;
	uint64_t rng = 0x1234567ull + p * 7919u;
	struct msg m[64];
	gs_task_spec specs[64];
	uint64_t ids[64];
	for (uint64_t seq = 0; seq < T.per_producer && !atomic_load(&T.stop);) {
		uint32_t n = 1 + gs_test_below(&rng, 64);
		if (n > T.per_producer - seq)
			n = (uint32_t)(T.per_producer - seq);
		for (uint32_t i = 0; i < n; i++) {
			m[i] = (struct msg){p, gs_test_below(&rng, NPRIO), seq + i};
			specs[i] = gs_test_spec(DQ, m[i].prio * 10, &m[i], sizeof(m[i]));
		}
		int rc = gs_engine_submit(T.e, specs, n, NOW, ids);
		if (rc == GS_EFULL) {
			if (gs_test_mono_us() > T.deadline) {
				report("producer %llu: table full for too long at %llu%llu", p, seq,
				       0);
				break;
			}
			sched_yield();
			continue;
		}
		if (rc != GS_OK) {
			report("producer %llu: submit: %lld at %llu", p, (uint64_t)rc, seq);
			break;
		}
		seq += n;
	}
	return NULL;
}

static void *consumer(void *arg)
{
	uint32_t c = (uint32_t)(uintptr_t)arg;
	uint64_t last[NPROD][NPRIO];
	bool any[NPROD][NPRIO];
	memset(any, 0, sizeof(any));
	uint64_t total = T.per_producer * NPROD;
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	while (!atomic_load(&T.stop) && atomic_load(&T.popped) < total) {
		gs_assignment a;
		int rc = gs_engine_pop_assign(T.e, DQ, T.workers[c], NOW, &a);
		if (rc == GS_EEMPTY) {
			if (gs_test_mono_us() > T.deadline) {
				report("consumer %llu: timed out at %llu of %llu popped", c,
				       atomic_load(&T.popped), total);
				break;
			}
			sched_yield();
			continue;
		}
		if (rc != GS_OK) {
			report("consumer %llu: pop_assign: %lld%llu", c, (uint64_t)rc, 0);
			break;
		}
		const uint8_t *p;
		uint32_t len;
		struct msg m;
		if (gs_engine_task_payload(T.e, a.task, &p, &len) != GS_OK || len != sizeof(m)) {
			report("consumer %llu: payload of %#llx unreadable (%llu)", c, a.task, len);
			break;
		}
		memcpy(&m, p, sizeof(m));
		if (m.producer >= NPROD || m.prio >= NPRIO || m.seq >= T.per_producer ||
		    a.priority != m.prio * 10) {
			report("consumer %llu: bad payload for %#llx (seq %llu)", c, a.task, m.seq);
			break;
		}
		if (any[m.producer][m.prio] && m.seq <= last[m.producer][m.prio]) {
			report("FIFO broken: producer %llu sequence %llu after %llu", m.producer,
			       m.seq, last[m.producer][m.prio]);
			break;
		}
		any[m.producer][m.prio] = true;
		last[m.producer][m.prio] = m.seq;
		if (atomic_fetch_add(&T.seen[m.producer][m.seq], 1) != 0) {
			report("producer %llu sequence %llu popped twice (%llu)", m.producer, m.seq,
			       0);
			break;
		}
		rc = gs_engine_finish(T.e, a.task, a.worker, a.attempt, &o, NOW);
		if (rc == GS_OK)
			rc = gs_engine_release(T.e, a.task);
		if (rc != GS_OK) {
			report("consumer %llu: finish/release %#llx: %lld", c, a.task,
			       (uint64_t)rc);
			break;
		}
		atomic_fetch_add(&T.popped, 1);
	}
	return NULL;
}

static void t_mpmc(void **st)
{
	(void)st;
	uint64_t total = gs_test_count(1000000, 5);
	memset(&T, 0, sizeof(T));
	T.per_producer = total / NPROD;
	T.e = gs_test_engine(1u << 16, 8, 4096, 1u << 20);
	for (int c = 0; c < NCONS; c++)
		assert_int_equal(gs_engine_worker_register(T.e, GS_WORKER_MAX_SLOTS, 1ull << DQ,
		                                           NOW, &T.workers[c]),
		                 GS_OK);
	for (int p = 0; p < NPROD; p++) {
		T.seen[p] = calloc(T.per_producer, 1);
		assert_non_null(T.seen[p]);
	}
	uint64_t t0 = gs_test_mono_us();
	T.deadline = t0 + BUDGET;
	pthread_t th[NPROD + NCONS];
	int started = 0;
	for (int p = 0; p < NPROD; p++, started++)
		if (pthread_create(&th[started], NULL, producer, (void *)(uintptr_t)p) != 0)
			break;
	for (int c = 0; c < NCONS && started == NPROD + c; c++, started++)
		if (pthread_create(&th[started], NULL, consumer, (void *)(uintptr_t)c) != 0)
			break;
	if (started != NPROD + NCONS)
		atomic_store(&T.stop, true);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	double secs = (double)(gs_test_mono_us() - t0) / 1e6;
	if (started != NPROD + NCONS)
		fail_msg("could only start %d threads", started);
	if (atomic_load(&T.errors))
		fail_msg("%s", T.error);
	uint64_t missing = 0;
	for (int p = 0; p < NPROD; p++)
		for (uint64_t s = 0; s < T.per_producer; s++)
			missing += atomic_load(&T.seen[p][s]) != 1;
	printf("threads: %llu tasks through %d producers and %d consumers in %.2f s "
	       "(%.0f tasks/s)\n",
	       (unsigned long long)total, NPROD, NCONS, secs, (double)total / secs);
	assert_int_equal(missing, 0);
	assert_int_equal(atomic_load(&T.popped), total);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(T.e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 0);
	assert_int_equal(qs.submitted, total);
	assert_int_equal(qs.done, total);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(T.e, DQ, T.workers[0], NOW, &a), GS_EEMPTY);
	GS_CHECK(T.e);
	for (int p = 0; p < NPROD; p++)
		free(T.seen[p]);
	gs_engine_close(T.e, false);
}

/* --- RCU worker table ------------------------------------------------------------ */

#define RCU_IDS     48
#define RCU_MAGIC   0x5ca1ab1e0ddba11ull
#define RCU_READERS 3

struct ctx {
	uint64_t magic;
	uint64_t id;
};

/*
 * The IDs: RCU_IDS values whose hashes (worker_table.c's splitmix64) fall in
 * distinct buckets of the table's 64, so no chain grows long enough to make
 * liburcu resize the table.  Its resize runs in a worker thread of the
 * (uninstrumented) library, which TSan would report; the lookups, adds,
 * removes and deferred frees under test are the same either way.
 */
static uint64_t rcu_id[RCU_IDS];

static uint64_t splitmix(uint64_t id)
{
	id ^= id >> 30;
	id *= 0xbf58476d1ce4e5b9ull;
	id ^= id >> 27;
	id *= 0x94d049bb133111ebull;
	id ^= id >> 31;
	return id;
}

static void pick_ids(void)
{
	uint64_t used = 0;
	int n = 0;
	for (uint64_t id = 1; n < RCU_IDS; id++) {
		uint64_t b = 1ull << (splitmix(id) & 63);
		if (!(used & b)) {
			used |= b;
			rcu_id[n++] = id;
		}
	}
}

static struct {
	gs_worker_table *t;
	_Atomic bool stop;
	_Atomic uint64_t lookups, hits, freed, bad;
	uint64_t deadline;
} R;

static void on_free(void *c, void *arg)
{
	(void)arg;
	struct ctx *x = c;
	x->magic = 0xdead;
	free(x);
	atomic_fetch_add(&R.freed, 1);
}

static void *rcu_reader(void *arg)
{
	uint64_t rng = 77 + (uintptr_t)arg;
	gs_worker_table_thread_online();
	while (!atomic_load(&R.stop) && gs_test_mono_us() < R.deadline) {
		for (int i = 0; i < 256; i++) {
			uint64_t id = rcu_id[gs_test_below(&rng, RCU_IDS)];
			gs_worker_table_read_lock();
			gs_worker_rec *r = gs_worker_table_find(R.t, id);
			if (r) {
				const struct ctx *c = r->ctx;
				if (r->id != id || c->magic != RCU_MAGIC || c->id != id)
					atomic_fetch_add(&R.bad, 1);
				atomic_fetch_add_explicit(&R.hits, 1, memory_order_relaxed);
			}
			gs_worker_table_read_unlock();
			atomic_fetch_add_explicit(&R.lookups, 1, memory_order_relaxed);
		}
	}
	gs_worker_table_thread_offline();
	return NULL;
}

static void t_rcu(void **st)
{
	(void)st;
	uint64_t ops = gs_test_count(200000, 2);
	memset(&R, 0, sizeof(R));
	pick_ids();
	assert_int_equal(gs_worker_table_create(on_free, NULL, &R.t), GS_OK);
	R.deadline = gs_test_mono_us() + 60000000u;
	pthread_t th[RCU_READERS];
	int started = 0;
	for (; started < RCU_READERS; started++)
		if (pthread_create(&th[started], NULL, rcu_reader, (void *)(uintptr_t)started))
			break;
	gs_worker_table_thread_online();
	bool in[RCU_IDS] = {0};
	uint64_t rng = 5, added = 0, removed = 0;
	int errs = 0;
	for (uint64_t i = 0; i < ops && gs_test_mono_us() < R.deadline && started; i++) {
		uint32_t k = gs_test_below(&rng, RCU_IDS);
		uint64_t id = rcu_id[k];
		if (!in[k]) {
			struct ctx *c = malloc(sizeof(*c));
			c->magic = RCU_MAGIC;
			c->id = id;
			errs += gs_worker_table_add(R.t, id, "w", c) != GS_OK;
			errs += gs_worker_table_add(R.t, id, "dup", c) != GS_EINVAL;
			in[k] = true;
			added++;
		} else {
			errs += gs_worker_table_remove(R.t, id) != GS_OK;
			errs += gs_worker_table_remove(R.t, id) != GS_ENOTFOUND;
			in[k] = false;
			removed++;
		}
	}
	gs_worker_table_read_lock();
	gs_worker_rec *r = gs_worker_table_find(R.t, UINT64_MAX);
	gs_worker_table_read_unlock();
	unsigned long count = gs_worker_table_count(R.t);
	gs_worker_table_thread_offline();
	atomic_store(&R.stop, true);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	gs_worker_table_destroy(R.t);
	printf("rcu: %llu adds, %llu removes, %llu lookups (%llu hits), %llu freed\n",
	       (unsigned long long)added, (unsigned long long)removed,
	       (unsigned long long)atomic_load(&R.lookups),
	       (unsigned long long)atomic_load(&R.hits), (unsigned long long)atomic_load(&R.freed));
	assert_int_equal(started, RCU_READERS);
	assert_int_equal(errs, 0);
	assert_null(r);
	assert_int_equal(atomic_load(&R.bad), 0);
	uint64_t live = 0;
	for (int i = 0; i < RCU_IDS; i++)
		live += in[i];
	assert_int_equal(count, live);
	/* Every record freed exactly once: the removed ones, then the rest. */
	assert_int_equal(atomic_load(&R.freed), added);
	assert_true(atomic_load(&R.hits) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_mpmc),
	    cmocka_unit_test(t_rcu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
