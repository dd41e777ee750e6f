/* task_runner.c - the worker's event-driven task runner (see task_runner.h). */
#include "task_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"
#include "handlers.h"

#define POLL_CHILD_US   10000 /* waitid polling period when there is no pidfd */
#define SCRATCH_BYTES   65536 /* one read() from a pipe */
#define READS_PER_EVENT 4     /* fairness: pipe reads per readiness event */
#define READS_AT_EXIT   64    /* bound on the final drain after the child exited */
#define MAX_EVENTS      64

/* epoll data: slot << 3 | kind. */
enum fd_kind { K_OUT = 0, K_ERR = 1, K_PIDFD = 2, K_TIMER = 3, K_WAKE = 4 };

enum task_state {
	T_FREE = 0, /* slot unused */
	T_PROC,     /* argv task whose main process has not been reaped */
	T_SLEEP,    /* handler task waiting for its delay */
	T_DONE,     /* outcome fixed, on the pending list, not yet delivered */
};

struct buf {
	uint8_t *data;
	size_t len, cap;
	bool truncated;
};

struct task {
	enum task_state state;
	uint64_t id;
	uint32_t attempt;
	pid_t pid;   /* T_PROC: the child, leader of its own process group */
	int pidfd;   /* -1: the child is polled with waitid */
	int fd[2];   /* read ends of stdout / stderr, -1 once closed */
	bool killed; /* SIGKILL sent to the group (timeout or cancel) */
	bool timed_out, cancelled;
	uint64_t timeout_ms;
	int64_t deadline_us; /* monotonic; 0 = no timeout */
	int64_t wake_us;     /* T_SLEEP: monotonic time the sleep ends */
	struct buf out, err;
	enum gs_run_state result;
	int exit_code, term_signal;
	char error[GS_HANDLERS_ERRMAX];
	int64_t started_us, finished_us;
	struct task *next; /* pending list */
};

struct gs_runner {
	unsigned slots, busy;
	size_t max_output;
	gs_runner_result_fn on_result;
	void *arg;
	int epfd, tfd, efd;
	int64_t armed_us; /* absolute monotonic time the timerfd is set to, 0 = off */
	bool in_poll;
	bool poll_children; /* never use pidfds */
	struct task *pend_head, *pend_tail;
	struct task *tasks;
	uint8_t *scratch;
};

/* ---- small helpers ------------------------------------------------------- */

static int64_t clock_us(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void buf_append(struct buf *b, size_t max, const uint8_t *data, size_t n)
{
	size_t room = max > b->len ? max - b->len : 0;
	size_t take = n < room ? n : room;
	if (take < n)
		b->truncated = true;
	if (take == 0)
		return;
	if (b->len + take > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + take)
			cap *= 2;
		if (cap > max)
			cap = max;
		uint8_t *p = realloc(b->data, cap);
		if (!p) {
			b->truncated = true; /* out of memory: drop, but keep draining */
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, take);
	b->len += take;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int epoll_add(struct gs_runner *r, int fd, uint64_t data)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
	return epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static uint64_t ev_data(const struct gs_runner *r, const struct task *t, enum fd_kind k)
{
	return ((uint64_t)(t - r->tasks) << 3) | (uint64_t)k;
}

static void close_pipe(struct gs_runner *r, struct task *t, int k)
{
	if (t->fd[k] < 0)
		return;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, t->fd[k], NULL);
	close(t->fd[k]);
	t->fd[k] = -1;
}

static void close_pidfd(struct gs_runner *r, struct task *t)
{
	if (t->pidfd < 0)
		return;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, t->pidfd, NULL);
	close(t->pidfd);
	t->pidfd = -1;
}

static void signal_efd(struct gs_runner *r)
{
	uint64_t one = 1;
	ssize_t n = write(r->efd, &one, sizeof(one));
	(void)n; /* EAGAIN: the counter is saturated, i.e. already readable */
}

static struct task *find(const struct gs_runner *r, uint64_t id)
{
	for (unsigned i = 0; i < r->slots; i++)
		if (r->tasks[i].state != T_FREE && r->tasks[i].id == id)
			return &r->tasks[i];
	return NULL;
}

