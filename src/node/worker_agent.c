/*
 * worker_agent.c - the gsched worker agent (see worker_agent.h).
 *
 * Structure.  One struct agent per gs_worker_agent_run call, owned by the
 * caller's thread.  The only state shared with another thread is the inbox
 * (in_*, under in_mu): the session's stream thread decodes each WorkerDown
 * there and the agent's thread takes the whole list at once.  The main loop:
 *   check *stop -> take the inbox -> stop / drain progress -> (re)connect ->
 *   heartbeat and resends -> start queued tasks -> gs_runner_poll(timeout)
 * where the runner's result callback (on the same thread) encodes each
 * result and sends it at once.
 *
 * Unacknowledged results live in two lists: `unsent` (waiting for a session
 * that is registered, or for room in the stream's outbound queue) and
 * `sent` (waiting for a result_ack; resent when due).
 */
#include "worker_agent.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"
#include "gsched.pb-c.h"
#include "handlers.h"
#include "rpc_client.h"
#include "rpc_tls.h"
#include "task_runner.h"

#define CONNECT_METHOD   "/gsched.v1.WorkerService/Connect"
#define POLL_CAP_MS      50    /* *stop is checked at least this often */
#define SEND_RETRY_MS    10    /* outbound queue full: try again after this */
#define RESEND_MIN_MS    1000  /* first resend: after max(this, 2 heartbeats) */
#define RESEND_CAP_MS    60000 /* longest interval between resends of a result */
#define CLOSE_WAIT_MS    2000  /* after half-closing: wait for the server's status */
#define KILL_WAIT_MS     5000  /* after killing tasks: wait for their results */
#define MAX_MESSAGE      (4u * 1024u * 1024u)
#define RESULT_OVERHEAD  (64u * 1024u) /* room left for a result's other fields */
#define HEARTBEAT_MIN_MS 10
#define HEARTBEAT_MAX_MS 3600000

/* ---- types ---------------------------------------------------------------- */

struct inbox_item {
	struct inbox_item *next;
	Gsched__V1__WorkerDown *msg;
	bool acks_only; /* its assignments were answered on the stream thread */
};

/* A task not started yet (local FIFO): its own copy of the spec. */
struct task {
	struct task *next;
	uint64_t id;
	uint32_t attempt;
	char **argv; /* NULL-terminated, or NULL for a handler task */
	char *handler;
	uint8_t *payload;
	size_t payload_len;
	uint64_t timeout_ms;
};

/* A task held by the runner. */
struct run_entry {
	bool used;
	bool killed; /* killed by the agent itself: its result is not reported */
	uint64_t id;
	uint32_t attempt;
};

/* An encoded WorkerUp{results: [one]} waiting for its ack. */
struct pending {
	struct pending *next;
	uint64_t id;
	uint32_t attempt;
	uint8_t *bytes;
	size_t len;
	int64_t due_ms;  /* sent: when to resend */
	int interval_ms; /* sent: the current resend interval */
};

struct plist {
	struct pending *head, *tail;
	size_t n;
	size_t bytes; /* sum of len */
};

enum sess_state { S_IDLE, S_REGISTERING, S_READY };

struct agent {
	const struct gs_worker_opts *o;
	char *name;
	const char *const *queues;
	size_t n_queues;
	size_t max_output;
	int reconnect_max_ms;
	struct gs_runner *runner;
	struct gs_rpc_client *client;
	struct gs_rpc_md md[1]; /* authorization, when a token is set */
	size_t n_md;
	char *auth;       /* "Bearer <token>" (wiped when freed) */
	bool auth_failed; /* the server refused our credentials: give up */

	/* inbox: written by the stream thread, taken by the agent thread */
	pthread_mutex_t in_mu;
	/* Set by the agent thread when it holds no task and is registered and
	 * taking work: the stream thread may then answer instant handler calls
	 * itself (see answer_inline). */
	atomic_bool idle_ready;
	struct inbox_item *in_head, *in_tail;
	size_t in_work; /* items in the inbox that are not acks_only */
	bool in_bad;    /* a message could not be decoded: the stream is cancelled */
	char in_bad_why[96];
	bool in_closed;
	int in_code;
	char in_details[256];

	/* session (agent thread only) */
	struct gs_rpc_stream *stream;
	enum sess_state st;
	char local_reason[160]; /* why the agent itself dropped the session */
	int64_t reg_deadline_ms;
	uint64_t worker_id;
	int hb_ms;
	int64_t next_hb_ms;
	int backoff_ms;
	int64_t retry_at_ms;
	char last_fail[320];
	int last_fail_retry;
	bool send_blocked; /* the stream's outbound queue was full */
	bool overflow_logged;
	bool draining;
	bool stopping;
	int64_t stop_deadline_ms;

	/* tasks */
	struct run_entry *run;
	unsigned slots;
	unsigned n_running;
	struct task *fifo_head, *fifo_tail;
	size_t n_fifo;
	struct plist unsent, sent;
	/* Started notices gathered in one iteration (each a packed WorkerUp),
	 * sent in front of the results by flush_unsent. */
	uint8_t *started;
	size_t started_len, started_cap;
};

/* ---- small helpers ---------------------------------------------------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t real_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool stop_requested(const struct agent *a)
{
	return a->o->stop != NULL && __atomic_load_n(a->o->stop, __ATOMIC_ACQUIRE) != 0;
}

__attribute__((format(printf, 5, 6))) static void
emit(struct agent *a, enum gs_worker_event_kind kind, int code, int retry_ms, const char *fmt, ...)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "gsched worker: ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (!a->o->quiet)
		fprintf(stderr, "%s\n", line);
	if (a->o->on_event) {
		struct gs_worker_event ev = {kind, a->worker_id, code, retry_ms, line};
		a->o->on_event(a->o->event_arg, &ev);
	}
}

/* Copies up to max bytes of src[0..n) into dst (cap >= 4) as valid UTF-8:
 * control characters become spaces, invalid sequences '?'.  Returns the
 * length written (dst NUL-terminated); *cut is set if src was not all used. */
