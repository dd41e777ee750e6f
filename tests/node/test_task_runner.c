/* test_task_runner.c - the task runner against real processes. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gs_error.h"
#include "task_runner.h"

/* ---- result collection ---------------------------------------------------- */

struct got {
	struct gs_runner_result r; /* pointers replaced by our copies */
	char *out, *err, *error;
	int64_t mono_us; /* when the callback ran */
};

struct collector {
	struct got *v;
	size_t n, cap;
	/* optional: a chain of echo tasks started from the callback */
	struct gs_runner *runner;
	unsigned chain_left;
	uint64_t chain_next_id;
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void on_result(void *arg, const struct gs_runner_result *res)
{
	struct collector *c = arg;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		assert_non_null(c->v);
	}
	struct got *g = &c->v[c->n++];
	g->r = *res;
	g->out = dup_bytes(res->output, res->output_len);
	g->err = dup_bytes(res->err_output, res->err_output_len);
	assert_non_null(res->error);
	g->error = strdup(res->error);
	g->r.output = NULL;
	g->r.err_output = NULL;
	g->r.error = NULL;
	g->mono_us = mono_us();
	if (c->runner && c->chain_left > 0) {
		/* Starting from inside the callback is allowed. */
		char payload[32];
		int len = snprintf(payload, sizeof(payload), "chain-%llu",
		                   (unsigned long long)c->chain_next_id);
		struct gs_runner_task t = {.task_id = c->chain_next_id,
		                           .handler = "echo",
		                           .payload = payload,
		                           .payload_len = (size_t)len};
		assert_int_equal(gs_runner_start(c->runner, &t), GS_OK);
		c->chain_next_id++;
		c->chain_left--;
	}
}

static void collector_free(struct collector *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].out);
		free(c->v[i].err);
		free(c->v[i].error);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static const struct got *got_find(const struct collector *c, uint64_t id)
{
	const struct got *found = NULL;
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].r.task_id == id) {
			assert_null(found); /* exactly once */
			found = &c->v[i];
		}
	}
	return found;
}

/* Polls until `want` results in total or `ms` elapsed; returns the count. */
static size_t wait_for(struct gs_runner *r, struct collector *c, size_t want, int ms)
{
	int64_t end = mono_us() + (int64_t)ms * 1000;
	while (c->n < want) {
		int64_t left = (end - mono_us()) / 1000;
		if (left <= 0)
			break;
		assert_true(gs_runner_poll(r, (int)(left > 100 ? 100 : left)) >= 0);
	}
	return c->n;
}

/* Set by the group setup: run the group with waitid polling, not pidfds. */
static bool poll_children;

static int setup_pidfd(void **state)
{
	(void)state;
	poll_children = false;
	return 0;
}

static int setup_polling(void **state)
{
	(void)state;
	poll_children = true;
	return 0;
}

static struct gs_runner *make(struct collector *c, unsigned slots, size_t max_output)
{
	memset(c, 0, sizeof(*c));
	struct gs_runner_config cfg = {.slots = slots,
	                               .max_output = max_output,
	                               .on_result = on_result,
	                               .arg = c,
	                               .poll_children = poll_children};
	struct gs_runner *r = NULL;
	assert_int_equal(gs_runner_create(&cfg, &r), GS_OK);
	assert_non_null(r);
	return r;
}

/* After destroy: the runner left no child of ours, zombie or alive. */
static void assert_no_children(void)
{
	errno = 0;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static int start_argv(struct gs_runner *r, uint64_t id, const char *const *argv,
                      uint64_t timeout_ms)
{
	struct gs_runner_task t = {
	    .task_id = id, .attempt = 1, .argv = argv, .timeout_ms = timeout_ms};
	return gs_runner_start(r, &t);
}

static int start_handler(struct gs_runner *r, uint64_t id, const char *h, const char *payload,
                         uint64_t timeout_ms)
{
	struct gs_runner_task t = {.task_id = id,
	                           .attempt = 2,
	                           .handler = h,
	                           .payload = payload,
	                           .payload_len = payload ? strlen(payload) : 0,
	                           .timeout_ms = timeout_ms};
	return gs_runner_start(r, &t);
}

/* A process is gone for good: not alive, not a zombie (absent from /proc). */
static int gone_within(pid_t pid, int ms)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int64_t end = mono_us() + (int64_t)ms * 1000;
	do {
		FILE *f = fopen(path, "r");
		if (!f)
			return 1;
		char buf[512] = {0};
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		const char *rp = n ? strrchr(buf, ')') : NULL;
		if (rp && rp[1] == ' ' && rp[2] == 'Z')
			return 1; /* dead; a zombie of someone else's (reparented) */
		usleep(10000);
	} while (mono_us() < end);
	return 0;
}