/* Fixes the outcome and queues the task for delivery by gs_runner_poll. */
static void finish(struct gs_runner *r, struct task *t)
{
	t->finished_us = clock_us(CLOCK_REALTIME);
	if (t->timed_out) {
		t->result = GS_RUN_FAILED;
		snprintf(t->error, sizeof(t->error), "timeout after %llu ms",
		         (unsigned long long)t->timeout_ms);
	} else if (t->cancelled) {
		t->result = GS_RUN_FAILED;
		snprintf(t->error, sizeof(t->error), "cancelled");
	}
	t->state = T_DONE;
	t->next = NULL;
	bool was_empty = r->pend_head == NULL;
	if (r->pend_tail)
		r->pend_tail->next = t;
	else
		r->pend_head = t;
	r->pend_tail = t;
	if (was_empty && !r->in_poll)
		signal_efd(r); /* make gs_runner_fd() readable */
}

/* Reads what a pipe has, at most max_reads times; closes it at EOF. */
static void drain(struct gs_runner *r, struct task *t, int k, int max_reads)
{
	struct buf *b = k == K_OUT ? &t->out : &t->err;
	for (int i = 0; i < max_reads && t->fd[k] >= 0; i++) {
		ssize_t n = read(t->fd[k], r->scratch, SCRATCH_BYTES);
		if (n > 0) {
			buf_append(b, r->max_output, r->scratch, (size_t)n);
		} else if (n == 0) {
			close_pipe(r, t, k);
		} else if (errno == EINTR) {
			continue;
		} else {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				close_pipe(r, t, k);
			return;
		}
	}
}

static void kill_group(struct task *t)
{
	/* The unreaped leader pins its pid, so -pid is still this task's group. */
	if (kill(-t->pid, SIGKILL) != 0 && errno == ESRCH)
		kill(t->pid, SIGKILL);
	t->killed = true;
}

/* If the task's main process has exited: kill the rest of its group, reap
 * it, drain and close its pipes, fix the outcome. */
static void check_child(struct gs_runner *r, struct task *t)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	int rc;
	do {
		rc = waitid(P_PID, (id_t)t->pid, &si, WEXITED | WNOHANG | WNOWAIT);
	} while (rc != 0 && errno == EINTR);
	if (rc != 0) {
		/* ECHILD: reaped behind our back (SIGCHLD ignored?). The pid may
		 * be reused already, so no kill. */
		t->exit_code = -1;
		t->result = GS_RUN_FAILED;
		char eb[128];
		snprintf(t->error, sizeof(t->error), "exit status lost: %s",
		         strerror_r(errno, eb, sizeof(eb)));
	} else if (si.si_pid == 0) {
		return; /* still running */
	} else {
		/* The zombie leader still pins the group id: clean up the group. */
		kill(-t->pid, SIGKILL);
		int status = 0;
		pid_t w;
		do {
			w = waitpid(t->pid, &status, 0);
		} while (w < 0 && errno == EINTR);
		if (w < 0) {
			char eb[128];
			t->exit_code = -1;
			t->result = GS_RUN_FAILED;
			snprintf(t->error, sizeof(t->error), "exit status lost: %s",
			         strerror_r(errno, eb, sizeof(eb)));
		} else if (WIFEXITED(status)) {
			t->exit_code = WEXITSTATUS(status);
			t->result = t->exit_code == 0 ? GS_RUN_DONE : GS_RUN_FAILED;
			if (t->exit_code != 0)
				snprintf(t->error, sizeof(t->error), "exited with code %d",
				         t->exit_code);
		} else {
			t->exit_code = -1;
			t->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
			t->result = GS_RUN_FAILED;
			const char *abbrev = sigabbrev_np(t->term_signal);
			snprintf(t->error, sizeof(t->error), "killed by signal %d (%s)",
			         t->term_signal, abbrev ? abbrev : "?");
		}
	}
	/* Everything the process wrote is in the pipes now. */
	drain(r, t, K_OUT, READS_AT_EXIT);
	drain(r, t, K_ERR, READS_AT_EXIT);
	close_pipe(r, t, K_OUT);
	close_pipe(r, t, K_ERR);
	close_pidfd(r, t);
	finish(r, t);
}