static size_t utf8_clean(char *dst, size_t cap, const uint8_t *src, size_t n, bool *cut)
{
	size_t o = 0, i = 0;
	while (i < n && o + 4 < cap) {
		uint8_t c = src[i];
		size_t len = c < 0x80         ? 1
		             : (c >> 5) == 6  ? 2
		             : (c >> 4) == 14 ? 3
		             : (c >> 3) == 30 ? 4
		                              : 0;
		bool ok = len > 0 && i + len <= n;
		for (size_t k = 1; ok && k < len; k++)
			ok = (src[i + k] & 0xC0) == 0x80;
		if (ok && len == 2)
			ok = c >= 0xC2; /* no overlong forms */
		if (ok && len == 3) {
			uint32_t cp = ((uint32_t)(c & 0x0F) << 12) |
			              ((uint32_t)(src[i + 1] & 0x3F) << 6) | (src[i + 2] & 0x3F);
			ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
		}
		if (ok && len == 4) {
			uint32_t cp = ((uint32_t)(c & 0x07) << 18) |
			              ((uint32_t)(src[i + 1] & 0x3F) << 12) |
			              ((uint32_t)(src[i + 2] & 0x3F) << 6) | (src[i + 3] & 0x3F);
			ok = cp >= 0x10000 && cp <= 0x10FFFF;
		}
		if (!ok) {
			dst[o++] = '?';
			i++;
		} else if (len == 1) {
			dst[o++] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
			i++;
		} else {
			memcpy(dst + o, src + i, len);
			o += len;
			i += len;
		}
	}
	dst[o] = 0;
	if (cut)
		*cut = i < n;
	return o;
}

/* ---- unacknowledged results ------------------------------------------------ */

static void plist_push(struct plist *l, struct pending *p)
{
	p->next = NULL;
	if (l->tail)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
	l->n++;
	l->bytes += p->len;
}

static struct pending *plist_pop(struct plist *l)
{
	struct pending *p = l->head;
	if (p) {
		l->head = p->next;
		if (l->head == NULL)
			l->tail = NULL;
		l->n--;
		l->bytes -= p->len;
		p->next = NULL;
	}
	return p;
}

/* Removes the entry for (id, attempt); true if found. */
static bool plist_remove(struct plist *l, uint64_t id, uint32_t attempt)
{
	struct pending *prev = NULL;
	for (struct pending *p = l->head; p; prev = p, p = p->next) {
		if (p->id != id || p->attempt != attempt)
			continue;
		if (prev)
			prev->next = p->next;
		else
			l->head = p->next;
		if (l->tail == p)
			l->tail = prev;
		l->n--;
		l->bytes -= p->len;
		free(p->bytes);
		free(p);
		return true;
	}
	return false;
}

static void plist_clear(struct plist *l)
{
	struct pending *p;
	while ((p = plist_pop(l)) != NULL) {
		free(p->bytes);
		free(p);
	}
}

/* Sends what is unsent, in order, while the session is registered: the
 * started notices and every unsent result concatenated into one message (each
 * is a packed WorkerUp, so their concatenation is one WorkerUp). */
static void flush_unsent(struct agent *a)
{
	if (a->st != S_READY)
		return;
	a->send_blocked = false;
	int64_t now = mono_ms();
	while (a->unsent.head || a->started_len) {
		/* The batch: the notices, then results while they fit one message. */
		size_t total = a->started_len, n = 0;
		struct pending *p = a->unsent.head;
		if (p && p->len > MAX_MESSAGE - a->started_len && a->started_len == 0) {
			plist_pop(&a->unsent); /* cannot ever be sent */
			emit(a, GS_WORKER_EV_NOTICE, 0, 0,
			     "dropping the result of task %016" PRIx64 ": %s", p->id,
			     gs_strerror(GS_ETOOBIG));
			free(p->bytes);
			free(p);
			continue;
		}
		for (; p && total + p->len <= MAX_MESSAGE; p = p->next, n++)
			total += p->len;
		uint8_t *buf = malloc(total ? total : 1);
		if (buf == NULL)
			return;     /* kept: retried on the next iteration */
		if (a->started_len) /* a->started is NULL until the first notice */
			memcpy(buf, a->started, a->started_len);
		size_t off = a->started_len;
		p = a->unsent.head;
		for (size_t i = 0; i < n; i++, p = p->next) {
			memcpy(buf + off, p->bytes, p->len);
			off += p->len;
		}
		int rc = gs_rpc_stream_send(a->stream, buf, total);
		free(buf);
		if (rc == GS_EFULL) {
			a->send_blocked = true;
			return;
		}
		if (rc != GS_OK)
			return; /* the stream is ending: results kept for the next session */
		a->started_len = 0;
		for (size_t i = 0; i < n; i++) {
			p = plist_pop(&a->unsent);
			if (p->interval_ms == 0)
				p->interval_ms =
				    2 * a->hb_ms > RESEND_MIN_MS ? 2 * a->hb_ms : RESEND_MIN_MS;
			p->due_ms = now + p->interval_ms;
			plist_push(&a->sent, p);
		}
	}
}

/* Takes ownership of bytes (freed on failure). */
static void result_queue(struct agent *a, uint64_t id, uint32_t attempt, uint8_t *bytes, size_t len)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		free(bytes);
		return;
	}
	p->id = id;
	p->attempt = attempt;
	p->bytes = bytes;
	p->len = len;
	while ((a->unsent.n + a->sent.n >= GS_WORKER_MAX_UNACKED ||
	        a->unsent.bytes + a->sent.bytes + len > GS_WORKER_MAX_UNACKED_BYTES) &&
	       a->sent.head) {
		struct pending *old = plist_pop(&a->sent);
		if (!a->overflow_logged) {
			emit(a, GS_WORKER_EV_NOTICE, 0, 0,
			     "too many results not acknowledged by the server: forgetting the "
			     "oldest");
			a->overflow_logged = true;
		}
		free(old->bytes);
		free(old);
	}
	plist_push(&a->unsent, p);
	/* Sent by the main loop's flush_unsent, batched with its neighbours. */
}

/* Moves the results due for a resend back to the unsent list. */
static void resend_due(struct agent *a, int64_t now)
{
	struct plist keep = {0};
	struct pending *p;
	while ((p = plist_pop(&a->sent)) != NULL) {
		if (p->due_ms <= now) {
			p->interval_ms = p->interval_ms >= RESEND_CAP_MS / 2 ? RESEND_CAP_MS
			                                                     : 2 * p->interval_ms;
			plist_push(&a->unsent, p);
		} else {
			plist_push(&keep, p);
		}
	}
	a->sent = keep;
}

/* ---- encoding ---------------------------------------------------------------- */

static uint8_t *pack_up(const Gsched__V1__WorkerUp *m, size_t *len)
{
	size_t n = gsched__v1__worker_up__get_packed_size(m);
	uint8_t *b = malloc(n ? n : 1);
	if (b)
		*len = gsched__v1__worker_up__pack(m, b);
	return b;
}

static int send_up(struct agent *a, const Gsched__V1__WorkerUp *m)
{
	size_t len = 0;
	uint8_t *b = pack_up(m, &len);
	if (b == NULL)
		return GS_ENOMEM;
	int rc = gs_rpc_stream_send(a->stream, b, len);
	free(b);
	return rc;
}

