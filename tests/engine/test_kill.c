/*
 * test_kill.c - processes killed at random points never lose or duplicate
 * a task.
 *
 * Each round, 3 forked processes attach one named segment and submit, pop
 * (gs_engine_pop_assign to their own worker), start and finish at random,
 * logging each submitted ID after submit returns and each assignment after
 * pop_assign returns, in a MAP_SHARED area.  The parent SIGKILLs one after
 * 1-30 ms, tells the others to stop (a flag in a separate MAP_SHARED page),
 * waits for them with a bound (a survivor still running after 10 s is a
 * hang: failure), runs gs_engine_recover() and checks: gs_engine_check()
 * passes; every acknowledged ID is QUEUED, ASSIGNED, RUNNING or DONE (none
 * lost); every logged assignment is ASSIGNED/RUNNING/DONE on that child's
 * worker; no ID is assigned twice, over all rounds (nothing is requeued to
 * another worker in this test).  The segment is continued from round to
 * round: tasks queued in one round are popped in later ones.
 */
#include "test_util.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "task_table.h"

#define NCHILD    3
#define LOGMAX    4096u
#define MAX_TASKS (1u << 17)
#define NOW       1000000u
#define HANG_US   10000000u

struct clog {
	_Atomic uint32_t nsub, nasg;
	uint64_t sub[LOGMAX];
	uint64_t asg[LOGMAX];
	uint32_t att[LOGMAX];
};

struct flags {
	_Atomic int stop;
	_Atomic int ready[NCHILD];
};

static char seg_name[64];
static struct clog *logs;   /* MAP_SHARED, NCHILD entries */
static struct flags *flags; /* its own MAP_SHARED page */
static pid_t kids[NCHILD];

/* --- the children ------------------------------------------------------------------ */

static void child(int ci, uint64_t worker, const uint32_t *qids, uint64_t seed)
{
	gs_engine *e;
	bool dead;
	if (gs_engine_attach(seg_name, &e, &dead) != GS_OK)
		_exit(10);
	struct clog *L = &logs[ci];
	uint8_t buf[100];
	memset(buf, (int)ci, sizeof(buf));
	atomic_store(&flags->ready[ci], 1);
	uint64_t t_end = gs_test_mono_us() + 5000000u;
	for (uint32_t op = 0; !atomic_load_explicit(&flags->stop, memory_order_relaxed); op++) {
		if ((op & 255) == 0 && gs_test_mono_us() > t_end)
			break; /* the parent is gone or stuck: do not run forever */
		uint32_t r = gs_test_below(&seed, 10);
		uint32_t nsub = atomic_load_explicit(&L->nsub, memory_order_relaxed);
		uint32_t nasg = atomic_load_explicit(&L->nasg, memory_order_relaxed);
		if (r < 4 && nsub + 4 <= LOGMAX) {
			gs_task_spec s[4];
			uint64_t ids[4];
			uint32_t n = 1 + gs_test_below(&seed, 4);
			for (uint32_t i = 0; i < n; i++) {
				s[i] = gs_test_spec(qids[gs_test_below(&seed, 2)],
				                    gs_test_below(&seed, 4), buf,
				                    gs_test_below(&seed, sizeof(buf) + 1));
				s[i].max_retries = 1;
			}
			int rc = gs_engine_submit(e, s, n, NOW, ids);
			if (rc == GS_OK) {
				for (uint32_t i = 0; i < n; i++)
					L->sub[nsub + i] = ids[i];
				/* release: the IDs are in the log before the count says so. */
				atomic_store_explicit(&L->nsub, nsub + n, memory_order_release);
			} else if (rc != GS_EFULL) {
				_exit(11);
			}
		} else if (r < 8 && nasg < LOGMAX) {
			gs_assignment a;
			int rc =
			    gs_engine_pop_assign(e, qids[gs_test_below(&seed, 2)], worker, NOW, &a);
			if (rc == GS_OK) {
				L->asg[nasg] = a.task;
				L->att[nasg] = a.attempt;
				atomic_store_explicit(&L->nasg, nasg + 1, memory_order_release);
			} else if (rc != GS_EEMPTY) {
				_exit(12);
			}
		} else if (nasg > 0) {
			uint32_t k = gs_test_below(&seed, nasg);
			int rc;
			if (gs_test_below(&seed, 2)) {
				rc = gs_engine_start(e, L->asg[k], worker, L->att[k], NOW);
			} else {
				gs_outcome o;
				memset(&o, 0, sizeof(o));
				o.result = buf;
				o.result_len = gs_test_below(&seed, sizeof(buf) + 1);
				rc = gs_engine_finish(e, L->asg[k], worker, L->att[k], &o, NOW);
			}
			if (rc != GS_OK && rc != GS_ESTALE)
				_exit(13);
		}
	}
	_exit(0);
}