/* Members of process group pgid that are not zombies, from /proc. */
static int group_alive(pid_t pgid)
{
	DIR *d = opendir("/proc");
	assert_non_null(d);
	int alive = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[300], buf[512] = {0};
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		const char *rp = n ? strrchr(buf, ')') : NULL;
		char st = 0;
		int ppid = 0, pgrp = 0;
		if (rp && sscanf(rp + 1, " %c %d %d", &st, &ppid, &pgrp) == 3 && pgrp == pgid &&
		    st != 'Z')
			alive++;
	}
	closedir(d);
	return alive;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_create_bad_config(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = NULL;
	struct gs_runner_config cfg = {.slots = 0, .on_result = on_result, .arg = &c};
	assert_int_equal(gs_runner_create(&cfg, &r), GS_EINVAL);
	cfg.slots = GS_RUNNER_MAX_SLOTS + 1;
	assert_int_equal(gs_runner_create(&cfg, &r), GS_EINVAL);
	cfg.slots = 4;
	cfg.on_result = NULL;
	assert_int_equal(gs_runner_create(&cfg, &r), GS_EINVAL);
	assert_int_equal(gs_runner_create(NULL, &r), GS_EINVAL);
	assert_null(r);
	gs_runner_destroy(NULL);
	assert_int_equal(gs_runner_poll(NULL, 0), GS_EINVAL);
}