/* Encodes and queues one result. */
static void report(struct agent *a, uint64_t id, uint32_t attempt, Gsched__V1__TaskState state,
                   int exit_code, const uint8_t *out, size_t out_len, bool truncated,
                   const char *error, uint64_t started_us, uint64_t finished_us)
{
	Gsched__V1__WorkResult r = GSCHED__V1__WORK_RESULT__INIT;
	r.id = id;
	r.attempt = attempt;
	r.state = state;
	r.exit_code = exit_code;
	if (out_len > MAX_MESSAGE - RESULT_OVERHEAD) {
		out_len = MAX_MESSAGE - RESULT_OVERHEAD;
		truncated = true;
	}
	r.output.data = (uint8_t *)out;
	r.output.len = out ? out_len : 0;
	r.output_truncated = truncated;
	r.error = (char *)(error ? error : "");
	r.started_us = started_us;
	r.finished_us = finished_us;
	Gsched__V1__WorkResult *rp = &r;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_results = 1;
	up.results = &rp;
	size_t len = 0;
	uint8_t *b = pack_up(&up, &len);
	if (b == NULL) {
		emit(a, GS_WORKER_EV_NOTICE, 0, 0,
		     "out of memory: result of task %016" PRIx64 " lost", id);
		return;
	}
	result_queue(a, id, attempt, b, len);
}

static void report_failed(struct agent *a, uint64_t id, uint32_t attempt,
                          Gsched__V1__TaskState state, const char *error)
{
	report(a, id, attempt, state, -1, NULL, 0, false, error, 0, real_us());
}

/* Gathers a Started notice for the next flush (informational: if memory or
 * the stream fails, it is lost and the result still carries started_us). */
static void send_started(struct agent *a, uint64_t id, uint32_t attempt)
{
	Gsched__V1__Started st = GSCHED__V1__STARTED__INIT;
	st.id = id;
	st.attempt = attempt;
	st.started_us = real_us();
	Gsched__V1__Started *sp = &st;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_started = 1;
	up.started = &sp;
	size_t n = gsched__v1__worker_up__get_packed_size(&up);
	if (a->started_len + n > a->started_cap) {
		size_t cap = a->started_cap ? a->started_cap * 2 : 4096;
		while (cap < a->started_len + n)
			cap *= 2;
		if (cap > MAX_MESSAGE / 2)
			return;
		uint8_t *b = realloc(a->started, cap);
		if (b == NULL)
			return;
		a->started = b;
		a->started_cap = cap;
	}
	a->started_len += gsched__v1__worker_up__pack(&up, a->started + a->started_len);
}

static void send_heartbeat(struct agent *a)
{
	size_t n = a->n_running + a->n_fifo, k = 0;
	Gsched__V1__TaskRef *refs = calloc(n ? n : 1, sizeof(*refs));
	Gsched__V1__TaskRef **rp = calloc(n ? n : 1, sizeof(*rp));
	if (refs == NULL || rp == NULL) {
		free(refs);
		free(rp);
		return;
	}
	for (unsigned i = 0; i < a->slots && k < n; i++) {
		if (!a->run[i].used || a->run[i].killed)
			continue;
		gsched__v1__task_ref__init(&refs[k]);
		refs[k].id = a->run[i].id;
		refs[k].attempt = a->run[i].attempt;
		rp[k] = &refs[k];
		k++;
	}
	for (struct task *t = a->fifo_head; t && k < n; t = t->next) {
		gsched__v1__task_ref__init(&refs[k]);
		refs[k].id = t->id;
		refs[k].attempt = t->attempt;
		rp[k] = &refs[k];
		k++;
	}
	Gsched__V1__Heartbeat hb = GSCHED__V1__HEARTBEAT__INIT;
	hb.n_running = k;
	hb.running = rp;
	hb.free_slots = a->slots - a->n_running;
	hb.sent_us = real_us();
	Gsched__V1__Heartbeat *hp = &hb;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_heartbeat = 1;
	up.heartbeat = &hp;
	(void)send_up(a, &up); /* a full queue skips one beat */
	free(refs);
	free(rp);
}

/* ---- tasks --------------------------------------------------------------------- */

static void task_free(struct task *t)
{
	if (t == NULL)
		return;
	if (t->argv)
		for (char **p = t->argv; *p; p++)
			free(*p);
	free(t->argv);
	free(t->handler);
	free(t->payload);
	free(t);
}

static void fifo_clear(struct agent *a)
{
	while (a->fifo_head) {
		struct task *t = a->fifo_head;
		a->fifo_head = t->next;
		task_free(t);
	}
	a->fifo_tail = NULL;
	a->n_fifo = 0;
}

static struct run_entry *run_find(struct agent *a, uint64_t id)
{
	for (unsigned i = 0; i < a->slots; i++)
		if (a->run[i].used && a->run[i].id == id)
			return &a->run[i];
	return NULL;
}

/* A copy of an assignment's spec, or NULL with why set. */
static struct task *task_from(const Gsched__V1__Assignment *as, char *why, size_t cap)
{
	const Gsched__V1__TaskSpec *sp = as->spec;
	why[0] = 0;
	if (sp == NULL) {
		snprintf(why, cap, "invalid task: the assignment has no spec");
		return NULL;
	}
	if (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_ARGV) {
		const Gsched__V1__Argv *av = sp->argv;
		if (av == NULL || av->n_args == 0 || av->args[0] == NULL || av->args[0][0] == 0) {
			snprintf(why, cap, "invalid task: empty argv");
			return NULL;
		}
		if (av->stdin.len > 0) {
			snprintf(why, cap,
			         "invalid task: Argv.stdin is not supported by this worker");
			return NULL;
		}
	} else if (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_HANDLER) {
		const Gsched__V1__HandlerCall *h = sp->handler;
		if (h == NULL || h->name == NULL || h->name[0] == 0) {
			snprintf(why, cap, "invalid task: empty handler name");
			return NULL;
		}
	} else {
		snprintf(why, cap, "invalid task: neither argv nor handler is set");
		return NULL;
	}
	struct task *t = calloc(1, sizeof(*t));
	if (t == NULL)
		goto nomem;
	t->id = as->id;
	t->attempt = as->attempt;
	t->timeout_ms = sp->timeout_ms;
	if (t->timeout_ms > GS_RUNNER_MAX_TIMEOUT_MS)
		t->timeout_ms = GS_RUNNER_MAX_TIMEOUT_MS;
	if (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_ARGV) {
		size_t n = sp->argv->n_args;
		t->argv = calloc(n + 1, sizeof(char *));
		if (t->argv == NULL)
			goto nomem;
		for (size_t i = 0; i < n; i++) {
			t->argv[i] = strdup(sp->argv->args[i] ? sp->argv->args[i] : "");
			if (t->argv[i] == NULL)
				goto nomem;
		}
	} else {
		t->handler = strdup(sp->handler->name);
		if (t->handler == NULL)
			goto nomem;
		t->payload_len = sp->handler->payload.len;
		if (t->payload_len) {
			t->payload = malloc(t->payload_len);
			if (t->payload == NULL)
				goto nomem;
			memcpy(t->payload, sp->handler->payload.data, t->payload_len);
		}
	}
	return t;
nomem:
	task_free(t);
	snprintf(why, cap, "worker out of memory");
	return NULL;
}