/* Sets the timerfd to the earliest deadline, or off. */
static void rearm(struct gs_runner *r)
{
	int64_t next = INT64_MAX, now = 0;
	for (unsigned i = 0; i < r->slots; i++) {
		struct task *t = &r->tasks[i];
		if (t->state == T_PROC) {
			if (!t->killed && t->deadline_us && t->deadline_us < next)
				next = t->deadline_us;
			if (t->pidfd < 0) {
				if (!now)
					now = clock_us(CLOCK_MONOTONIC);
				if (now + POLL_CHILD_US < next)
					next = now + POLL_CHILD_US;
			}
		} else if (t->state == T_SLEEP) {
			if (t->wake_us < next)
				next = t->wake_us;
			if (t->deadline_us && t->deadline_us < next)
				next = t->deadline_us;
		}
	}
	if (next == INT64_MAX)
		next = 0;
	if (next == r->armed_us)
		return;
	struct itimerspec its;
	memset(&its, 0, sizeof(its));
	if (next) {
		its.it_value.tv_sec = next / 1000000;
		its.it_value.tv_nsec = (long)(next % 1000000) * 1000;
	}
	if (timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		r->armed_us = next;
}

/* Timeouts, sleep ends and polled children due now. */
static void run_timers(struct gs_runner *r)
{
	int64_t now = clock_us(CLOCK_MONOTONIC);
	for (unsigned i = 0; i < r->slots; i++) {
		struct task *t = &r->tasks[i];
		if (t->state == T_PROC) {
			if (!t->killed && t->deadline_us && now >= t->deadline_us) {
				t->timed_out = true;
				kill_group(t); /* reaped through its pidfd / polling */
			}
			if (t->pidfd < 0)
				check_child(r, t);
		} else if (t->state == T_SLEEP) {
			if (t->deadline_us && now >= t->deadline_us &&
			    t->deadline_us < t->wake_us) {
				t->timed_out = true;
				t->exit_code = 1;
				finish(r, t);
			} else if (now >= t->wake_us) {
				finish(r, t);
			}
		}
	}
}

/* ---- lifecycle ------------------------------------------------------------ */

int gs_runner_create(const struct gs_runner_config *cfg, struct gs_runner **out)
{
	if (!cfg || !out || !cfg->on_result || cfg->slots == 0 || cfg->slots > GS_RUNNER_MAX_SLOTS)
		return GS_EINVAL;
	struct gs_runner *r = calloc(1, sizeof(*r));
	if (!r)
		return GS_ENOMEM;
	r->slots = cfg->slots;
	r->max_output = cfg->max_output ? cfg->max_output : GS_RUNNER_DEFAULT_OUTPUT;
	r->on_result = cfg->on_result;
	r->arg = cfg->arg;
	r->poll_children = cfg->poll_children;
	r->epfd = r->tfd = r->efd = -1;
	r->tasks = calloc(cfg->slots, sizeof(*r->tasks));
	r->scratch = malloc(SCRATCH_BYTES);
	if (!r->tasks || !r->scratch) {
		gs_runner_destroy(r);
		return GS_ENOMEM;
	}
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->epfd < 0 || r->tfd < 0 || r->efd < 0 || epoll_add(r, r->tfd, K_TIMER) != 0 ||
	    epoll_add(r, r->efd, K_WAKE) != 0) {
		int e = errno;
		gs_runner_destroy(r);
		errno = e;
		return GS_EIO;
	}
	*out = r;
	return GS_OK;
}

