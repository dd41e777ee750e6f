/*
 * test_roles.c - validates roles.h, the role processes' meeting place in the
 * segment: names, the hand-off rings (order, bounds, all-or-nothing pushes,
 * one producer and one consumer in two threads and in two processes), role
 * claims (a live holder refused, a dead one replaced and reported as a
 * restart), the pause (other roles park and stay parked until resume; a role
 * that never parks times the pause out and is let go; a dead pauser is
 * replaced; a dead role is not waited for; a role activating during a pause
 * parks first) and the doorbells; and liveness by open file description
 * locks (a recorded process ID that names another process, or a zombie,
 * does not hold a role).
 *
 * Processes are forked children sharing the engine's anonymous segment; each
 * child reports through its exit status and is killed and reaped by the test
 * that started it, also on failure.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roles.h"
#include "test_util.h"

struct fixture {
	gs_engine *e;
	gs_roles *v;
	_Atomic uint64_t *shared; /* a page shared with the children */
	pid_t child[8];
	int n_child;
	char lock_path[64]; /* t_locks: the lock file ("" when unused) */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	gs_engine_opts o = {.geom = {.max_tasks = 1024, .max_workers = 16, .arena_bytes = 1 << 20}};
	if (!f || gs_engine_create(&o, &f->e) != GS_OK)
		return -1;
	f->v = gs_engine_roles(f->e);
	f->shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (f->shared == MAP_FAILED)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < f->n_child; i++)
		if (f->child[i] > 0) {
			kill(f->child[i], SIGKILL);
			waitpid(f->child[i], NULL, 0);
		}
	munmap((void *)f->shared, 4096);
	if (f->lock_path[0])
		unlink(f->lock_path);
	gs_engine_close(f->e, false);
	free(f);
	return 0;
}

static pid_t spawn(struct fixture *f, void (*fn)(struct fixture *, int), int arg)
{
	pid_t pid = fork();
	if (pid == 0) {
		fn(f, arg);
		_exit(0);
	}
	assert_true(pid > 0);
	f->child[f->n_child++] = pid;
	return pid;
}

/* Kills and reaps a child; returns its wait status. */
static int reap(struct fixture *f, pid_t pid, bool kill_it)
{
	int st = 0;
	if (kill_it)
		kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	for (int i = 0; i < f->n_child; i++)
		if (f->child[i] == pid)
			f->child[i] = 0;
	return st;
}

/* Waits up to ms for *p to reach at least want. */
static bool wait_for(_Atomic uint64_t *p, uint64_t want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(p) >= want)
			return true;
		usleep(1000);
	}
	return atomic_load(p) >= want;
}

/* --- names --------------------------------------------------------------- */

static void t_names(void **state)
{
	(void)state;
	for (int r = 0; r < GS_ROLE_COUNT; r++) {
		enum gs_role got;
		assert_int_equal(gs_role_parse(gs_role_name((enum gs_role)r), &got), GS_OK);
		assert_int_equal(got, r);
	}
	enum gs_role got = GS_ROLE_PLM;
	assert_int_equal(gs_role_parse("Scheduler", &got), GS_EINVAL);
	assert_int_equal(gs_role_parse("", &got), GS_EINVAL);
	assert_int_equal(gs_role_parse(NULL, &got), GS_EINVAL);
	assert_null(gs_role_name(GS_ROLE_COUNT));
}

/* --- rings ---------------------------------------------------------------- */