/* 200 shell tasks, each with its own value, through 4 slots. */
static void test_many_shell_tasks(void **state)
{
	(void)state;
	enum { N = 200, SLOTS = 4 };
	struct collector c;
	struct gs_runner *r = make(&c, SLOTS, 0);
	static const char *const argv[] = {"sh", "-c", "echo \"$X\"", NULL};
	char envs[N][32];
	unsigned next = 0, fulls = 0, max_busy = 0;
	int64_t t0 = mono_us(), end = t0 + 60 * 1000000LL;
	while (c.n < N && mono_us() < end) {
		while (next < N) {
			snprintf(envs[next], sizeof(envs[next]), "X=value-%u", next);
			const char *env[] = {envs[next], NULL};
			struct gs_runner_task t = {
			    .task_id = 1000 + next, .attempt = next % 7, .argv = argv, .env = env};
			int rc = gs_runner_start(r, &t);
			if (rc == GS_EFULL) {
				fulls++;
				break;
			}
			assert_int_equal(rc, GS_OK);
			next++;
		}
		if (gs_runner_busy(r) > max_busy)
			max_busy = gs_runner_busy(r);
		assert_true(gs_runner_poll(r, 100) >= 0);
	}
	int64_t took = mono_us() - t0;
	assert_int_equal(c.n, N);
	for (unsigned i = 0; i < N; i++) {
		const struct got *g = got_find(&c, 1000 + i);
		assert_non_null(g);
		char want[32];
		snprintf(want, sizeof(want), "value-%u\n", i);
		assert_string_equal(g->out, want);
		assert_int_equal(g->r.state, GS_RUN_DONE);
		assert_int_equal(g->r.exit_code, 0);
		assert_int_equal(g->r.attempt, i % 7);
		assert_string_equal(g->error, "");
		assert_int_equal(g->r.err_output_len, 0);
		assert_true(g->r.started_us > 1600000000000000LL);
		assert_true(g->r.finished_us >= g->r.started_us);
	}
	assert_int_equal(max_busy, SLOTS);
	assert_true(fulls > 0);
	assert_int_equal(gs_runner_busy(r), 0);
	printf("# %d sh tasks through %d slots: %.1f ms (%.0f tasks/s), GS_EFULL %u times\n", N,
	       SLOTS, took / 1000.0, N / (took / 1e6), fulls);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_exit_codes_signals_stderr(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 8, 0);
	static const char *const a_true[] = {"true", NULL};
	static const char *const a_exit3[] = {"sh", "-c", "exit 3", NULL};
	static const char *const a_term[] = {"sh", "-c", "kill -TERM $$; sleep 5", NULL};
	static const char *const a_usr1[] = {"sh", "-c", "kill -USR1 $$; sleep 5", NULL};
	static const char *const a_both[] = {"sh", "-c", "echo out; echo err >&2; echo more", NULL};
	static const char *const a_stdin[] = {"cat", NULL}; /* stdin is /dev/null: EOF */
	assert_int_equal(start_argv(r, 1, a_true, 0), GS_OK);
	assert_int_equal(start_argv(r, 2, a_exit3, 0), GS_OK);
	assert_int_equal(start_argv(r, 3, a_term, 0), GS_OK);
	assert_int_equal(start_argv(r, 4, a_usr1, 0), GS_OK);
	assert_int_equal(start_argv(r, 5, a_both, 0), GS_OK);
	assert_int_equal(start_argv(r, 6, a_stdin, 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 6, 10000), 6);

	const struct got *g = got_find(&c, 1);
	assert_int_equal(g->r.state, GS_RUN_DONE);
	assert_int_equal(g->r.exit_code, 0);
	assert_int_equal(g->r.term_signal, 0);

	g = got_find(&c, 2);
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_int_equal(g->r.exit_code, 3);
	assert_string_equal(g->error, "exited with code 3");

	g = got_find(&c, 3);
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_int_equal(g->r.exit_code, -1);
	assert_int_equal(g->r.term_signal, SIGTERM);
	assert_string_equal(g->error, "killed by signal 15 (TERM)");
	assert_false(g->r.timed_out);
	assert_false(g->r.cancelled);

	g = got_find(&c, 4);
	assert_int_equal(g->r.term_signal, SIGUSR1);

	g = got_find(&c, 5);
	assert_int_equal(g->r.state, GS_RUN_DONE);
	assert_string_equal(g->out, "out\nmore\n");
	assert_string_equal(g->err, "err\n");

	g = got_find(&c, 6);
	assert_int_equal(g->r.state, GS_RUN_DONE);
	assert_int_equal(g->r.output_len, 0);

	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_output_bounds(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 4, 1000);
	static const char *const a_big[] = {"head", "-c", "300000", "/dev/zero", NULL};
	static const char *const a_bigerr[] = {"sh", "-c", "head -c 5000 /dev/zero >&2; echo ok",
	                                       NULL};
	static const char *const a_exact[] = {"head", "-c", "1000", "/dev/zero", NULL};
	assert_int_equal(start_argv(r, 1, a_big, 0), GS_OK);
	assert_int_equal(start_argv(r, 2, a_bigerr, 0), GS_OK);
	assert_int_equal(start_argv(r, 3, a_exact, 0), GS_OK);
	assert_int_equal(start_handler(r, 4, "echo", "x123456789x123456789", 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 4, 10000), 4);

	const struct got *g = got_find(&c, 1);
	assert_int_equal(g->r.state, GS_RUN_DONE); /* drained, never blocked */
	assert_int_equal(g->r.output_len, 1000);
	assert_true(g->r.truncated);
	assert_false(g->r.stderr_truncated);

	g = got_find(&c, 2);
	assert_string_equal(g->out, "ok\n");
	assert_false(g->r.truncated);
	assert_int_equal(g->r.err_output_len, 1000);
	assert_true(g->r.stderr_truncated);

	g = got_find(&c, 3);
	assert_int_equal(g->r.output_len, 1000);
	assert_false(g->r.truncated);
	gs_runner_destroy(r);
	collector_free(&c);

	/* Under a large bound, more than a pipe's capacity arrives whole. */
	r = make(&c, 2, 1 << 20);
	assert_int_equal(start_argv(r, 1, a_big, 0), GS_OK);
	assert_int_equal(start_handler(r, 2, "echo", "x123456789x123456789", 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 2, 10000), 2);
	g = got_find(&c, 1);
	assert_int_equal(g->r.output_len, 300000);
	assert_false(g->r.truncated);
	for (size_t i = 0; i < 300000; i++)
		if (g->out[i] != 0)
			fail_msg("byte %zu is %d", i, g->out[i]);
	gs_runner_destroy(r);
	collector_free(&c);

	r = make(&c, 2, 5);
	assert_int_equal(start_handler(r, 1, "echo", "0123456789", 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 1, 5000), 1);
	assert_string_equal(c.v[0].out, "01234");
	assert_true(c.v[0].r.truncated);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_timeout(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 4, 0);
	static const char *const a_sleep[] = {"sleep", "30", NULL};
	/* The background sleep is in the task's process group and holds the pipe. */
	static const char *const a_tree[] = {"sh", "-c", "sleep 30 & echo $!; wait", NULL};
	int64_t t0 = mono_us();
	assert_int_equal(start_argv(r, 1, a_sleep, 200), GS_OK);
	assert_int_equal(start_argv(r, 2, a_tree, 300), GS_OK);
	assert_int_equal(start_handler(r, 3, "sleep", "5000", 100), GS_OK);
	assert_int_equal(wait_for(r, &c, 3, 5000), 3);

	const struct got *g = got_find(&c, 1);
	int64_t took = g->mono_us - t0;
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_true(g->r.timed_out);
	assert_false(g->r.cancelled);
	assert_int_equal(g->r.term_signal, SIGKILL);
	assert_string_equal(g->error, "timeout after 200 ms");
	assert_true(took >= 200000);
	assert_true(took < 3000000);
	printf("# sleep 30 with timeout 200 ms reported after %.1f ms\n", took / 1000.0);

	g = got_find(&c, 2);
	assert_true(g->r.timed_out);
	assert_string_equal(g->error, "timeout after 300 ms");
	pid_t bg = (pid_t)atoi(g->out);
	assert_true(bg > 1);
	assert_true(gone_within(bg, 2000)); /* the whole group was killed */

	g = got_find(&c, 3);
	assert_true(g->r.timed_out);
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_string_equal(g->error, "timeout after 100 ms");
	assert_true(g->mono_us - t0 < 3000000);

	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

/* A background process of a finished task neither delays its result nor
 * outlives it. */
static void test_leader_exit_kills_group(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 2, 0);
	static const char *const a[] = {"sh", "-c", "sleep 30 & echo $!", NULL};
	int64_t t0 = mono_us();
	assert_int_equal(start_argv(r, 1, a, 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 1, 5000), 1);
	assert_true(c.v[0].mono_us - t0 < 3000000);
	assert_int_equal(c.v[0].r.state, GS_RUN_DONE);
	pid_t bg = (pid_t)atoi(c.v[0].out);
	assert_true(bg > 1);
	assert_true(gone_within(bg, 2000));
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_cancel(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 4, 0);
	static const char *const a_sleep[] = {"sleep", "30", NULL};
	assert_int_equal(start_argv(r, 1, a_sleep, 0), GS_OK);
	assert_int_equal(start_handler(r, 2, "sleep", "10000", 0), GS_OK);
	pid_t pid = 0;
	assert_int_equal(gs_runner_task_pid(r, 1, &pid), GS_OK);
	assert_int_equal(gs_runner_task_pid(r, 2, &pid), GS_ESTATE);
	assert_int_equal(gs_runner_task_pid(r, 99, &pid), GS_ENOTFOUND);
	assert_int_equal(wait_for(r, &c, 1, 100), 0); /* both still running */

	int64_t t0 = mono_us();
	assert_int_equal(gs_runner_cancel(r, 1), GS_OK);
	assert_int_equal(gs_runner_cancel(r, 1), GS_OK); /* already being killed */
	assert_int_equal(gs_runner_cancel(r, 2), GS_OK);
	assert_int_equal(gs_runner_cancel(r, 2), GS_ESTATE); /* outcome fixed */
	assert_int_equal(gs_runner_cancel(r, 3), GS_ENOTFOUND);
	assert_int_equal(c.n, 0); /* callbacks only from poll */
	assert_int_equal(wait_for(r, &c, 2, 5000), 2);
	printf("# cancel -> both results in %.1f ms\n", (mono_us() - t0) / 1000.0);
	for (uint64_t id = 1; id <= 2; id++) {
		const struct got *g = got_find(&c, id);
		assert_int_equal(g->r.state, GS_RUN_FAILED);
		assert_true(g->r.cancelled);
		assert_false(g->r.timed_out);
		assert_string_equal(g->error, "cancelled");
		assert_true(g->mono_us - t0 < 3000000);
	}
	assert_int_equal(got_find(&c, 1)->r.term_signal, SIGKILL);
	assert_int_equal(gs_runner_cancel(r, 1), GS_ENOTFOUND); /* delivered */
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(gs_runner_busy(r), 0);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_handlers(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 8, 0);
	int64_t t0 = mono_us();
	assert_int_equal(start_handler(r, 1, "sleep", "100", 0), GS_OK);
	assert_int_equal(start_handler(r, 2, "echo", "hello", 0), GS_OK);
	assert_int_equal(start_handler(r, 3, "noop", NULL, 0), GS_OK);
	assert_int_equal(start_handler(r, 4, "sleep", "abc", 0), GS_OK);
	assert_int_equal(start_handler(r, 5, "no-such-handler", "x", 0), GS_OK);
	assert_int_equal(start_handler(r, 6, "sleep", "0", 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 6, 5000), 6);

	const struct got *sl = got_find(&c, 1), *ec = got_find(&c, 2);
	assert_int_equal(ec->r.state, GS_RUN_DONE);
	assert_string_equal(ec->out, "hello");
	assert_int_equal(ec->r.attempt, 2);
	/* The sleeping handler blocked nothing: echo came first, promptly. */
	assert_true(ec < sl);
	assert_true(ec->mono_us - t0 < 100000);
	assert_int_equal(sl->r.state, GS_RUN_DONE);
	assert_int_equal(sl->r.output_len, 0);
	assert_true(sl->mono_us - t0 >= 100000);
	assert_true(sl->r.finished_us - sl->r.started_us >= 100000);
	assert_true(sl->mono_us - t0 < 2000000);
	printf("# sleep 100 ms handler: finished after %.1f ms; concurrent echo after %.1f ms\n",
	       (sl->r.finished_us - sl->r.started_us) / 1000.0, (ec->mono_us - t0) / 1000.0);

	const struct got *g = got_find(&c, 3);
	assert_int_equal(g->r.state, GS_RUN_DONE);
	assert_int_equal(g->r.output_len, 0);
	assert_int_equal(g->r.exit_code, 0);

	g = got_find(&c, 4);
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_int_equal(g->r.exit_code, 1);
	assert_non_null(strstr(g->error, "sleep: payload must be a decimal number"));

	g = got_find(&c, 5);
	assert_int_equal(g->r.state, GS_RUN_FAILED);
	assert_string_equal(g->error, "unknown handler 'no-such-handler'");

	assert_int_equal(got_find(&c, 6)->r.state, GS_RUN_DONE);
	gs_runner_destroy(r);
	collector_free(&c);
}