/* Starts t (consumed).  Returns false if the runner had no room (t kept). */
static bool task_start(struct agent *a, struct task *t)
{
	struct run_entry *e = NULL;
	for (unsigned i = 0; i < a->slots && e == NULL; i++)
		if (!a->run[i].used)
			e = &a->run[i];
	if (e == NULL)
		return false;
	struct gs_runner_task rt = {
	    .task_id = t->id,
	    .attempt = t->attempt,
	    .argv = (const char *const *)t->argv,
	    .handler = t->handler,
	    .payload = t->payload,
	    .payload_len = t->payload_len,
	    .timeout_ms = t->timeout_ms,
	};
	int rc = gs_runner_start(a->runner, &rt);
	if (rc == GS_EFULL)
		return false;
	if (rc != GS_OK) {
		char why[128];
		snprintf(why, sizeof(why), "cannot start the task: %s", gs_strerror(rc));
		report_failed(a, t->id, t->attempt, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED, why);
		task_free(t);
		return true;
	}
	*e = (struct run_entry){.used = true, .id = t->id, .attempt = t->attempt};
	a->n_running++;
	send_started(a, t->id, t->attempt);
	task_free(t);
	return true;
}

/* Starts queued tasks while slots are free (skipping any whose ID the runner
 * still holds from an earlier attempt). */
