/*
 * task_runner.h - the worker's task runner: runs up to N tasks at once.
 *
 * Owns: the tasks it accepted and everything they hold: child processes
 * (each in its own process group), their stdout/stderr pipes, pidfds, a
 * timerfd, an eventfd and an epoll fd.  A task is either
 *   - an argv task: posix_spawnp(argv) with stdin from /dev/null, stdout and
 *     stderr captured through non-blocking pipes, each bounded by max_output
 *     (bytes beyond are read and discarded, the truncated flag set); or
 *   - a built-in handler (see handlers.h) run in-process, never blocking.
 * When an argv task's main process exits, whatever is left of its process
 * group is SIGKILLed: no process outlives its task.  A process that leaves the
 * group (setsid, setpgid) is out of reach.
 *
 * Event loop: single-threaded, level-triggered epoll.  gs_runner_poll() waits on all
 * pipes, child exits (pidfd_open; when the kernel refuses a pidfd the child is
 * polled with waitid every 10 ms), timeouts and sleeps (one timerfd) and the
 * wake eventfd, then processes what is ready and delivers results.  A caller
 * with its own loop may instead watch gs_runner_fd() and call
 * gs_runner_poll(r, 0) when it is readable.
 *
 * Process-wide state: none.  No signal handler is installed and only the
 * runner's own children are waited for (by pid), so several runners and
 * other child-spawning code may coexist.  The process must not set SIGCHLD
 * to SIG_IGN (children would be reaped by the kernel; such a task is then
 * reported failed with "exit status lost").
 *
 * Results: every accepted task (gs_runner_start returned GS_OK) gets exactly
 * one result through the on_result callback, called only from inside
 * gs_runner_poll(), on the caller's thread — never from start, cancel or
 * destroy.  gs_runner_destroy() drops undelivered results.
 *
 * Buffer ownership: a struct gs_runner_result and every pointer in it are
 * valid only during the callback; copy what you keep.  Input (argv, env,
 * handler, payload) is only read during gs_runner_start and stays the
 * caller's.
 *
 * Thread-safety: a runner belongs to one thread (the worker's main thread).
 * All functions except gs_runner_wake() must be called from that thread.
 * gs_runner_wake() may be called from any thread (and from a signal handler)
 * while the runner exists.  Inside the callback the owner may call
 * gs_runner_start, gs_runner_cancel and the query functions; not
 * gs_runner_poll nor gs_runner_destroy.
 *
 * Errors: GS_OK or a negative gs_status (gs_error.h).  Bad input returns an
 * error and changes nothing; nothing here aborts.
 */
#ifndef GS_TASK_RUNNER_H
#define GS_TASK_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GS_RUNNER_MAX_SLOTS      4096
#define GS_RUNNER_DEFAULT_OUTPUT (64u * 1024u)              /* per stream, bytes */
#define GS_RUNNER_MAX_TIMEOUT_MS (30ull * 24 * 3600 * 1000) /* 30 days */

struct gs_runner;

enum gs_run_state {
	GS_RUN_DONE = 1,   /* process exited 0, or the handler succeeded */
	GS_RUN_FAILED = 2, /* anything else, including timed out and cancelled */
};

struct gs_runner_result {
	uint64_t task_id;
	uint32_t attempt;
	enum gs_run_state state;
	/* Exit status if the process exited; -1 if a signal killed it or the
	 * status was lost; 127 (not found) or 126 (other) if it could not be
	 * started; for handlers 0 on success, 1 on failure. */
	int exit_code;
	int term_signal;       /* the signal that killed the process, else 0 */
	bool timed_out;        /* killed (or the sleep dropped) at its timeout */
	bool cancelled;        /* killed (or dropped) by gs_runner_cancel */
	bool truncated;        /* output was cut at max_output */
	bool stderr_truncated; /* err_output was cut at max_output */
	const uint8_t *output; /* stdout bytes, or the handler's output */
	size_t output_len;
	const uint8_t *err_output; /* stderr bytes (argv tasks only) */
	size_t err_output_len;
	/* "" on success; otherwise why it failed: "exited with code 3",
	 * "killed by signal 9 (KILL)", "timeout after 200 ms", "cancelled",
	 * "cannot run 'x': No such file or directory", a handler's message. */
	const char *error;
	int64_t started_us;  /* CLOCK_REALTIME, microseconds since the epoch */
	int64_t finished_us; /* idem, when the outcome was fixed */
};