static void t_ring_bounds(void **state)
{
	struct fixture *f = *state;
	uint64_t ids[GS_RING_CANCEL_CAP + 8], out[GS_RING_CANCEL_CAP + 8];
	for (size_t i = 0; i < GS_RING_CANCEL_CAP + 8; i++)
		ids[i] = 1000 + i;
	assert_int_equal(gs_roles_ring_free(f->v, GS_RING_CANCEL), GS_RING_CANCEL_CAP);
	assert_int_equal(gs_roles_pop(f->v, GS_RING_CANCEL, out, 8), 0);
	/* More than fits: refused whole. */
	assert_false(gs_roles_push(f->v, GS_RING_CANCEL, ids, GS_RING_CANCEL_CAP + 1));
	assert_false(gs_roles_push(f->v, GS_RING_COUNT, ids, 1));
	/* Fill it to the last entry, then one more is refused and nothing changed. */
	assert_true(gs_roles_push(f->v, GS_RING_CANCEL, ids, GS_RING_CANCEL_CAP - 2));
	assert_false(gs_roles_push(f->v, GS_RING_CANCEL, ids + GS_RING_CANCEL_CAP - 2, 3));
	assert_true(gs_roles_push(f->v, GS_RING_CANCEL, ids + GS_RING_CANCEL_CAP - 2, 2));
	assert_int_equal(gs_roles_ring_free(f->v, GS_RING_CANCEL), 0);
	assert_false(gs_roles_push(f->v, GS_RING_CANCEL, ids, 1));
	/* Everything comes out in order. */
	size_t got = 0, n;
	while ((n = gs_roles_pop(f->v, GS_RING_CANCEL, out + got, 100)) > 0)
		got += n;
	assert_int_equal(got, GS_RING_CANCEL_CAP);
	for (size_t i = 0; i < got; i++)
		assert_int_equal(out[i], ids[i]);
	/* Wrap around many times with odd-sized pushes and pops. */
	uint64_t next_in = 0, next_out = 0, rng = 7;
	for (int round = 0; round < 20000; round++) {
		size_t k = (size_t)(gs_test_rand(&rng) % 7) + 1;
		uint64_t v[8];
		for (size_t i = 0; i < k; i++)
			v[i] = next_in + i;
		if (gs_roles_push(f->v, GS_RING_CANCEL, v, k))
			next_in += k;
		size_t m =
		    gs_roles_pop(f->v, GS_RING_CANCEL, out, (size_t)(gs_test_rand(&rng) % 9));
		for (size_t i = 0; i < m; i++)
			assert_int_equal(out[i], next_out++);
	}
	while ((n = gs_roles_pop(f->v, GS_RING_CANCEL, out, 64)) > 0)
		for (size_t i = 0; i < n; i++)
			assert_int_equal(out[i], next_out++);
	assert_int_equal(next_out, next_in);
	assert_true(next_in > 20000);
	/* The overflow note is taken once. */
	assert_false(gs_roles_overflow_take(f->v, GS_RING_DONE));
	gs_roles_overflow_set(f->v, GS_RING_DONE);
	assert_true(gs_roles_overflow_take(f->v, GS_RING_DONE));
	assert_false(gs_roles_overflow_take(f->v, GS_RING_DONE));
}

struct spsc {
	gs_roles *v;
	uint64_t n;
};

static void *producer(void *arg)
{
	struct spsc *p = arg;
	uint64_t rng = 99;
	for (uint64_t i = 1; i <= p->n;) {
		uint64_t v[3] = {i, i + 1, i + 2};
		size_t k = (size_t)(gs_test_rand(&rng) % 3) + 1;
		if (i + k - 1 > p->n)
			k = (size_t)(p->n - i + 1);
		if (gs_roles_push(p->v, GS_RING_ASSIGN, v, k))
			i += k;
		else
			sched_yield();
	}
	return NULL;
}

/* Consumes until n IDs came, each the next one; returns how many were right. */
static uint64_t consume(gs_roles *v, uint64_t n, int ms)
{
	uint64_t want = 1, t_end = gs_test_mono_us() + (uint64_t)ms * 1000;
	uint64_t out[64];
	while (want <= n && gs_test_mono_us() < t_end) {
		size_t k = gs_roles_pop(v, GS_RING_ASSIGN, out, 64);
		for (size_t i = 0; i < k; i++) {
			if (out[i] != want)
				return want - 1;
			want++;
		}
		if (!k)
			sched_yield();
	}
	return want - 1;
}

static void t_ring_threads(void **state)
{
	struct fixture *f = *state;
	struct spsc p = {f->v, gs_test_count(2000000, 20)};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
	uint64_t got = consume(f->v, p.n, 60000);
	pthread_join(th, NULL);
	assert_int_equal(got, p.n);
}

static void child_producer(struct fixture *f, int n)
{
	struct spsc p = {f->v, (uint64_t)n};
	producer(&p);
}