static void test_spawn_failure(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 2, 0);
	static const char *const a_path[] = {"gs-no-such-command-xyz", "arg", NULL};
	static const char *const a_abs[] = {"/nonexistent/dir/cmd", NULL};
	assert_int_equal(start_argv(r, 1, a_path, 0), GS_OK);
	assert_int_equal(start_argv(r, 2, a_abs, 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 2, 5000), 2);
	for (uint64_t id = 1; id <= 2; id++) {
		const struct got *g = got_find(&c, id);
		assert_int_equal(g->r.state, GS_RUN_FAILED);
		assert_int_equal(g->r.exit_code, 127);
		assert_non_null(strstr(g->error, "No such file or directory"));
		assert_non_null(strstr(g->error, "cannot run '"));
	}
	printf("# spawn failure: \"%s\"\n", got_find(&c, 1)->error);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_refusals_change_nothing(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 2, 0);
	static const char *const a_empty[] = {NULL};
	static const char *const a_blank[] = {"", NULL};
	static const char *const a_true[] = {"true", NULL};
	assert_int_equal(start_handler(r, 1, "sleep", "10000", 0), GS_OK);
	assert_int_equal(start_argv(r, 2, (const char *const[]){"sleep", "30", NULL}, 0), GS_OK);
	assert_int_equal(gs_runner_busy(r), 2);

	assert_int_equal(start_handler(r, 3, "noop", NULL, 0), GS_EFULL);
	assert_int_equal(start_argv(r, 3, a_true, 0), GS_EFULL);
	assert_int_equal(start_handler(r, 1, "noop", NULL, 0), GS_EINVAL); /* duplicate */
	assert_int_equal(start_argv(r, 2, a_true, 0), GS_EINVAL);          /* duplicate */
	assert_int_equal(start_argv(r, 4, a_empty, 0), GS_EINVAL);
	assert_int_equal(start_argv(r, 4, a_blank, 0), GS_EINVAL);
	assert_int_equal(start_handler(r, 4, "", NULL, 0), GS_EINVAL);
	struct gs_runner_task t = {.task_id = 4};
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL); /* neither */
	t.argv = a_true;
	t.handler = "noop";
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL); /* both */
	t.handler = NULL;
	t.env = (const char *const[]){"NOEQUALS", NULL};
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL);
	t.env = (const char *const[]){"=x", NULL};
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL);
	t.env = NULL;
	t.timeout_ms = GS_RUNNER_MAX_TIMEOUT_MS + 1;
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL);
	t.timeout_ms = 0;
	t.argv = NULL;
	t.handler = "echo";
	t.payload_len = 3; /* NULL payload */
	assert_int_equal(gs_runner_start(r, &t), GS_EINVAL);
	assert_int_equal(gs_runner_start(r, NULL), GS_EINVAL);
	assert_int_equal(gs_runner_start(NULL, &t), GS_EINVAL);

	assert_int_equal(gs_runner_busy(r), 2);
	assert_int_equal(gs_runner_slots(r), 2);
	assert_int_equal(wait_for(r, &c, 1, 100), 0);

	/* Freeing a slot makes room again. */
	assert_int_equal(gs_runner_cancel(r, 1), GS_OK);
	assert_int_equal(wait_for(r, &c, 1, 5000), 1);
	assert_int_equal(start_handler(r, 3, "noop", NULL, 0), GS_OK);
	assert_int_equal(gs_runner_cancel(r, 2), GS_OK);
	assert_int_equal(wait_for(r, &c, 3, 5000), 3);
	assert_int_equal(gs_runner_busy(r), 0);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