/* --- the parent's bookkeeping: a set of IDs with flags ---------------------------------- */

#define F_ASSIGNED 1u
#define F_RELEASED 2u

static struct {
	uint64_t *key;
	uint8_t *val;
	size_t cap, n;
} H;

static uint8_t *h_slot(uint64_t id)
{
	size_t i = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (H.cap - 1);
	while (H.key[i] && H.key[i] != id)
		i = (i + 1) & (H.cap - 1);
	if (!H.key[i]) {
		if (H.n * 2 > H.cap)
			fail_msg("ID set full");
		H.key[i] = id;
		H.n++;
	}
	return &H.val[i];
}

static uint8_t h_get(uint64_t id)
{
	size_t i = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (H.cap - 1);
	while (H.key[i] && H.key[i] != id)
		i = (i + 1) & (H.cap - 1);
	return H.key[i] ? H.val[i] : 0;
}

/* --- the parent ------------------------------------------------------------------------ */

static void kill_all(void)
{
	for (int i = 0; i < NCHILD; i++) {
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
	}
}

static int setup(void **st)
{
	(void)st;
	snprintf(seg_name, sizeof(seg_name), "/gstest-kill-%d", (int)getpid());
	shm_unlink(seg_name);
	logs = mmap(NULL, sizeof(struct clog) * NCHILD, PROT_READ | PROT_WRITE,
	            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	flags = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (logs == MAP_FAILED || flags == MAP_FAILED)
		return -1;
	H.cap = 1u << 22;
	H.key = calloc(H.cap, sizeof(*H.key));
	H.val = calloc(H.cap, 1);
	return H.key && H.val ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	kill_all();
	shm_unlink(seg_name);
	munmap(logs, sizeof(struct clog) * NCHILD);
	munmap(flags, 4096);
	free(H.key);
	free(H.val);
	return 0;
}

/* Waits for kids[i] with a bound; 0 and *status when it exited, -1 on a hang. */
static int wait_bounded(int i, int *status)
{
	uint64_t t0 = gs_test_mono_us();
	for (;;) {
		pid_t r = waitpid(kids[i], status, WNOHANG);
		if (r == kids[i]) {
			kids[i] = 0;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (gs_test_mono_us() - t0 > HANG_US)
			return -1;
		usleep(200);
	}
}

static gs_engine *E;
static uint64_t parent_worker;
static uint64_t n_released;

static void finish_release(uint64_t id)
{
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(E, id, &ti), GS_OK);
	if (ti.state == GS_TASK_ASSIGNED || ti.state == GS_TASK_RUNNING) {
		gs_outcome o;
		memset(&o, 0, sizeof(o));
		assert_int_equal(gs_engine_finish(E, id, ti.worker, ti.attempt, &o, NOW), GS_OK);
	}
	assert_int_equal(gs_engine_release(E, id), GS_OK);
	*h_slot(id) |= F_RELEASED;
	n_released++;
}

static void t_kill(void **st)
{
	(void)st;
	uint32_t rounds = (uint32_t)gs_test_count(150, 3);
	if (rounds < 50)
		rounds = 50;
	gs_engine_opts o;
	memset(&o, 0, sizeof(o));
	o.segment_name = seg_name;
	o.geom.max_tasks = MAX_TASKS;
	o.geom.max_workers = 16;
	o.geom.max_payload = 4096;
	o.geom.arena_bytes = 16u << 20;
	assert_int_equal(gs_engine_create(&o, &E), GS_OK);
	uint32_t qids[2];
	assert_int_equal(gs_engine_queue(E, "default", false, &qids[0]), GS_OK);
	assert_int_equal(gs_engine_queue(E, "kill-q", true, &qids[1]), GS_OK);
	uint64_t mask = 1ull << qids[0] | 1ull << qids[1];
	uint64_t workers[NCHILD];
	for (int i = 0; i < NCHILD; i++)
		assert_int_equal(gs_engine_worker_register(E, 64, mask, NOW, &workers[i]), GS_OK);
	assert_int_equal(gs_engine_worker_register(E, 64, mask, NOW, &parent_worker), GS_OK);

	uint64_t *pending = malloc(sizeof(uint64_t) * MAX_TASKS * 2);
	size_t npending = 0;
	assert_non_null(pending);
	uint64_t rng = 0xfeedull ^ (uint64_t)getpid();
	uint64_t kills = 0, checked = 0, assigned = 0, rec_requeued = 0, rec_reserved = 0,
	         rec_completing = 0, drained = 0;
	uint64_t t0 = gs_test_mono_us();

	for (uint32_t round = 0; round < rounds; round++) {
		memset(logs, 0, sizeof(struct clog) * NCHILD);
		atomic_store(&flags->stop, 0);
		for (int i = 0; i < NCHILD; i++)
			atomic_store(&flags->ready[i], 0);
		for (int i = 0; i < NCHILD; i++) {
			uint64_t seed = gs_test_rand(&rng) | 1;
			pid_t pid = fork();
			if (pid == 0)
				child(i, workers[i], qids, seed);
			if (pid < 0) {
				kill_all();
				fail_msg("fork: %s", strerror(errno));
			}
			kids[i] = pid;
		}
		/* All at work, then a random delay, then the kill. */
		uint64_t tw = gs_test_mono_us();
		for (int i = 0; i < NCHILD; i++) {
			while (!atomic_load(&flags->ready[i])) {
				int status;
				if (waitpid(kids[i], &status, WNOHANG) == kids[i]) {
					kids[i] = 0;
					kill_all();
					fail_msg("child %d exited early (status %#x)", i, status);
				}
				if (gs_test_mono_us() - tw > HANG_US) {
					kill_all();
					fail_msg("child %d never started", i);
				}
				usleep(100);
			}
		}
		usleep(1000 + gs_test_below(&rng, 29001));
		int victim = (int)gs_test_below(&rng, NCHILD);
		kill(kids[victim], SIGKILL);
		kills++;
		atomic_store(&flags->stop, 1);
		for (int i = 0; i < NCHILD; i++) {
			int status = 0;
			if (wait_bounded(i, &status) != 0) {
				kill_all();
				fail_msg("round %u: child %d did not exit within 10 s: a hang",
				         round, i);
			}
			if (i == victim) {
				/* It may have finished its work before the signal. */
				if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) &&
				    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
					fail_msg("round %u: victim status %#x", round, status);
			} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				kill_all();
				fail_msg("round %u: child %d failed: status %#x", round, i, status);
			}
		}

		/* Quiescent: recover, then check. */
		gs_recovery_report rep;
		assert_int_equal(gs_engine_recover(E, &rep), GS_OK);
		rec_requeued += rep.requeued_unlinked + rep.orphans_requeued;
		rec_reserved += rep.reserved_freed;
		rec_completing += rep.completing_undone;
		assert_int_equal(rep.orphans_requeued, 0);
		char msg[256] = "";
		if (gs_engine_check(E, msg, sizeof(msg)) != GS_OK)
			fail_msg("round %u: after recovery: %s", round, msg);

		/* Every acknowledged ID is there. */
		for (int c = 0; c < NCHILD; c++) {
			uint32_t n = atomic_load_explicit(&logs[c].nsub, memory_order_acquire);
			for (uint32_t k = 0; k < n; k++)
				pending[npending++] = logs[c].sub[k];
		}
		for (size_t k = 0; k < npending; k++) {
			if (h_get(pending[k]) & F_RELEASED)
				continue;
			gs_task_info ti;
			int rc = gs_engine_task_info(E, pending[k], &ti);
			if (rc != GS_OK)
				fail_msg("round %u: acknowledged task %#llx lost (%d)", round,
				         (unsigned long long)pending[k], rc);
			if (ti.state != GS_TASK_QUEUED && ti.state != GS_TASK_ASSIGNED &&
			    ti.state != GS_TASK_RUNNING && ti.state != GS_TASK_DONE)
				fail_msg("round %u: acknowledged task %#llx is %s", round,
				         (unsigned long long)pending[k],
				         gs_task_state_name(ti.state));
			if (ti.attempt != 1)
				fail_msg("task %#llx: attempt %u", (unsigned long long)pending[k],
				         ti.attempt);
			checked++;
		}
		/* Every logged assignment is on that worker, and only once ever. */
		for (int c = 0; c < NCHILD; c++) {
			uint32_t n = atomic_load_explicit(&logs[c].nasg, memory_order_acquire);
			for (uint32_t k = 0; k < n; k++) {
				uint64_t id = logs[c].asg[k];
				uint8_t *f = h_slot(id);
				if (*f & F_ASSIGNED)
					fail_msg("round %u: task %#llx assigned twice", round,
					         (unsigned long long)id);
				*f |= F_ASSIGNED;
				gs_task_info ti;
				assert_int_equal(gs_engine_task_info(E, id, &ti), GS_OK);
				if (ti.state != GS_TASK_ASSIGNED && ti.state != GS_TASK_RUNNING &&
				    ti.state != GS_TASK_DONE)
					fail_msg("round %u: assigned task %#llx is %s", round,
					         (unsigned long long)id,
					         gs_task_state_name(ti.state));
				assert_int_equal(ti.worker, workers[c]);
				assigned++;
			}
		}

		/* Clean up what ran: every assignment, logged or not. */
		for (int c = 0; c < NCHILD; c++) {
			uint32_t n = atomic_load_explicit(&logs[c].nasg, memory_order_acquire);
			for (uint32_t k = 0; k < n; k++)
				finish_release(logs[c].asg[k]);
			uint64_t left[64];
			size_t nl;
			do {
				assert_int_equal(
				    gs_engine_worker_tasks(E, workers[c], left, 64, &nl), GS_OK);
				for (size_t k = 0; k < nl; k++) {
					if (h_get(left[k]) & F_ASSIGNED)
						fail_msg("task %#llx still assigned",
						         (unsigned long long)left[k]);
					*h_slot(left[k]) |= F_ASSIGNED;
					finish_release(left[k]);
				}
			} while (nl == 64);
			gs_worker_info wi;
			assert_int_equal(gs_engine_worker_info(E, workers[c], &wi), GS_OK);
			assert_int_equal(wi.load, 0);
		}
		/* Keep the backlog bounded: drain it now and then. */
		uint64_t queued = 0;
		for (int q = 0; q < 2; q++) {
			gs_queue_stats qs;
			assert_int_equal(gs_engine_queue_stats(E, qids[q], &qs), GS_OK);
			queued += qs.queued;
		}
		if (queued > MAX_TASKS / 2) {
			for (int q = 0; q < 2; q++) {
				gs_assignment a;
				while (gs_engine_pop_assign(E, qids[q], parent_worker, NOW, &a) ==
				       GS_OK) {
					uint8_t *f = h_slot(a.task);
					if (*f & F_ASSIGNED)
						fail_msg("task %#llx assigned twice",
						         (unsigned long long)a.task);
					*f |= F_ASSIGNED;
					finish_release(a.task);
					drained++;
				}
			}
		}
		/* What is left pending is still queued. */
		size_t keep = 0;
		for (size_t k = 0; k < npending; k++) {
			if (h_get(pending[k]) & F_RELEASED)
				continue;
			gs_task_info ti;
			assert_int_equal(gs_engine_task_info(E, pending[k], &ti), GS_OK);
			assert_int_equal(ti.state, GS_TASK_QUEUED);
			pending[keep++] = pending[k];
		}
		npending = keep;
		GS_CHECK(E);
		if (gs_test_mono_us() - t0 > 150000000u)
			fail_msg("over the time budget after %u rounds", round + 1);
	}
	printf("kill: %u rounds, %llu kills, %llu acknowledged task checks, %llu assignments "
	       "verified, %llu released, %llu drained; recovery requeued %llu, freed %llu "
	       "half-submitted, undid %llu half-finished; %.1f s\n",
	       rounds, (unsigned long long)kills, (unsigned long long)checked,
	       (unsigned long long)assigned, (unsigned long long)n_released,
	       (unsigned long long)drained, (unsigned long long)rec_requeued,
	       (unsigned long long)rec_reserved, (unsigned long long)rec_completing,
	       (double)(gs_test_mono_us() - t0) / 1e6);
	assert_true(assigned > 0);
	free(pending);
	gs_engine_close(E, true);
	E = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(t_kill, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