static void t_ring_processes(void **state)
{
	struct fixture *f = *state;
	uint64_t n = gs_test_count(1000000, 10);
	pid_t pid = spawn(f, child_producer, (int)n);
	uint64_t got = consume(f->v, n, 60000);
	int st = reap(f, pid, false);
	assert_int_equal(got, n);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* --- claims ---------------------------------------------------------------- */

/* Claims role `r`, says so in shared[0], then waits to be killed. */
static void child_claim(struct fixture *f, int r)
{
	bool restart;
	if (gs_roles_claim(f->v, (enum gs_role)r, (int32_t)getpid(), NULL, &restart) != GS_OK)
		_exit(3);
	atomic_store(&f->shared[0], 1);
	for (;;)
		pause();
}

static void t_claims(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid(), holder = 0;
	bool restart = true;
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_REGISTER), 0);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_REGISTER, me, &holder, &restart), GS_OK);
	assert_false(restart);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_REGISTER), me);
	/* Claiming again as the holder is fine; a clean stop gives it back. */
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_REGISTER, me, &holder, &restart), GS_OK);
	gs_roles_unclaim(f->v, GS_ROLE_REGISTER, me);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_REGISTER), 0);
	assert_int_equal(gs_roles_starts(f->v, GS_ROLE_REGISTER), 2);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_COUNT, me, NULL, NULL), GS_EINVAL);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_PLM, 0, NULL, NULL), GS_EINVAL);

	/* A live holder is refused and named; once it died, it is replaced. */
	pid_t pid = spawn(f, child_claim, GS_ROLE_SCHEDULER);
	assert_true(wait_for(&f->shared[0], 1, 10000));
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_SCHEDULER, me, &holder, &restart), GS_EBUSY);
	assert_int_equal(holder, pid);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_SCHEDULER), pid);
	gs_roles_unclaim(f->v, GS_ROLE_SCHEDULER, me); /* not ours: nothing happens */
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_SCHEDULER), pid);
	reap(f, pid, true);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_SCHEDULER), 0);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_SCHEDULER, me, &holder, &restart), GS_OK);
	assert_true(restart);
}

/* --- the pause ------------------------------------------------------------- */

/*
 * A role process: claims `r`, activates, then "operates" (counts in
 * shared[1 + r], odd while an operation runs) and parks whenever a pause is
 * pending, between operations.  shared[0] counts
 * the parks it finished.
 */
static void child_role(struct fixture *f, int r)
{
	if (gs_roles_claim(f->v, (enum gs_role)r, (int32_t)getpid(), NULL, NULL) != GS_OK)
		_exit(3);
	gs_roles_activate(f->v, (enum gs_role)r, NULL);
	for (;;) {
		uint32_t w;
		if (gs_roles_pause_pending(f->v, 0, &w)) {
			gs_roles_park(f->v, (enum gs_role)r, w, NULL);
			atomic_fetch_add(&f->shared[0], 1);
			continue;
		}
		/* One "operation": odd while it runs, even between. */
		atomic_fetch_add(&f->shared[1 + r], 1);
		usleep(1000);
		atomic_fetch_add(&f->shared[1 + r], 1);
	}
}

static void t_pause_parks(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid();
	spawn(f, child_role, GS_ROLE_SCHEDULER);
	spawn(f, child_role, GS_ROLE_REGISTER);
	_Atomic uint64_t *sched = &f->shared[1 + GS_ROLE_SCHEDULER];
	_Atomic uint64_t *reg = &f->shared[1 + GS_ROLE_REGISTER];
	assert_true(wait_for(sched, 10, 10000) && wait_for(reg, 10, 10000));
	uint64_t pauses = gs_roles_pauses(f->v);
	for (int round = 0; round < 5; round++) {
		assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 10000, NULL), GS_OK);
		uint32_t w;
		assert_true(gs_roles_pause_pending(f->v, 0, &w));
		/* Nobody is mid-operation, and nobody operates while we hold it. */
		uint64_t s0 = atomic_load(sched), r0 = atomic_load(reg);
		assert_int_equal(s0 % 2, 0);
		assert_int_equal(r0 % 2, 0);
		usleep(30000);
		assert_int_equal(atomic_load(sched), s0);
		assert_int_equal(atomic_load(reg), r0);
		gs_roles_resume(f->v, me);
		assert_false(gs_roles_pause_pending(f->v, 0, &w));
		assert_true(wait_for(sched, s0 + 5, 10000) && wait_for(reg, r0 + 5, 10000));
	}
	assert_int_equal(gs_roles_pauses(f->v), pauses + 5);
	assert_true(wait_for(&f->shared[0], 10, 10000)); /* 2 roles x 5 parks */
}

/* A role that activates and then never parks. */
static void child_stubborn(struct fixture *f, int r)
{
	if (gs_roles_claim(f->v, (enum gs_role)r, (int32_t)getpid(), NULL, NULL) != GS_OK)
		_exit(3);
	gs_roles_activate(f->v, (enum gs_role)r, NULL);
	atomic_store(&f->shared[0], 1);
	for (;;)
		pause();
}