static void fifo_start(struct agent *a)
{
	struct task *prev = NULL, *t = a->fifo_head;
	while (t && a->n_running < a->slots && a->st == S_READY) {
		struct task *next = t->next;
		if (run_find(a, t->id) != NULL) {
			prev = t;
			t = next;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			a->fifo_head = next;
		if (a->fifo_tail == t)
			a->fifo_tail = prev;
		a->n_fifo--;
		if (!task_start(a, t)) { /* put it back where it was */
			t->next = next;
			if (prev)
				prev->next = t;
			else
				a->fifo_head = t;
			if (next == NULL)
				a->fifo_tail = t;
			a->n_fifo++;
			return;
		}
		t = next;
	}
}

/* Kills every running task without reporting it. */
static void kill_all(struct agent *a)
{
	for (unsigned i = 0; i < a->slots; i++) {
		if (!a->run[i].used || a->run[i].killed)
			continue;
		a->run[i].killed = true;
		(void)gs_runner_cancel(a->runner, a->run[i].id); /* ESTATE: result imminent */
	}
}

/* Polls the runner until every killed task's result is in (bounded). */
static void wait_idle(struct agent *a, int max_ms)
{
	int64_t end = mono_ms() + max_ms;
	while (a->n_running > 0) {
		int64_t left = end - mono_ms();
		if (left <= 0)
			break;
		if (gs_runner_poll(a->runner, left < POLL_CAP_MS ? (int)left : POLL_CAP_MS) < 0)
			break;
	}
}

static void on_result(void *arg, const struct gs_runner_result *res)
{
	struct agent *a = arg;
	struct run_entry *e = run_find(a, res->task_id);
	if (e == NULL)
		return;
	bool killed = e->killed;
	uint32_t attempt = e->attempt;
	*e = (struct run_entry){0};
	a->n_running--;
	if (killed)
		return; /* the server learns of it from the session's end */

	Gsched__V1__TaskState state = GSCHED__V1__TASK_STATE__TASK_STATE_FAILED;
	if (res->state == GS_RUN_DONE)
		state = GSCHED__V1__TASK_STATE__TASK_STATE_DONE;
	else if (res->cancelled)
		state = GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED;

	char err[GS_HANDLERS_ERRMAX + 4 * GS_WORKER_STDERR_IN_ERROR + 32];
	const char *re = res->error ? res->error : "";
	size_t n = utf8_clean(err, GS_HANDLERS_ERRMAX, (const uint8_t *)re, strlen(re), NULL);
	if (state == GSCHED__V1__TASK_STATE__TASK_STATE_FAILED && res->err_output_len > 0) {
		/* The first bytes of stderr, trimmed of surrounding whitespace. */
		const uint8_t *s = res->err_output;
		size_t sl = res->err_output_len;
		while (sl && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r'))) {
			s++;
			sl--;
		}
		while (sl && (s[sl - 1] == ' ' || (s[sl - 1] >= '\t' && s[sl - 1] <= '\r')))
			sl--;
		if (sl > 0) {
			bool cut = false;
			size_t take =
			    sl < GS_WORKER_STDERR_IN_ERROR ? sl : GS_WORKER_STDERR_IN_ERROR;
			n +=
			    (size_t)snprintf(err + n, sizeof(err) - n, "%sstderr: ", n ? "; " : "");
			n += utf8_clean(err + n, sizeof(err) - n - 4, s, take, &cut);
			if (take < sl || cut || res->stderr_truncated)
				snprintf(err + n, sizeof(err) - n, "...");
		}
	}
	report(a, res->task_id, attempt, state, res->exit_code, res->output, res->output_len,
	       res->truncated, err, res->started_us > 0 ? (uint64_t)res->started_us : 0,
	       res->finished_us > 0 ? (uint64_t)res->finished_us : real_us());
}

/* ---- messages from the server ------------------------------------------------ */

/*
 * A handler call that finishes at once (noop, echo: no delay) runs right here,
 * without a runner slot, a Started notice or a wake-up: its result goes out
 * with the others of this loop turn.  Handlers are pure functions of their
 * payload, so one that asks for a delay (sleep) is simply left to the runner,
 * which runs it again.  Returns true when the task was handled.
 */
static bool run_instant(struct agent *a, const Gsched__V1__Assignment *as)
{
	const Gsched__V1__TaskSpec *sp = as->spec;
	/* It takes a free slot for no time, and jumps no queued task. */
	if (a->n_running >= a->slots || a->fifo_head != NULL)
		return false;
	if (sp == NULL || sp->body_case != GSCHED__V1__TASK_SPEC__BODY_HANDLER ||
	    sp->handler == NULL || sp->handler->name == NULL || sp->handler->name[0] == 0 ||
	    strcmp(sp->handler->name, "sleep") == 0)
		return false;
	uint64_t started = real_us();
	struct gs_handlers_out ho;
	gs_handlers_out_init(&ho, a->max_output);
	gs_handlers_run(sp->handler->name, sp->handler->payload.data, sp->handler->payload.len,
	                &ho);
	if (ho.delay_ms > 0 && ho.error[0] == 0) {
		gs_handlers_out_free(&ho);
		return false;
	}
	char err[GS_HANDLERS_ERRMAX];
	utf8_clean(err, sizeof(err), (const uint8_t *)ho.error, strlen(ho.error), NULL);
	bool failed = ho.error[0] != 0;
	report(a, as->id, as->attempt,
	       failed ? GSCHED__V1__TASK_STATE__TASK_STATE_FAILED
	              : GSCHED__V1__TASK_STATE__TASK_STATE_DONE,
	       failed ? 1 : 0, ho.data, ho.len, ho.truncated, err, started, real_us());
	gs_handlers_out_free(&ho);
	return true;
}

static void on_assignment(struct agent *a, const Gsched__V1__Assignment *as)
{
	if (a->draining || a->stopping)
		return; /* not taken: the server requeues it when the session ends */
	struct run_entry *e = run_find(a, as->id);
	if (e && e->attempt == as->attempt && !e->killed)
		return; /* duplicate */
	for (struct task *t = a->fifo_head; t; t = t->next)
		if (t->id == as->id && t->attempt == as->attempt)
			return;
	if (run_instant(a, as))
		return;
	char why[128];
	struct task *t = task_from(as, why, sizeof(why));
	if (t == NULL) {
		report_failed(a, as->id, as->attempt, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED,
		              why);
		return;
	}
	if (a->fifo_tail)
		a->fifo_tail->next = t;
	else
		a->fifo_head = t;
	a->fifo_tail = t;
	a->n_fifo++;
}

static void on_cancel(struct agent *a, const Gsched__V1__TaskRef *c)
{
	struct run_entry *e = run_find(a, c->id);
	if (e && e->attempt == c->attempt && !e->killed) {
		(void)gs_runner_cancel(a->runner, c->id); /* its result follows */
		return;
	}
	struct task *prev = NULL;
	for (struct task *t = a->fifo_head; t; prev = t, t = t->next) {
		if (t->id != c->id || t->attempt != c->attempt)
			continue;
		if (prev)
			prev->next = t->next;
		else
			a->fifo_head = t->next;
		if (a->fifo_tail == t)
			a->fifo_tail = prev;
		a->n_fifo--;
		report_failed(a, t->id, t->attempt, GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED,
		              "cancelled");
		task_free(t);
		return;
	}
	/* Unknown or already finished: nothing to do. */
}

/* Drops the session from the agent's side; its end is handled when on_close
 * has come through the inbox. */
static void session_abort(struct agent *a, const char *why)
{
	if (a->local_reason[0] == 0)
		snprintf(a->local_reason, sizeof(a->local_reason), "%s", why);
	gs_rpc_stream_cancel(a->stream);
}

/* One message from the server; acks_only: its assignments were answered
 * on the stream thread already (answer_inline). */
static void on_down(struct agent *a, const Gsched__V1__WorkerDown *m, bool acks_only)
{
	if (a->st == S_REGISTERING) {
		if (m->n_registered == 0 || m->registered[0] == NULL) {
			session_abort(
			    a, "protocol error: the server's first message has no Registered");
			return;
		}
		const Gsched__V1__Registered *r = m->registered[0];
		a->worker_id = r->worker_id;
		uint32_t hb = r->heartbeat_ms ? r->heartbeat_ms : GS_WORKER_DEFAULT_HEARTBEAT_MS;
		if (hb < HEARTBEAT_MIN_MS)
			hb = HEARTBEAT_MIN_MS;
		if (hb > HEARTBEAT_MAX_MS)
			hb = HEARTBEAT_MAX_MS;
		a->hb_ms = (int)hb;
		a->st = S_READY;
		a->backoff_ms = GS_WORKER_RECONNECT_MIN_MS;
		a->next_hb_ms = mono_ms() + a->hb_ms;
		a->last_fail[0] = 0;
		a->overflow_logged = false;
		emit(a, GS_WORKER_EV_CONNECTED, 0, 0,
		     "connected to %s as worker %016" PRIx64 " (%u slots, heartbeat %d ms)",
		     a->o->server, a->worker_id, a->slots, a->hb_ms);
		for (struct pending *p = a->unsent.head; p; p = p->next)
			p->interval_ms = 0;
		flush_unsent(a); /* results the last session did not see acknowledged */
	}
	/* Repeated fields of a batch lose their relative order: assignments
	 * first, so a cancel or a drain in the same message finds them. */
	for (size_t i = 0; !acks_only && i < m->n_assignments; i++)
		if (m->assignments[i])
			on_assignment(a, m->assignments[i]);
	for (size_t i = 0; i < m->n_cancels; i++)
		if (m->cancels[i])
			on_cancel(a, m->cancels[i]);
	for (size_t i = 0; i < m->n_result_acks; i++) {
		const Gsched__V1__TaskRef *k = m->result_acks[i];
		if (k && !plist_remove(&a->sent, k->id, k->attempt))
			plist_remove(&a->unsent, k->id, k->attempt);
	}
	if (m->n_drain > 0 && !a->draining && !a->stopping) {
		const char *why = m->drain[0] && m->drain[0]->reason ? m->drain[0]->reason : "";
		char clean[128];
		utf8_clean(clean, sizeof(clean), (const uint8_t *)why, strlen(why), NULL);
		a->draining = true;
		emit(a, GS_WORKER_EV_DRAINING, 0, 0,
		     "draining%s%s: finishing %u running and %zu queued tasks",
		     clean[0] ? ": " : "", clean, a->n_running, a->n_fifo);
	}
}

/* ---- sessions ---------------------------------------------------------------- */

/* Handlers that never ask for a delay: safe to run on the stream thread. */
static bool instant_handler(const Gsched__V1__Assignment *as)
{
	const Gsched__V1__TaskSpec *sp = as ? as->spec : NULL;
	return sp && sp->body_case == GSCHED__V1__TASK_SPEC__BODY_HANDLER && sp->handler &&
	       sp->handler->name &&
	       (strcmp(sp->handler->name, "noop") == 0 || strcmp(sp->handler->name, "echo") == 0);
}

/*
 * The latency path: a message of nothing but instant handler calls (and
 * result acks, which the server rides on assignments), arriving while the
 * agent is idle, is answered on the stream thread at once, with no
 * hand-over to the agent thread.  Its results are not kept for resending: if
 * they are lost with the connection, the server requeues the tasks (the
 * at-least-once contract), exactly as for tasks in flight.  Returns true when
 * answered.
 */
static bool answer_inline(struct agent *a, struct gs_rpc_stream *s, const Gsched__V1__WorkerDown *m)
{
	if (m->n_registered || m->n_cancels || m->n_drain || m->n_assignments == 0 ||
	    m->n_assignments > a->slots)
		return false;
	for (size_t i = 0; i < m->n_assignments; i++)
		if (!instant_handler(m->assignments[i]))
			return false;
	size_t n = m->n_assignments;
	Gsched__V1__WorkResult *res = calloc(n, sizeof(*res));
	Gsched__V1__WorkResult **rp = calloc(n, sizeof(*rp));
	struct gs_handlers_out *ho = calloc(n, sizeof(*ho));
	bool ok = res && rp && ho;
	for (size_t i = 0; ok && i < n; i++) {
		const Gsched__V1__Assignment *as = m->assignments[i];
		const Gsched__V1__HandlerCall *h = as->spec->handler;
		gsched__v1__work_result__init(&res[i]);
		res[i].id = as->id;
		res[i].attempt = as->attempt;
		res[i].started_us = real_us();
		gs_handlers_out_init(&ho[i], a->max_output);
		gs_handlers_run(h->name, h->payload.data, h->payload.len, &ho[i]);
		res[i].finished_us = real_us();
		res[i].state = ho[i].error[0] ? GSCHED__V1__TASK_STATE__TASK_STATE_FAILED
		                              : GSCHED__V1__TASK_STATE__TASK_STATE_DONE;
		res[i].exit_code = ho[i].error[0] ? 1 : 0;
		res[i].output.data = ho[i].data;
		res[i].output.len = ho[i].len;
		res[i].output_truncated = ho[i].truncated;
		res[i].error = ho[i].error; /* the handlers' own messages are ASCII */
		rp[i] = &res[i];
	}
	if (ok) {
		Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
		up.n_results = n;
		up.results = rp;
		size_t len = 0;
		uint8_t *b = pack_up(&up, &len);
		ok = b && gs_rpc_stream_send(s, b, len) == GS_OK;
		free(b);
	}
	for (size_t i = 0; ho && i < n; i++)
		gs_handlers_out_free(&ho[i]);
	free(ho);
	free(rp);
	free(res);
	return ok; /* not answered: the agent thread runs them as usual */
}

static void st_on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *bytes, size_t len)
{
	struct agent *a = ud;
	pthread_mutex_lock(&a->in_mu);
	bool bad = a->in_bad;
	pthread_mutex_unlock(&a->in_mu);
	if (bad)
		return;
	Gsched__V1__WorkerDown *m = gsched__v1__worker_down__unpack(NULL, len, bytes);
	bool answered = false;
	if (m && atomic_load_explicit(&a->idle_ready, memory_order_acquire)) {
		/* Acks waiting in the inbox do not hold the fast path up: they
		 * only stop resends, in any order. */
		pthread_mutex_lock(&a->in_mu);
		bool empty = a->in_work == 0 && !a->in_bad && !a->in_closed;
		pthread_mutex_unlock(&a->in_mu);
		answered = empty && answer_inline(a, s, m);
		if (answered && m->n_result_acks == 0) {
			gsched__v1__worker_down__free_unpacked(m, NULL);
			return;
		}
	}
	struct inbox_item *it = m ? calloc(1, sizeof(*it)) : NULL;
	pthread_mutex_lock(&a->in_mu);
	if (it) {
		it->msg = m;
		it->acks_only = answered;
		a->in_work += !answered;
		if (a->in_tail)
			a->in_tail->next = it;
		else
			a->in_head = it;
		a->in_tail = it;
	} else {
		a->in_bad = true;
		snprintf(a->in_bad_why, sizeof(a->in_bad_why),
		         m ? "out of memory" : "malformed message from the server (%zu bytes)",
		         len);
	}
	pthread_mutex_unlock(&a->in_mu);
	if (it == NULL) {
		if (m)
			gsched__v1__worker_down__free_unpacked(m, NULL);
		gs_rpc_stream_cancel(s);
	}
	/* Acks alone can wait for the agent's next turn (at most POLL_CAP_MS):
	 * no wake-up for them while the next task may be on its way. */
	if (!answered)
		gs_runner_wake(a->runner);
}