static void test_destroy_reaps(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 8, 0);
	static const char *const a_sleep[] = {"sleep", "30", NULL};
	static const char *const a_tree[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
	pid_t pids[4];
	for (uint64_t id = 0; id < 3; id++)
		assert_int_equal(start_argv(r, id, a_sleep, 0), GS_OK);
	assert_int_equal(start_argv(r, 3, a_tree, 0), GS_OK);
	assert_int_equal(start_handler(r, 4, "sleep", "30000", 0), GS_OK);
	assert_int_equal(start_handler(r, 5, "noop", NULL, 0), GS_OK); /* undelivered */
	for (uint64_t id = 0; id < 4; id++)
		assert_int_equal(gs_runner_task_pid(r, id, &pids[id]), GS_OK);
	usleep(100000); /* let sh start its background child */
	int64_t t0 = mono_us();
	gs_runner_destroy(r);
	int64_t took = mono_us() - t0;
	assert_int_equal(c.n, 0); /* destroy calls no callback */
	for (int i = 0; i < 4; i++) {
		errno = 0;
		assert_int_equal(kill(pids[i], 0), -1);
		assert_int_equal(errno, ESRCH);
		errno = 0;
		assert_int_equal(waitpid(pids[i], NULL, WNOHANG), -1);
		assert_int_equal(errno, ECHILD);
		/* No member of the task's process group is left running. */
		int64_t end = mono_us() + 2000000; /* SIGKILLed members finish exiting */
		while (group_alive(pids[i]) > 0 && mono_us() < end)
			usleep(10000);
		assert_int_equal(group_alive(pids[i]), 0);
	}
	assert_no_children();
	printf("# destroy with 4 processes running: %.1f ms, no zombie\n", took / 1000.0);
	collector_free(&c);
}