static void t_pause_timeout_and_dead_role(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid();
	pid_t pid = spawn(f, child_stubborn, GS_ROLE_REGISTER);
	assert_true(wait_for(&f->shared[0], 1, 10000));
	uint64_t t0 = gs_test_mono_us();
	gs_roles_blocker why = {-1, 0};
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 200, &why), GS_ETIMEOUT);
	assert_true(gs_test_mono_us() - t0 >= 190000);
	assert_int_equal(why.role, GS_ROLE_REGISTER); /* who did not park */
	assert_int_equal(why.pid, pid);
	uint32_t w;
	assert_false(gs_roles_pause_pending(f->v, 0, &w)); /* given back */
	/* Once it is dead it is not waited for. */
	reap(f, pid, true);
	t0 = gs_test_mono_us();
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 5000, NULL), GS_OK);
	assert_true(gs_test_mono_us() - t0 < 1000000);
	gs_roles_resume(f->v, me);
}

/* Takes the pause as the scheduler, says so, and waits to be killed. */
static void child_pauser(struct fixture *f, int r)
{
	if (gs_roles_pause(f->v, (enum gs_role)r, (int32_t)getpid(), 5000, NULL) != GS_OK)
		_exit(3);
	atomic_store(&f->shared[0], 1);
	for (;;)
		pause();
}

static void t_dead_pauser_replaced(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid();
	spawn(f, child_role, GS_ROLE_REGISTER);
	_Atomic uint64_t *reg = &f->shared[1 + GS_ROLE_REGISTER];
	assert_true(wait_for(reg, 10, 10000));
	pid_t pauser = spawn(f, child_pauser, GS_ROLE_SCHEDULER);
	assert_true(wait_for(&f->shared[0], 1, 10000));
	/* While the pauser lives, nobody else gets the pause; the register is parked. */
	gs_roles_blocker why = {-1, 0};
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 100, &why), GS_ETIMEOUT);
	assert_int_equal(why.role, GS_ROLE_COUNT); /* the pause itself was taken */
	assert_int_equal(why.pid, pauser);
	uint64_t r0 = atomic_load(reg);
	usleep(30000);
	assert_int_equal(atomic_load(reg), r0);
	/* It dies mid-pause: the next pauser takes over, the register stays
	 * parked until that one resumes. */
	reap(f, pauser, true);
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 5000, NULL), GS_OK);
	usleep(30000);
	assert_int_equal(atomic_load(reg), r0);
	gs_roles_resume(f->v, me);
	assert_true(wait_for(reg, r0 + 5, 10000));
}

static void t_activate_during_pause(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid();
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 1000, NULL), GS_OK);
	spawn(f, child_role, GS_ROLE_SCHEDULER);
	_Atomic uint64_t *sched = &f->shared[1 + GS_ROLE_SCHEDULER];
	usleep(100000);
	/* It claimed and activated, but parked before its first operation. */
	assert_true(gs_roles_holder(f->v, GS_ROLE_SCHEDULER) > 0);
	assert_int_equal(atomic_load(sched), 0);
	gs_roles_resume(f->v, me);
	assert_true(wait_for(sched, 5, 10000));
}

/* --- liveness by locks ------------------------------------------------------ */

/* Takes the lock file (its own descriptor), claims role r, says so, waits. */
static void child_claim_locked(struct fixture *f, int r)
{
	int fd = open(f->lock_path, O_RDWR);
	if (fd < 0 || gs_roles_set_lock_fd(f->v, fd) != GS_OK)
		_exit(4);
	if (gs_roles_claim(f->v, (enum gs_role)r, (int32_t)getpid(), NULL, NULL) != GS_OK)
		_exit(3);
	atomic_store(&f->shared[0], 1);
	for (;;)
		pause();
}

/* The same, then exits at once (left a zombie until reaped). */
static void child_claim_locked_exit(struct fixture *f, int r)
{
	int fd = open(f->lock_path, O_RDWR);
	if (fd < 0 || gs_roles_set_lock_fd(f->v, fd) != GS_OK)
		_exit(4);
	if (gs_roles_claim(f->v, (enum gs_role)r, (int32_t)getpid(), NULL, NULL) != GS_OK)
		_exit(3);
	_exit(0);
}

static void child_pauser_locked(struct fixture *f, int r)
{
	int fd = open(f->lock_path, O_RDWR);
	if (fd < 0 || gs_roles_set_lock_fd(f->v, fd) != GS_OK)
		_exit(4);
	child_pauser(f, r);
}