static void st_on_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	(void)s;
	struct agent *a = ud;
	pthread_mutex_lock(&a->in_mu);
	a->in_closed = true;
	a->in_code = code;
	snprintf(a->in_details, sizeof(a->in_details), "%s", details ? details : "");
	pthread_mutex_unlock(&a->in_mu);
	gs_runner_wake(a->runner);
}

static void inbox_clear(struct agent *a)
{
	pthread_mutex_lock(&a->in_mu);
	struct inbox_item *it = a->in_head;
	a->in_head = a->in_tail = NULL;
	a->in_work = 0;
	a->in_bad = false;
	a->in_bad_why[0] = 0;
	a->in_closed = false;
	a->in_code = 0;
	a->in_details[0] = 0;
	pthread_mutex_unlock(&a->in_mu);
	while (it) {
		struct inbox_item *next = it->next;
		gsched__v1__worker_down__free_unpacked(it->msg, NULL);
		free(it);
		it = next;
	}
}

static void session_open(struct agent *a)
{
	a->started_len = 0; /* notices of the last session's tasks are moot */
	static const struct gs_rpc_stream_ops ops = {st_on_message, st_on_close};
	inbox_clear(a);
	a->local_reason[0] = 0;
	a->send_blocked = false;
	int rc = gs_rpc_stream_open(a->client, CONNECT_METHOD, GS_RPC_BIDI, NULL, 0, a->md, a->n_md,
	                            0, &ops, a, &a->stream);
	if (rc != GS_OK) {
		a->stream = NULL;
		int retry = a->backoff_ms;
		a->retry_at_ms = mono_ms() + retry;
		a->backoff_ms = a->backoff_ms * 2 > a->reconnect_max_ms ? a->reconnect_max_ms
		                                                        : a->backoff_ms * 2;
		emit(a, GS_WORKER_EV_CONNECT_FAILED, 0, retry,
		     "cannot open a stream to %s: %s; retrying in %d ms", a->o->server,
		     gs_strerror(rc), retry);
		return;
	}
	a->st = S_REGISTERING;
	a->reg_deadline_ms = mono_ms() + GS_WORKER_REGISTER_TIMEOUT_MS;

	size_t nh = 0;
	while (gs_handlers_name(nh) != NULL)
		nh++;
	char **handlers = calloc(nh ? nh : 1, sizeof(char *));
	static const char *const default_queue[] = {"default"};
	Gsched__V1__Register reg = GSCHED__V1__REGISTER__INIT;
	reg.name = a->name;
	reg.slots = a->slots;
	reg.n_queues = a->n_queues ? a->n_queues : 1;
	reg.queues = (char **)(a->n_queues ? a->queues : default_queue);
	if (handlers) {
		for (size_t i = 0; i < nh; i++)
			handlers[i] = (char *)gs_handlers_name(i);
		reg.n_handlers = nh;
		reg.handlers = handlers;
	}
	reg.runs_argv = 1;
	Gsched__V1__Register *rp = &reg;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_register_ = 1;
	up.register_ = &rp;
	rc = send_up(a, &up);
	free(handlers);
	if (rc != GS_OK) {
		char why[96];
		snprintf(why, sizeof(why), "cannot send Register: %s", gs_strerror(rc));
		session_abort(a, why);
	}
}