void gs_runner_destroy(struct gs_runner *r)
{
	if (!r)
		return;
	for (unsigned i = 0; r->tasks && i < r->slots; i++) {
		struct task *t = &r->tasks[i];
		if (t->state == T_PROC) {
			kill_group(t);
			while (waitpid(t->pid, NULL, 0) < 0 && errno == EINTR)
				;
			close_pipe(r, t, K_OUT);
			close_pipe(r, t, K_ERR);
			close_pidfd(r, t);
		}
		buf_free(&t->out);
		buf_free(&t->err);
	}
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->tfd >= 0)
		close(r->tfd);
	if (r->efd >= 0)
		close(r->efd);
	free(r->tasks);
	free(r->scratch);
	free(r);
}

/* ---- start ---------------------------------------------------------------- */

static bool env_entry_ok(const char *e)
{
	const char *eq = e ? strchr(e, '=') : NULL;
	return eq && eq != e;
}

static bool same_key(const char *a, const char *b)
{
	size_t n = (size_t)(strchr(b, '=') - b);
	return strncmp(a, b, n) == 0 && a[n] == '=';
}

/* The worker's environment with the task's entries set on top (malloc'd array
 * of borrowed strings), or NULL on allocation failure. */
static char **merge_env(const char *const *extra)
{
	size_t ne = 0, nx = 0;
	while (environ && environ[ne])
		ne++;
	while (extra[nx])
		nx++;
	char **env = malloc((ne + nx + 1) * sizeof(*env));
	if (!env)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < ne; i++) {
		bool overridden = false;
		for (size_t j = 0; j < nx && !overridden; j++)
			overridden = same_key(environ[i], extra[j]);
		if (!overridden)
			env[n++] = environ[i];
	}
	for (size_t j = 0; j < nx; j++)
		env[n++] = (char *)extra[j];
	env[n] = NULL;
	return env;
}

static void start_handler(struct gs_runner *r, struct task *t, const struct gs_runner_task *spec)
{
	struct gs_handlers_out ho;
	gs_handlers_out_init(&ho, r->max_output);
	gs_handlers_run(spec->handler, spec->payload, spec->payload_len, &ho);
	t->out.data = ho.data; /* take the buffer over */
	t->out.len = ho.len;
	t->out.cap = ho.cap;
	t->out.truncated = ho.truncated;
	if (ho.error[0]) {
		memcpy(t->error, ho.error, sizeof(t->error));
		t->result = GS_RUN_FAILED;
		t->exit_code = 1;
		finish(r, t);
		return;
	}
	t->result = GS_RUN_DONE;
	if (ho.delay_ms == 0) {
		finish(r, t);
		return;
	}
	t->wake_us = clock_us(CLOCK_MONOTONIC) + (int64_t)ho.delay_ms * 1000;
	t->state = T_SLEEP;
}

/* GS_OK with the child running or the spawn failure recorded as the result;
 * an error code with nothing left behind. */
static int start_process(struct gs_runner *r, struct task *t, const struct gs_runner_task *spec)
{
	int outp[2] = {-1, -1}, errp[2] = {-1, -1};
	char **env = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ok = false, attr_ok = false;
	int rc = GS_EIO;

	if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0)
		goto out;
	/* Only our read ends are non-blocking; the child's ends stay blocking. */
	if (fcntl(outp[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(errp[0], F_SETFL, O_NONBLOCK) != 0)
		goto out;
	if (epoll_add(r, outp[0], ev_data(r, t, K_OUT)) != 0)
		goto out;
	if (epoll_add(r, errp[0], ev_data(r, t, K_ERR)) != 0) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, outp[0], NULL);
		goto out;
	}
	rc = GS_ENOMEM;
	if (spec->env && spec->env[0] && !(env = merge_env(spec->env)))
		goto out_epoll;
	if (posix_spawn_file_actions_init(&fa) != 0)
		goto out_epoll;
	fa_ok = true;
	if (posix_spawnattr_init(&attr) != 0)
		goto out_epoll;
	attr_ok = true;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, outp[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, errp[1], 2) != 0 ||
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	    /* Leak no fd of the worker (gRPC sockets...) into the task. */
	    posix_spawn_file_actions_addclosefrom_np(&fa, 3) != 0 ||