/* Another thread wakes a runner blocked in poll. */
static void *waker(void *arg)
{
	usleep(100000);
	gs_runner_wake(arg);
	return NULL;
}

static void test_wake_and_fd(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 2, 0);
	pthread_t th;
	int64_t t0 = mono_us();
	assert_int_equal(pthread_create(&th, NULL, waker, r), 0);
	assert_int_equal(gs_runner_poll(r, 10000), 0);
	int64_t took = mono_us() - t0;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(took >= 90000);
	assert_true(took < 5000000);
	printf("# poll(10 s) woken by another thread after %.1f ms\n", took / 1000.0);

	/* The fd is quiet when idle, readable when a result waits. */
	struct pollfd pfd = {.fd = gs_runner_fd(r), .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(start_handler(r, 1, "noop", NULL, 0), GS_OK);
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	assert_int_equal(gs_runner_poll(r, 0), 1);
	assert_int_equal(poll(&pfd, 1, 0), 0);

	static const char *const a_true[] = {"true", NULL};
	assert_int_equal(start_argv(r, 2, a_true, 0), GS_OK);
	int64_t end = mono_us() + 5000000;
	while (c.n < 2 && mono_us() < end) {
		if (poll(&pfd, 1, 1000) == 1)
			assert_true(gs_runner_poll(r, 0) >= 0);
	}
	assert_int_equal(c.n, 2);
	gs_runner_destroy(r);
	collector_free(&c);
	assert_no_children();
}