/* The stream has ended (on_close came): clean up and plan what follows. */
static void session_end(struct agent *a, int code, const char *details, const char *bad_why)
{
	bool was_ready = a->st == S_READY;
	gs_rpc_stream_destroy(a->stream);
	a->stream = NULL;
	a->st = S_IDLE;
	inbox_clear(a); /* nothing can follow on_close, but be tidy */
	kill_all(a);
	fifo_clear(a);
	/* Unacknowledged results go to the next session, oldest first. */
	if (a->sent.head) {
		a->sent.tail->next = a->unsent.head;
		if (a->unsent.tail == NULL)
			a->unsent.tail = a->sent.tail;
		a->unsent.head = a->sent.head;
		a->unsent.n += a->sent.n;
		a->unsent.bytes += a->sent.bytes;
		a->sent = (struct plist){0};
	}

	char why[320];
	if (a->local_reason[0])
		snprintf(why, sizeof(why), "%s", a->local_reason);
	else if (bad_why && bad_why[0])
		snprintf(why, sizeof(why), "%s", bad_why);
	else
		snprintf(why, sizeof(why), "%s%s%s", gs_rpc_code_name(code), details[0] ? ": " : "",
		         details);

	if (a->stopping || a->draining) {
		emit(a, was_ready ? GS_WORKER_EV_DISCONNECTED : GS_WORKER_EV_CONNECT_FAILED, code,
		     0, "connection to %s ended: %s", a->o->server, why);
		return;
	}
	if (!was_ready && !a->local_reason[0] &&
	    (code == GS_RPC_UNAUTHENTICATED || code == GS_RPC_PERMISSION_DENIED)) {
		a->auth_failed = true;
		emit(a, GS_WORKER_EV_CONNECT_FAILED, code, 0,
		     "%s refused our credentials: %s; giving up (check --token-file)", a->o->server,
		     why);
		return;
	}
	int retry = a->backoff_ms;
	a->retry_at_ms = mono_ms() + retry;
	a->backoff_ms =
	    a->backoff_ms * 2 > a->reconnect_max_ms ? a->reconnect_max_ms : a->backoff_ms * 2;
	if (was_ready) {
		emit(a, GS_WORKER_EV_DISCONNECTED, code, retry,
		     "lost connection to %s: %s; retrying in %d ms", a->o->server, why, retry);
	} else if (strcmp(why, a->last_fail) != 0 || retry != a->last_fail_retry) {
		/* Repeated identical failures at the backoff cap are logged once. */
		emit(a, GS_WORKER_EV_CONNECT_FAILED, code, retry,
		     "cannot connect to %s: %s; retrying in %d ms", a->o->server, why, retry);
	}
	snprintf(a->last_fail, sizeof(a->last_fail), "%s", why);
	a->last_fail_retry = retry;
}

/* Takes and handles what the stream thread delivered. */
static void inbox_process(struct agent *a)
{
	pthread_mutex_lock(&a->in_mu);
	struct inbox_item *it = a->in_head;
	a->in_head = a->in_tail = NULL;
	a->in_work = 0;
	bool closed = a->in_closed;
	int code = a->in_code;
	char details[sizeof(a->in_details)], bad_why[sizeof(a->in_bad_why)];
	memcpy(details, a->in_details, sizeof(details));
	memcpy(bad_why, a->in_bad_why, sizeof(bad_why));
	bool bad = a->in_bad;
	pthread_mutex_unlock(&a->in_mu);
	while (it) {
		struct inbox_item *next = it->next;
		/* A session being dropped or already over takes nothing more. */
		if (!closed && !bad && a->local_reason[0] == 0)
			on_down(a, it->msg, it->acks_only);
		gsched__v1__worker_down__free_unpacked(it->msg, NULL);
		free(it);
		it = next;
	}
	if (closed)
		session_end(a, code, details, bad ? bad_why : NULL);
}

/* Half-closes the session after what is queued and waits (bounded) for its end. */
static void session_close(struct agent *a)
{
	if (a->stream == NULL)
		return;
	if (a->st == S_READY) {
		flush_unsent(a);
		if (gs_rpc_stream_close_send(a->stream) == GS_OK)
			(void)gs_rpc_stream_wait(a->stream, CLOSE_WAIT_MS, NULL);
	}
	gs_rpc_stream_destroy(a->stream);
	a->stream = NULL;
	a->st = S_IDLE;
	inbox_clear(a);
}

/* ---- the main loop ----------------------------------------------------------- */

static int check_opts(const struct gs_worker_opts *o)
{
	if (o == NULL || o->server == NULL || o->server[0] == 0)
		return GS_EINVAL;
	if (o->slots < 1 || o->slots > GS_RUNNER_MAX_SLOTS)
		return GS_EINVAL;
	if (o->n_queues > 0 && o->queues == NULL)
		return GS_EINVAL;
	for (size_t i = 0; i < o->n_queues; i++)
		if (o->queues[i] == NULL)
			return GS_EINVAL;
	if (o->reconnect_max_ms < 0 || o->grace_ms < 0)
		return GS_EINVAL;
	return GS_OK;
}

static char *default_name(void)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0)
		snprintf(host, sizeof(host), "worker");
	host[sizeof(host) - 1] = 0;
	char buf[300];
	snprintf(buf, sizeof(buf), "%s-%ld", host, (long)getpid());
	return strdup(buf);
}

static void agent_free(struct agent *a)
{
	if (a->stream) {
		gs_rpc_stream_destroy(a->stream);
		a->stream = NULL;
	}
	inbox_clear(a);
	gs_runner_destroy(a->runner); /* kills what is left */
	gs_rpc_client_destroy(a->client);
	gs_rpc_token_free(a->auth);
	fifo_clear(a);
	plist_clear(&a->unsent);
	plist_clear(&a->sent);
	free(a->run);
	free(a->name);
	free(a->started);
	pthread_mutex_destroy(&a->in_mu);
	free(a);
}

/* Stopping: true when done. */
static bool stop_progress(struct agent *a, int64_t now)
{
	unsigned live = 0;
	for (unsigned i = 0; i < a->slots; i++)
		live += a->run[i].used && !a->run[i].killed;
	if (live > 0 && a->stream != NULL && now < a->stop_deadline_ms)
		return false;
	if (live > 0)
		emit(a, GS_WORKER_EV_STOPPING, 0, 0, "grace period over: killing %u tasks", live);
	kill_all(a);
	wait_idle(a, KILL_WAIT_MS);
	session_close(a);
	return true;
}