#endif
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                        POSIX_SPAWN_SETSIGDEF) != 0 ||
	    posix_spawnattr_setpgroup(&attr, 0) != 0 ||
	    posix_spawnattr_setsigmask(&attr, &none) != 0 ||
	    posix_spawnattr_setsigdefault(&attr, &all) != 0)
		goto out_epoll;

	pid_t pid;
	int err = posix_spawnp(&pid, spec->argv[0], &fa, &attr, (char *const *)spec->argv,
	                       env ? env : environ);
	if (err != 0) {
		/* Accepted, failed: reported like a shell would. */
		t->exit_code = err == ENOENT ? 127 : 126;
		t->result = GS_RUN_FAILED;
		char eb[128];
		snprintf(t->error, sizeof(t->error), "cannot run '%.100s': %s", spec->argv[0],
		         strerror_r(err, eb, sizeof(eb)));
		finish(r, t);
		rc = GS_OK;
		goto out_epoll;
	}
	close(outp[1]);
	close(errp[1]);
	t->fd[K_OUT] = outp[0];
	t->fd[K_ERR] = errp[0];
	t->pid = pid;
	t->state = T_PROC;
	/* pidfds are always close-on-exec. */
	t->pidfd = r->poll_children ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
	if (t->pidfd >= 0 && epoll_add(r, t->pidfd, ev_data(r, t, K_PIDFD)) != 0) {
		close(t->pidfd);
		t->pidfd = -1; /* fall back to polling this child */
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	return GS_OK;

out_epoll:
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, outp[0], NULL);
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, errp[0], NULL);
out:
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	free(env);
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	return rc;
}

int gs_runner_start(struct gs_runner *r, const struct gs_runner_task *spec)
{
	if (!r || !spec)
		return GS_EINVAL;
	bool has_argv = spec->argv != NULL, has_handler = spec->handler != NULL;
	if (has_argv == has_handler)
		return GS_EINVAL;
	if (has_argv && (!spec->argv[0] || !spec->argv[0][0]))
		return GS_EINVAL;
	if (has_handler && !spec->handler[0])
		return GS_EINVAL;
	if (!spec->payload && spec->payload_len > 0)
		return GS_EINVAL;
	if (spec->timeout_ms > GS_RUNNER_MAX_TIMEOUT_MS)
		return GS_EINVAL;
	for (size_t i = 0; has_argv && spec->env && spec->env[i]; i++)
		if (!env_entry_ok(spec->env[i]))
			return GS_EINVAL;
	if (find(r, spec->task_id))
		return GS_EINVAL;
	if (r->busy >= r->slots)
		return GS_EFULL;

	struct task *t = NULL;
	for (unsigned i = 0; i < r->slots && !t; i++)
		if (r->tasks[i].state == T_FREE)
			t = &r->tasks[i];
	if (!t)
		return GS_EFULL;
	memset(t, 0, sizeof(*t));
	t->id = spec->task_id;
	t->attempt = spec->attempt;
	t->pid = -1;
	t->pidfd = -1;
	t->fd[0] = t->fd[1] = -1;
	t->timeout_ms = spec->timeout_ms;
	t->started_us = clock_us(CLOCK_REALTIME);
	if (spec->timeout_ms)
		t->deadline_us = clock_us(CLOCK_MONOTONIC) + (int64_t)spec->timeout_ms * 1000;

	if (has_handler) {
		start_handler(r, t, spec);
	} else {
		int rc = start_process(r, t, spec);
		if (rc != GS_OK) {
			t->state = T_FREE;
			return rc;
		}
	}
	r->busy++;
	rearm(r);
	return GS_OK;
}

/* ---- cancel, poll, queries ---------------------------------------------- */

int gs_runner_cancel(struct gs_runner *r, uint64_t task_id)
{
	if (!r)
		return GS_EINVAL;
	struct task *t = find(r, task_id);
	if (!t)
		return GS_ENOTFOUND;
	switch (t->state) {
	case T_PROC:
		if (!t->killed) {
			t->cancelled = true;
			kill_group(t);
			rearm(r);
		}
		return GS_OK;
	case T_SLEEP:
		t->cancelled = true;
		t->exit_code = 1;
		finish(r, t);
		rearm(r);
		return GS_OK;
	default:
		return GS_ESTATE;
	}
}