/* Called once per accepted task, from gs_runner_poll on the owner's thread. */
typedef void (*gs_runner_result_fn)(void *arg, const struct gs_runner_result *res);

struct gs_runner_config {
	unsigned slots;                /* concurrent tasks, 1..GS_RUNNER_MAX_SLOTS */
	size_t max_output;             /* bound per stream per task; 0 = default 64 KiB */
	gs_runner_result_fn on_result; /* required */
	void *arg;                     /* passed to on_result */
	/* Watch children by polling waitid every 10 ms instead of pidfds (the
	 * automatic fallback where pidfd_open is refused; for tests). */
	bool poll_children;
};

/* One task to start.  Exactly one of argv / handler. */
struct gs_runner_task {
	uint64_t task_id; /* unique among the runner's unfinished tasks */
	uint32_t attempt; /* echoed in the result */
	/* argv task: NULL-terminated, argv[0] non-empty, looked up in PATH. */
	const char *const *argv;
	/* Extra "KEY=VALUE" entries (NULL-terminated, may be NULL) set on top of
	 * the worker's environment for an argv task; ignored for handlers. */
	const char *const *env;
	const char *handler; /* built-in handler name, or NULL */
	const void *payload; /* handler input (argv tasks: ignored, stdin is /dev/null);
	                        NULL only when payload_len is 0 */
	size_t payload_len;
	uint64_t timeout_ms; /* 0 = none; at most GS_RUNNER_MAX_TIMEOUT_MS */
};

/* Creates a runner.  GS_EINVAL (bad config), GS_ENOMEM, GS_EIO (fd setup). */
int gs_runner_create(const struct gs_runner_config *cfg, struct gs_runner **out);

/* Kills (SIGKILL to each process group) and reaps every running task, closes
 * every fd, frees everything.  No callbacks; undelivered results are dropped.
 * NULL is a no-op. */
void gs_runner_destroy(struct gs_runner *r);

/* Accepts a task; its result arrives later through the callback (also when
 * it fails at once: spawn failure, unknown handler, bad sleep payload).
 * GS_EINVAL: no or both of argv/handler, empty argv[0] or handler name, a
 * malformed env entry, payload NULL with payload_len > 0, timeout over the
 * limit, or task_id already held by the runner.  GS_EFULL: every slot is
 * taken (a slot frees just before its result's callback).  GS_ENOMEM, GS_EIO:
 * resources; in all error cases nothing changed. */
int gs_runner_start(struct gs_runner *r, const struct gs_runner_task *task);

/* Cancels a task: SIGKILL to its process group, or drops a sleeping handler;
 * its result (cancelled, failed) follows through the callback.  GS_OK also
 * when it is already being killed.  GS_ENOTFOUND: no such task.  GS_ESTATE:
 * its outcome is already fixed (result about to be delivered). */
int gs_runner_cancel(struct gs_runner *r, uint64_t task_id);

/* Waits up to timeout_ms (-1: no limit, 0: don't wait) for something to
 * happen, processes it and delivers finished results.  May return before the
 * timeout with nothing delivered (output read, gs_runner_wake, a signal).
 * Returns the number of results delivered (>= 0), or GS_EIO. */
int gs_runner_poll(struct gs_runner *r, int timeout_ms);

/* Makes a current or the next gs_runner_poll return promptly.  Any thread,
 * async-signal-safe. */
void gs_runner_wake(struct gs_runner *r);

/* An fd that is readable whenever gs_runner_poll(r, 0) has work to do; owned
 * by the runner (do not read or close it). */
int gs_runner_fd(const struct gs_runner *r);

/* Occupied slots: running tasks plus finished ones not yet delivered. */
unsigned gs_runner_busy(const struct gs_runner *r);

/* The configured number of slots. */
unsigned gs_runner_slots(const struct gs_runner *r);

/* The pid (= process group id) of a running argv task.  GS_ENOTFOUND: no
 * such task; GS_ESTATE: it is a handler or its process has been reaped. */
int gs_runner_task_pid(const struct gs_runner *r, uint64_t task_id, pid_t *pid);

#endif /* GS_TASK_RUNNER_H */