static void t_locks(void **state)
{
	struct fixture *f = *state;
	int32_t me = (int32_t)getpid(), holder = 0;
	bool restart = false;
	snprintf(f->lock_path, sizeof(f->lock_path), "/tmp/gs-test-roles-%d", (int)me);
	int fd = open(f->lock_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(gs_roles_set_lock_fd(f->v, -1), GS_EINVAL);

	/* A role recorded for a process ID that now names another live process
	 * (pid 1 here): held by process ID, free by lock. */
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_SCHEDULER, 1, NULL, NULL), GS_OK);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_SCHEDULER), 1);
	assert_int_equal(gs_roles_set_lock_fd(f->v, fd), GS_OK);
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_SCHEDULER), 0);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_SCHEDULER, me, &holder, &restart), GS_OK);
	assert_true(restart);

	/* A live holder's lock refuses us; a zombie's does not. */
	pid_t live = spawn(f, child_claim_locked, GS_ROLE_REGISTER);
	assert_true(wait_for(&f->shared[0], 1, 10000));
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_REGISTER), live);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_REGISTER, me, &holder, &restart), GS_EBUSY);
	assert_int_equal(holder, live);
	reap(f, live, true);
	pid_t zombie = spawn(f, child_claim_locked_exit, GS_ROLE_PLM);
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	assert_int_equal(waitid(P_PID, (id_t)zombie, &si, WEXITED | WNOWAIT), 0);
	assert_int_equal(si.si_status, 0);
	assert_int_equal(kill(zombie, 0), 0); /* still a process (a zombie) */
	assert_int_equal(gs_roles_holder(f->v, GS_ROLE_PLM), 0);
	assert_int_equal(gs_roles_claim(f->v, GS_ROLE_PLM, me, &holder, &restart), GS_OK);
	assert_true(restart);
	reap(f, zombie, false);

	/* A pauser that dies: its seat's lock goes with it. */
	gs_roles_unclaim(f->v, GS_ROLE_PLM, me);
	atomic_store(&f->shared[0], 0);
	pid_t pauser = spawn(f, child_pauser_locked, GS_ROLE_REGISTER);
	assert_true(wait_for(&f->shared[0], 1, 10000));
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 100, NULL), GS_ETIMEOUT);
	reap(f, pauser, true);
	assert_int_equal(gs_roles_pause(f->v, GS_ROLE_PLM, me, 5000, NULL), GS_OK);
	gs_roles_resume(f->v, me);
	uint32_t w;
	assert_false(gs_roles_pause_pending(f->v, 0, &w));
	close(fd);
}

/* --- doorbells ------------------------------------------------------------- */

struct ringer {
	gs_roles *v;
	int delay_ms;
};

static void *ring_later(void *arg)
{
	struct ringer *r = arg;
	usleep((useconds_t)r->delay_ms * 1000);
	gs_roles_bell_ring(r->v, GS_ROLE_SCHEDULER);
	return NULL;
}

static void t_bells(void **state)
{
	struct fixture *f = *state;
	/* A ring since the read: no sleep at all. */
	uint32_t seen = gs_roles_bell_read(f->v, GS_ROLE_SCHEDULER);
	gs_roles_bell_ring(f->v, GS_ROLE_SCHEDULER);
	uint64_t t0 = gs_test_mono_us();
	gs_roles_bell_wait(f->v, GS_ROLE_SCHEDULER, seen, 5000);
	assert_true(gs_test_mono_us() - t0 < 1000000);
	/* A ring while asleep wakes it long before the timeout. */
	seen = gs_roles_bell_read(f->v, GS_ROLE_SCHEDULER);
	struct ringer r = {f->v, 50};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, ring_later, &r), 0);
	t0 = gs_test_mono_us();
	gs_roles_bell_wait(f->v, GS_ROLE_SCHEDULER, seen, 10000);
	uint64_t took = gs_test_mono_us() - t0;
	pthread_join(th, NULL);
	assert_true(took >= 40000 && took < 5000000);
	/* Nothing rings: the timeout ends it. */
	seen = gs_roles_bell_read(f->v, GS_ROLE_SCHEDULER);
	t0 = gs_test_mono_us();
	gs_roles_bell_wait(f->v, GS_ROLE_SCHEDULER, seen, 30);
	took = gs_test_mono_us() - t0;
	assert_true(took >= 25000 && took < 5000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_names),
	    cmocka_unit_test_setup_teardown(t_ring_bounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_ring_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_ring_processes, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_claims, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_pause_parks, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_pause_timeout_and_dead_role, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_dead_pauser_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_activate_during_pause, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_locks, setup, teardown),
	    cmocka_unit_test_setup_teardown(t_bells, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