static void deliver(struct gs_runner *r, struct task *t)
{
	/* Free the slot first so the callback may start a task in it; the
	 * result's buffers move to this frame. */
	struct buf out = t->out, err = t->err;
	char error[GS_HANDLERS_ERRMAX];
	memcpy(error, t->error, sizeof(error));
	struct gs_runner_result res = {
	    .task_id = t->id,
	    .attempt = t->attempt,
	    .state = t->result,
	    .exit_code = t->exit_code,
	    .term_signal = t->term_signal,
	    .timed_out = t->timed_out,
	    .cancelled = t->cancelled,
	    .truncated = out.truncated,
	    .stderr_truncated = err.truncated,
	    .output = out.data,
	    .output_len = out.len,
	    .err_output = err.data,
	    .err_output_len = err.len,
	    .error = error,
	    .started_us = t->started_us,
	    .finished_us = t->finished_us,
	};
	memset(t, 0, sizeof(*t));
	t->state = T_FREE;
	r->busy--;
	r->on_result(r->arg, &res);
	buf_free(&out);
	buf_free(&err);
}

int gs_runner_poll(struct gs_runner *r, int timeout_ms)
{
	if (!r || r->in_poll)
		return GS_EINVAL;
	struct epoll_event ev[MAX_EVENTS];
	int n = epoll_wait(r->epfd, ev, MAX_EVENTS, r->pend_head ? 0 : timeout_ms);
	if (n < 0) {
		if (errno != EINTR)
			return GS_EIO;
		n = 0;
	}
	r->in_poll = true;
	bool timers = false;
	for (int i = 0; i < n; i++) {
		enum fd_kind k = (enum fd_kind)(ev[i].data.u64 & 7);
		struct task *t = &r->tasks[ev[i].data.u64 >> 3];
		uint64_t v;
		switch (k) {
		case K_WAKE:
			while (read(r->efd, &v, sizeof(v)) < 0 && errno == EINTR)
				;
			break;
		case K_TIMER:
			while (read(r->tfd, &v, sizeof(v)) < 0 && errno == EINTR)
				;
			r->armed_us = 0;
			timers = true;
			break;
		case K_OUT:
		case K_ERR:
			/* Earlier events of this batch may have finished the task. */
			if (t->state == T_PROC && t->fd[k] >= 0)
				drain(r, t, (int)k, READS_PER_EVENT);
			break;
		case K_PIDFD:
			if (t->state == T_PROC && t->pidfd >= 0)
				check_child(r, t);
			break;
		}
	}
	if (timers)
		run_timers(r);
	rearm(r);

	/* Deliver what is pending now; results of tasks the callbacks start and
	 * finish at once wait for the next poll. */
	struct task *list = r->pend_head;
	r->pend_head = r->pend_tail = NULL;
	int delivered = 0;
	while (list) {
		struct task *t = list;
		list = t->next;
		deliver(r, t);
		delivered++;
	}
	r->in_poll = false;
	if (r->pend_head)
		signal_efd(r);
	return delivered;
}

void gs_runner_wake(struct gs_runner *r)
{
	if (r)
		signal_efd(r);
}

int gs_runner_fd(const struct gs_runner *r)
{
	return r ? r->epfd : -1;
}

unsigned gs_runner_busy(const struct gs_runner *r)
{
	return r ? r->busy : 0;
}

unsigned gs_runner_slots(const struct gs_runner *r)
{
	return r ? r->slots : 0;
}

int gs_runner_task_pid(const struct gs_runner *r, uint64_t task_id, pid_t *pid)
{
	if (!r || !pid)
		return GS_EINVAL;
	const struct task *t = find(r, task_id);
	if (!t)
		return GS_ENOTFOUND;
	if (t->state != T_PROC)
		return GS_ESTATE;
	*pid = t->pid;
	return GS_OK;
}