/* Tasks started from inside the callback, one slot, exactly once each. */
static void test_start_from_callback(void **state)
{
	(void)state;
	struct collector c;
	struct gs_runner *r = make(&c, 1, 0);
	c.runner = r;
	c.chain_left = 50;
	c.chain_next_id = 2;
	assert_int_equal(start_handler(r, 1, "noop", NULL, 0), GS_OK);
	assert_int_equal(wait_for(r, &c, 51, 5000), 51);
	for (uint64_t id = 2; id <= 51; id++) {
		char want[32];
		snprintf(want, sizeof(want), "chain-%llu", (unsigned long long)id);
		assert_string_equal(got_find(&c, id)->out, want);
	}
	assert_int_equal(gs_runner_busy(r), 0);
	gs_runner_destroy(r);
	collector_free(&c);
}

int main(void)
{
	/* The runner needs SIGCHLD not ignored (see task_runner.h); don't
	 * inherit an ignored disposition from whoever started the test. */
	signal(SIGCHLD, SIG_DFL);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_bad_config),
	    cmocka_unit_test(test_many_shell_tasks),
	    cmocka_unit_test(test_exit_codes_signals_stderr),
	    cmocka_unit_test(test_output_bounds),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_leader_exit_kills_group),
	    cmocka_unit_test(test_cancel),
	    cmocka_unit_test(test_handlers),
	    cmocka_unit_test(test_spawn_failure),
	    cmocka_unit_test(test_refusals_change_nothing),
	    cmocka_unit_test(test_destroy_reaps),
	    cmocka_unit_test(test_wake_and_fd),
	    cmocka_unit_test(test_start_from_callback),
	};
	int failed = cmocka_run_group_tests_name("pidfd", tests, setup_pidfd, NULL);
	/* The same against the fallback for kernels without pidfd_open. */
	failed += cmocka_run_group_tests_name("waitid-polling", tests, setup_polling, NULL);
	return failed;
}