/* Draining: true when done. */
static bool drain_progress(struct agent *a)
{
	if (a->stream != NULL && (a->n_running > 0 || a->n_fifo > 0))
		return false;
	kill_all(a); /* only killed leftovers, after a lost session */
	wait_idle(a, KILL_WAIT_MS);
	session_close(a);
	return true;
}

static int min_i64(int64_t x, int64_t y)
{
	return (int)(x < y ? x : y);
}

int gs_worker_agent_run(const struct gs_worker_opts *o)
{
	int rc = check_opts(o);
	if (rc != GS_OK)
		return rc;
	struct agent *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return GS_ENOMEM;
	pthread_mutex_init(&a->in_mu, NULL);
	a->o = o;
	a->slots = o->slots;
	a->queues = o->queues;
	a->n_queues = o->n_queues;
	a->max_output = o->max_output ? o->max_output : GS_RUNNER_DEFAULT_OUTPUT;
	a->reconnect_max_ms =
	    o->reconnect_max_ms ? o->reconnect_max_ms : GS_WORKER_DEFAULT_RECONNECT_MAX_MS;
	a->backoff_ms = a->reconnect_max_ms < GS_WORKER_RECONNECT_MIN_MS
	                    ? a->reconnect_max_ms
	                    : GS_WORKER_RECONNECT_MIN_MS;
	a->hb_ms = GS_WORKER_DEFAULT_HEARTBEAT_MS;
	a->name = (o->name && o->name[0]) ? strdup(o->name) : default_name();
	a->run = calloc(a->slots, sizeof(*a->run));
	if (a->name == NULL || a->run == NULL) {
		agent_free(a);
		return GS_ENOMEM;
	}
	struct gs_runner_config rc_cfg = {
	    .slots = a->slots,
	    .max_output = a->max_output,
	    .on_result = on_result,
	    .arg = a,
	};
	rc = gs_runner_create(&rc_cfg, &a->runner);
	if (rc != GS_OK) {
		a->runner = NULL;
		agent_free(a);
		return rc;
	}
	struct gs_rpc_client_opts copts = {
	    .max_message_bytes = MAX_MESSAGE,
	    .reconnect_max_ms = a->reconnect_max_ms,
	    .busy_poll_us = o->busy_poll_us,
	};
	struct gs_rpc_tls tls = {
	    .ca_file = o->tls_ca_file, .cert_file = o->tls_cert_file, .key_file = o->tls_key_file};
	if (o->tls || o->tls_ca_file || o->tls_cert_file || o->tls_key_file) {
		char why[400];
		rc = gs_rpc_tls_check(&tls, 0, why, sizeof(why));
		if (rc != GS_OK) {
			emit(a, GS_WORKER_EV_STOPPED, 0, 0, "%s", why);
			agent_free(a);
			return rc;
		}
		copts.tls = &tls;
	}
	if (o->token && o->token[0]) {
		a->auth = gs_rpc_bearer_value(o->token);
		if (a->auth == NULL) {
			agent_free(a);
			return GS_ENOMEM;
		}
		a->md[0] = (struct gs_rpc_md){.key = "authorization", .value = a->auth};
		a->n_md = 1;
	}
	rc = gs_rpc_client_create(o->server, &copts, &a->client);
	if (rc != GS_OK) {
		a->client = NULL;
		agent_free(a);
		return rc;
	}
	a->retry_at_ms = mono_ms(); /* connect at once */

	for (;;) {
		if (!a->stopping && stop_requested(a)) {
			a->stopping = true;
			a->stop_deadline_ms = mono_ms() + o->grace_ms;
			fifo_clear(a);
			emit(a, GS_WORKER_EV_STOPPING, 0, 0,
			     "stopping: %u tasks running, grace %d ms", a->n_running, o->grace_ms);
		}
		if (a->stream)
			inbox_process(a);
		if (a->auth_failed)
			break;
		int64_t now = mono_ms();
		if (a->stopping) {
			if (stop_progress(a, now))
				break;
		} else if (a->draining) {
			if (drain_progress(a))
				break;
		} else if (a->stream == NULL && now >= a->retry_at_ms) {
			session_open(a);
		}
		now = mono_ms();
		if (a->st == S_REGISTERING && now >= a->reg_deadline_ms && !a->local_reason[0]) {
			char why[96];
			snprintf(why, sizeof(why), "no Registered within %d ms",
			         GS_WORKER_REGISTER_TIMEOUT_MS);
			session_abort(a, why);
		}
		if (a->st == S_READY) {
			if (now >= a->next_hb_ms) {
				send_heartbeat(a);
				a->next_hb_ms = now + a->hb_ms;
				resend_due(a, now);
			}
			flush_unsent(a);
			if (!a->stopping)
				fifo_start(a);
		}

		int64_t until = now + POLL_CAP_MS;
		if (a->stream == NULL && !a->stopping && !a->draining)
			until = min_i64(until, a->retry_at_ms);
		if (a->st == S_REGISTERING)
			until = min_i64(until, a->reg_deadline_ms);
		if (a->st == S_READY) {
			until = min_i64(until, a->next_hb_ms);
			if (a->send_blocked)
				until = min_i64(until, now + SEND_RETRY_MS);
		}
		if (a->stopping)
			until = min_i64(until, a->stop_deadline_ms);
		int timeout = until > now ? (int)(until - now) : 0;
		/* release: the stream thread that sees true may answer on its own. */
		atomic_store_explicit(&a->idle_ready,
		                      a->st == S_READY && !a->draining && !a->stopping &&
		                          a->n_running == 0 && a->fifo_head == NULL &&
		                          a->local_reason[0] == 0,
		                      memory_order_release);
		if (gs_runner_poll(a->runner, timeout) < 0) {
			emit(a, GS_WORKER_EV_STOPPED, 0, 0, "task runner failed: %s; exiting",
			     gs_strerror(GS_EIO));
			kill_all(a);
			wait_idle(a, KILL_WAIT_MS);
			session_close(a);
			agent_free(a);
			return GS_EIO;
		}
	}
	if (a->auth_failed) {
		kill_all(a);
		wait_idle(a, KILL_WAIT_MS);
		emit(a, GS_WORKER_EV_STOPPED, 0, 0, "stopped: credentials refused");
		agent_free(a);
		return GS_EAUTH;
	}
	emit(a, GS_WORKER_EV_STOPPED, 0, 0, "%s", a->stopping ? "stopped" : "drained, leaving");
	agent_free(a);
	return GS_OK;
}
