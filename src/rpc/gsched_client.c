/*
 * gsched_client.c - the C client library over rpc_client.h (see
 * gsched_client.h).  Requests are written by hand (a small protobuf writer
 * below: the hot path is one TaskSpec per stream submit); replies are decoded
 * with protobuf-c.
 */
#include "gsched_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gsched.pb-c.h"
#include "rpc_client.h"
#include "rpc_tls.h"

#define SVC_TASK  "/gsched.v1.TaskService/"
#define SVC_ADMIN "/gsched.v1.AdminService/"
#define HEALTH    "/grpc.health.v1.Health/Check"

/* Wait calls carry at most this many IDs (replies hold outputs). */
#define WAIT_CHUNK 32

struct gs_client {
	struct gs_rpc_client *rpc;
	char *addr;
	struct gs_rpc_md md[1]; /* authorization, when a token is set */
	size_t n_md;
	char *auth; /* "Bearer <token>" (wiped when closed) */
	int call_timeout_ms;
	pthread_mutex_t mu; /* err */
	char err[512];
};

struct gs_client_stream {
	struct gs_client *c;
	struct gs_rpc_stream *rpc;
	gs_client_ack_fn on_ack;
	gs_client_result_fn on_result;
	gs_client_event_fn on_event; /* a Watch */
	void (*on_ready)(void *ud);
	const char *method; /* for messages */
	void *ud;
	pthread_mutex_t mu;
	int code;
	bool ended;
	char err[512];
};

/* --- a small protobuf writer ------------------------------------------ */

struct pbw {
	uint8_t *d;
	size_t len, cap;
	bool oom;
	uint8_t stack[512];
};

static void pbw_init(struct pbw *w)
{
	w->d = w->stack;
	w->len = 0;
	w->cap = sizeof(w->stack);
	w->oom = false;
}

static void pbw_free(struct pbw *w)
{
	if (w->d != w->stack)
		free(w->d);
}

static bool pbw_reserve(struct pbw *w, size_t more)
{
	if (w->oom)
		return false;
	if (w->len + more <= w->cap)
		return true;
	size_t cap = w->cap * 2;
	while (cap < w->len + more)
		cap *= 2;
	uint8_t *d = w->d == w->stack ? malloc(cap) : realloc(w->d, cap);
	if (!d) {
		w->oom = true;
		return false;
	}
	if (w->d == w->stack)
		memcpy(d, w->stack, w->len);
	w->d = d;
	w->cap = cap;
	return true;
}

static void pbw_raw_varint(struct pbw *w, uint64_t v)
{
	if (!pbw_reserve(w, 10))
		return;
	while (v >= 0x80) {
		w->d[w->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	w->d[w->len++] = (uint8_t)v;
}

static void pbw_varint(struct pbw *w, uint32_t field, uint64_t v)
{
	if (!v)
		return;
	pbw_raw_varint(w, (uint64_t)field << 3);
	pbw_raw_varint(w, v);
}

static void pbw_bytes(struct pbw *w, uint32_t field, const void *p, size_t n)
{
	pbw_raw_varint(w, ((uint64_t)field << 3) | 2);
	pbw_raw_varint(w, n);
	if (n && pbw_reserve(w, n)) {
		memcpy(w->d + w->len, p, n);
		w->len += n;
	}
}

/* Length-delimited field with a 5-byte length patched by pbw_end. */
static size_t pbw_begin(struct pbw *w, uint32_t field)
{
	pbw_raw_varint(w, ((uint64_t)field << 3) | 2);
	if (!pbw_reserve(w, 5))
		return 0;
	size_t mark = w->len;
	w->len += 5;
	return mark;
}

static void pbw_end(struct pbw *w, size_t mark)
{
	if (w->oom)
		return;
	size_t n = w->len - mark - 5;
	for (int i = 0; i < 5; i++)
		w->d[mark + (size_t)i] = (uint8_t)(((n >> (7 * i)) & 0x7f) | (i < 4 ? 0x80 : 0));
}

static void put_spec(struct pbw *w, uint32_t field, const struct gs_client_spec *s)
{
	size_t m = pbw_begin(w, field);
	if (s->queue && s->queue[0])
		pbw_bytes(w, 1, s->queue, strlen(s->queue));
	pbw_varint(w, 2, s->priority);
	if (s->argc > 0 && s->argv) {
		size_t a = pbw_begin(w, 3);
		for (size_t i = 0; i < s->argc; i++)
			pbw_bytes(w, 1, s->argv[i] ? s->argv[i] : "",
			          s->argv[i] ? strlen(s->argv[i]) : 0);
		if (s->stdin_len)
			pbw_bytes(w, 2, s->stdin_data, s->stdin_len);
		pbw_end(w, a);
	} else if (s->handler) {
		size_t h = pbw_begin(w, 4);
		pbw_bytes(w, 1, s->handler, strlen(s->handler));
		if (s->payload_len)
			pbw_bytes(w, 2, s->payload, s->payload_len);
		pbw_end(w, h);
	}
	pbw_varint(w, 5, s->retries);
	pbw_varint(w, 6, s->timeout_ms);
	pbw_varint(w, 7, s->delay_ms);
	pbw_end(w, m);
}

static void put_ids(struct pbw *w, uint32_t field, const uint64_t *ids, size_t n)
{
	size_t m = pbw_begin(w, field); /* packed repeated fixed64 */
	for (size_t i = 0; i < n && pbw_reserve(w, 8); i++)
		for (int k = 0; k < 8; k++)
			w->d[w->len++] = (uint8_t)(ids[i] >> (8 * k));
	pbw_end(w, m);
}

/* --- errors and calls ---------------------------------------------------- */

static void set_err(struct gs_client *c, const char *fmt, const char *a, const char *b)
{
	pthread_mutex_lock(&c->mu);
	snprintf(c->err, sizeof(c->err), fmt, a, b);
	pthread_mutex_unlock(&c->mu);
}

const char *gs_client_error(struct gs_client *c)
{
	return c ? c->err : "no client";
}

/* One unary call; on failure records "METHOD: CODE: details". */
static int call(struct gs_client *c, const char *method, const struct pbw *req, int timeout_ms,
                struct gs_rpc_reply *rep)
{
	if (req->oom) {
		set_err(c, "%s%s: out of memory", method, "");
		memset(rep, 0, sizeof(*rep));
		return GS_ENOMEM;
	}
	int rc = gs_rpc_client_unary(c->rpc, method, req->d, req->len, c->md, c->n_md,
	                             timeout_ms > 0 ? timeout_ms : c->call_timeout_ms, rep);
	if (rc != GS_OK) {
		char code[96];
		const char *m = strrchr(method, '/');
		snprintf(code, sizeof(code), "%s: %s", m ? m + 1 : method,
		         gs_rpc_code_name(rep->code));
		const char *d = rep->details && rep->details[0] ? rep->details : gs_strerror(rc);
		char msg[512];
		if (rep->code == GS_RPC_UNAVAILABLE || rep->code == GS_RPC_DEADLINE_EXCEEDED)
			snprintf(msg, sizeof(msg), "%s at %s: %s", code, c->addr, d);
		else
			snprintf(msg, sizeof(msg), "%s: %s", code, d);
		set_err(c, "%s%s", msg, "");
	}
	return rc;
}

int gs_client_connect_err(const char *addr, const struct gs_client_opts *opts,
                          struct gs_client **out, char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = 0;
	if (!addr || !addr[0] || !out) {
		if (err)
			snprintf(err, err_len, "no server address");
		return GS_EINVAL;
	}
	*out = NULL;
	struct gs_client_opts o = opts ? *opts : (struct gs_client_opts){0};
	struct gs_client *c = calloc(1, sizeof(*c));
	if (!c || !(c->addr = strdup(addr))) {
		free(c);
		return GS_ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->call_timeout_ms = o.call_timeout_ms > 0 ? o.call_timeout_ms : 30000;
	struct gs_rpc_client_opts ro = {
	    .max_message_bytes = o.max_message_bytes ? o.max_message_bytes : 64u << 20,
	    /* The queue is what one send takes along (rpc_client.h). */
	    .max_queue_bytes = o.max_send_batch_bytes ? o.max_send_batch_bytes : 4u << 20,
	    .reconnect_max_ms = 1000,
	    .busy_poll_us = o.busy_poll_us,
	};
	struct gs_rpc_tls tls = {
	    .ca_file = o.tls_ca_file, .cert_file = o.tls_cert_file, .key_file = o.tls_key_file};
	if (o.tls || o.tls_ca_file || o.tls_cert_file || o.tls_key_file) {
		char why[400];
		int trc = gs_rpc_tls_check(&tls, 0, why, sizeof(why));
		if (trc != GS_OK) {
			if (err)
				snprintf(err, err_len, "%s", why);
			gs_client_close(c);
			return trc;
		}
		ro.tls = &tls;
	}
	if (o.token && o.token[0]) {
		c->auth = gs_rpc_bearer_value(o.token);
		if (!c->auth) {
			gs_client_close(c);
			return GS_ENOMEM;
		}
		c->md[0] = (struct gs_rpc_md){.key = "authorization", .value = c->auth};
		c->n_md = 1;
	}
	int rc = gs_rpc_client_create(addr, &ro, &c->rpc);
	if (rc != GS_OK) {
		if (err)
			snprintf(err, err_len, "bad address '%s': %s", addr, gs_strerror(rc));
		gs_client_close(c);
		return rc;
	}
	if (o.connect_timeout_ms >= 0) {
		struct gs_rpc_reply rep;
		rc = gs_rpc_client_unary(c->rpc, HEALTH, "", 0, c->md, c->n_md,
		                         o.connect_timeout_ms ? o.connect_timeout_ms : 5000, &rep);
		/* HealthCheckResponse: status = 1 (SERVING). */
		if (rc == GS_OK && !(rep.len >= 2 && rep.data[0] == 0x08 && rep.data[1] == 1)) {
			rc = GS_EUNAVAIL;
			if (err)
				snprintf(err, err_len,
				         "the server is not serving (shutting down?)");
		} else if (rc != GS_OK && err) {
			const char *d = rep.details && rep.details[0] ? rep.details : "";
			if (rep.code == GS_RPC_DEADLINE_EXCEEDED)
				snprintf(err, err_len, "no answer within %d ms",
				         o.connect_timeout_ms ? o.connect_timeout_ms : 5000);
			else
				snprintf(err, err_len, "%s%s%s", gs_rpc_code_name(rep.code),
				         d[0] ? ": " : "", d);
		}
		gs_rpc_reply_free(&rep);
		if (rc != GS_OK) {
			gs_client_close(c);
			return rc == GS_EINVAL || rc == GS_ENOMEM ? rc : GS_EUNAVAIL;
		}
	}
	*out = c;
	return GS_OK;
}

int gs_client_connect(const char *addr, const struct gs_client_opts *opts, struct gs_client **out)
{
	return gs_client_connect_err(addr, opts, out, NULL, 0);
}

void gs_client_close(struct gs_client *c)
{
	if (!c)
		return;
	if (c->rpc)
		gs_rpc_client_destroy(c->rpc);
	pthread_mutex_destroy(&c->mu);
	gs_rpc_token_free(c->auth);
	free(c->addr);
	free(c);
}

/* --- results ------------------------------------------------------------- */

static const char *const state_names[] = {"unspecified", "queued",    "assigned", "running", "done",
                                          "failed",      "cancelled", "delayed",  "unknown"};

const char *gs_client_state_name(int state)
{
	return state >= 0 && state <= 8 ? state_names[state] : "?";
}

bool gs_client_state_final(int state)
{
	return state == GS_CLIENT_DONE || state == GS_CLIENT_FAILED || state == GS_CLIENT_CANCELLED;
}

static char *dup_str(const char *s)
{
	return strdup(s ? s : "");
}

/* Fills r from a TaskResult; copies=true allocates (else borrows pointers
 * valid while the message lives, for callbacks).  GS_ENOMEM. */
static int from_pb(struct gs_client_result *r, const Gsched__V1__TaskResult *m, bool copies)
{
	memset(r, 0, sizeof(*r));
	r->id = m->id;
	r->state = m->state;
	r->exit_code = m->exit_code;
	r->truncated = m->output_truncated;
	r->worker_id = m->worker_id;
	r->attempts = m->attempts;
	r->submitted_us = m->submitted_us;
	r->assigned_us = m->assigned_us;
	r->started_us = m->started_us;
	r->finished_us = m->finished_us;
	r->output_len = m->output.len;
	if (!copies) {
		r->output = m->output.data;
		r->error = m->error;
		return GS_OK;
	}
	r->output = malloc(m->output.len + 1);
	r->error = dup_str(m->error);
	if (!r->output || !r->error) {
		gs_client_result_free(r);
		return GS_ENOMEM;
	}
	if (m->output.len)
		memcpy(r->output, m->output.data, m->output.len);
	r->output[m->output.len] = 0;
	return GS_OK;
}

void gs_client_result_free(struct gs_client_result *r)
{
	if (!r)
		return;
	free(r->output);
	free(r->error);
	free(r->queue);
	r->output = NULL;
	r->error = r->queue = NULL;
	r->output_len = 0;
}

void gs_client_results_free(struct gs_client_result *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		gs_client_result_free(&r[i]);
}

static void unknown_result(struct gs_client_result *r, uint64_t id)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->state = GS_CLIENT_UNKNOWN;
	r->output = calloc(1, 1);
	r->error = dup_str("");
}

/* --- unary calls --------------------------------------------------------- */

int gs_client_submit(struct gs_client *c, const struct gs_client_spec *specs, size_t n,
                     uint64_t *ids_out)
{
	return gs_client_submit_idem(c, NULL, specs, n, ids_out);
}

int gs_client_submit_idem(struct gs_client *c, const char *idempotency_key,
                          const struct gs_client_spec *specs, size_t n, uint64_t *ids_out)
{
	if (!c || !specs || !n || !ids_out)
		return GS_EINVAL;
	struct pbw w;
	pbw_init(&w);
	for (size_t i = 0; i < n; i++)
		put_spec(&w, 1, &specs[i]);
	if (idempotency_key && idempotency_key[0])
		pbw_bytes(&w, 2, idempotency_key, strlen(idempotency_key));
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_TASK "Submit", &w, 0, &rep);
	pbw_free(&w);
	if (rc == GS_OK) {
		Gsched__V1__SubmitResponse *m =
		    gsched__v1__submit_response__unpack(NULL, rep.len, rep.data);
		if (!m || m->n_ids != n) {
			set_err(c, "Submit: %s%s", "malformed reply", "");
			rc = GS_EPROTO;
		} else {
			memcpy(ids_out, m->ids, n * sizeof(*ids_out));
		}
		if (m)
			gsched__v1__submit_response__free_unpacked(m, NULL);
	}
	gs_rpc_reply_free(&rep);
	return rc;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One Wait call on n <= WAIT_CHUNK ids; fills the final ones into out[]
 * (where done[i] is false) and marks them done. */
static int wait_once(struct gs_client *c, const uint64_t *ids, size_t n, uint32_t tmo_ms,
                     struct gs_client_result *out, bool *done, bool last)
{
	struct pbw w;
	pbw_init(&w);
	size_t idx[WAIT_CHUNK], k = 0;
	uint64_t want[WAIT_CHUNK];
	for (size_t i = 0; i < n; i++)
		if (!done[i]) {
			idx[k] = i;
			want[k++] = ids[i];
		}
	if (!k)
		return GS_OK;
	put_ids(&w, 1, want, k);
	pbw_varint(&w, 2, tmo_ms);
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_TASK "Wait", &w, (int)tmo_ms + 10000, &rep);
	pbw_free(&w);
	if (rc != GS_OK) {
		gs_rpc_reply_free(&rep);
		/* The call's own deadline (a server stalled or restarting) is not
		 * the wait's timeout: nothing was learned about the tasks. */
		if (rc == GS_ETIMEOUT) {
			set_err(c, "Wait: %s%s", "the server did not answer in time", "");
			rc = GS_EUNAVAIL;
		}
		return rc;
	}
	Gsched__V1__WaitResponse *m = gsched__v1__wait_response__unpack(NULL, rep.len, rep.data);
	gs_rpc_reply_free(&rep);
	if (!m || m->n_results != k) {
		if (m)
			gsched__v1__wait_response__free_unpacked(m, NULL);
		set_err(c, "Wait: %s%s", "malformed reply", "");
		return GS_EPROTO;
	}
	for (size_t j = 0; j < k && rc == GS_OK; j++) {
		const Gsched__V1__TaskResult *t = m->results[j];
		size_t i = idx[j];
		/* Final results are fetched once; an unknown ID stays unknown. */
		if (gs_client_state_final(t->state) || (int)t->state == GS_CLIENT_UNKNOWN || last) {
			gs_client_result_free(&out[i]);
			rc = from_pb(&out[i], t, true);
			out[i].id = ids[i];
			if (gs_client_state_final(t->state) || (int)t->state == GS_CLIENT_UNKNOWN)
				done[i] = true;
		}
	}
	gsched__v1__wait_response__free_unpacked(m, NULL);
	return rc;
}

int gs_client_wait(struct gs_client *c, const uint64_t *ids, size_t n, int timeout_ms,
                   struct gs_client_result *results_out)
{
	if (!c || !ids || !results_out)
		return GS_EINVAL;
	for (size_t i = 0; i < n; i++)
		unknown_result(&results_out[i], ids[i]);
	uint64_t deadline = timeout_ms >= 0 ? mono_ms() + (uint64_t)timeout_ms : UINT64_MAX;
	bool all = true;
	int rc = GS_OK;
	for (size_t base = 0; base < n && rc == GS_OK; base += WAIT_CHUNK) {
		size_t m = n - base < WAIT_CHUNK ? n - base : WAIT_CHUNK;
		bool done[WAIT_CHUNK] = {0};
		for (;;) {
			uint64_t now = mono_ms();
			uint64_t left = deadline > now ? deadline - now : 0;
			/* Long waits in 30 s calls, so a server restart is noticed. */
			uint32_t t = left > 30000 ? 30000 : (uint32_t)left;
			bool last = left <= 30000;
			rc = wait_once(c, ids + base, m, t, results_out + base, done, last);
			bool all_done = true;
			for (size_t i = 0; i < m; i++)
				all_done &= done[i];
			if (rc != GS_OK || all_done)
				break;
			if (last) {
				all = false;
				break;
			}
		}
	}
	if (rc == GS_OK && !all)
		rc = GS_ETIMEOUT;
	return rc;
}

int gs_client_get(struct gs_client *c, const uint64_t *ids, size_t n, bool include_output,
                  struct gs_client_result *results_out)
{
	if (!c || !ids || !n || !results_out)
		return GS_EINVAL;
	struct pbw w;
	pbw_init(&w);
	put_ids(&w, 1, ids, n);
	pbw_varint(&w, 2, include_output);
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_TASK "Get", &w, 0, &rep);
	pbw_free(&w);
	if (rc != GS_OK) {
		gs_rpc_reply_free(&rep);
		return rc;
	}
	Gsched__V1__GetResponse *m = gsched__v1__get_response__unpack(NULL, rep.len, rep.data);
	gs_rpc_reply_free(&rep);
	if (!m || m->n_statuses != n) {
		if (m)
			gsched__v1__get_response__free_unpacked(m, NULL);
		set_err(c, "Get: %s%s", "malformed reply", "");
		return GS_EPROTO;
	}
	for (size_t i = 0; i < n; i++) {
		const Gsched__V1__TaskStatus *st = m->statuses[i];
		struct gs_client_result *r = &results_out[i];
		if (st->result) {
			if (from_pb(r, st->result, true) != GS_OK)
				unknown_result(r, ids[i]), rc = GS_ENOMEM;
		} else {
			unknown_result(r, ids[i]);
		}
		r->id = st->id ? st->id : ids[i];
		r->state = st->state;
		r->worker_id = st->worker_id;
		r->attempts = st->attempts;
		r->submitted_us = st->submitted_us;
		r->assigned_us = st->assigned_us;
		r->started_us = st->started_us;
		r->finished_us = st->finished_us;
		r->priority = st->priority;
		r->queue = dup_str(st->queue);
	}
	gsched__v1__get_response__free_unpacked(m, NULL);
	return rc;
}

int gs_client_cancel(struct gs_client *c, const uint64_t *ids, size_t n, int *outcomes_out,
                     int *states_out)
{
	if (!c || !ids || !n || !outcomes_out)
		return GS_EINVAL;
	struct pbw w;
	pbw_init(&w);
	put_ids(&w, 1, ids, n);
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_TASK "Cancel", &w, 0, &rep);
	pbw_free(&w);
	if (rc != GS_OK) {
		gs_rpc_reply_free(&rep);
		return rc;
	}
	Gsched__V1__CancelResponse *m =
	    gsched__v1__cancel_response__unpack(NULL, rep.len, rep.data);
	gs_rpc_reply_free(&rep);
	if (!m || m->n_outcomes != n) {
		if (m)
			gsched__v1__cancel_response__free_unpacked(m, NULL);
		set_err(c, "Cancel: %s%s", "malformed reply", "");
		return GS_EPROTO;
	}
	for (size_t i = 0; i < n; i++) {
		outcomes_out[i] = m->outcomes[i]->result;
		if (states_out)
			states_out[i] = m->outcomes[i]->state;
	}
	gsched__v1__cancel_response__free_unpacked(m, NULL);
	return GS_OK;
}

int gs_client_list_workers(struct gs_client *c, bool include_dead, struct gs_client_worker **out,
                           size_t *n_out)
{
	if (!c || !out || !n_out)
		return GS_EINVAL;
	*out = NULL;
	*n_out = 0;
	struct pbw w;
	pbw_init(&w);
	pbw_varint(&w, 1, include_dead);
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_ADMIN "ListWorkers", &w, 0, &rep);
	pbw_free(&w);
	if (rc != GS_OK) {
		gs_rpc_reply_free(&rep);
		return rc;
	}
	Gsched__V1__ListWorkersResponse *m =
	    gsched__v1__list_workers_response__unpack(NULL, rep.len, rep.data);
	gs_rpc_reply_free(&rep);
	if (!m) {
		set_err(c, "ListWorkers: %s%s", "malformed reply", "");
		return GS_EPROTO;
	}
	struct gs_client_worker *ws = calloc(m->n_workers ? m->n_workers : 1, sizeof(*ws));
	if (!ws) {
		gsched__v1__list_workers_response__free_unpacked(m, NULL);
		return GS_ENOMEM;
	}
	for (size_t i = 0; i < m->n_workers; i++) {
		const Gsched__V1__WorkerInfo *x = m->workers[i];
		struct gs_client_worker *y = &ws[i];
		y->id = x->worker_id;
		y->name = dup_str(x->name);
		y->peer = dup_str(x->peer);
		size_t ql = 1;
		for (size_t q = 0; q < x->n_queues; q++)
			ql += strlen(x->queues[q]) + 1;
		y->queues = calloc(1, ql);
		for (size_t q = 0; y->queues && q < x->n_queues; q++) {
			if (q)
				strcat(y->queues, ",");
			strcat(y->queues, x->queues[q]);
		}
		y->state = x->state;
		y->slots = x->slots;
		y->running = x->running;
		y->registered_us = x->registered_us;
		y->last_heartbeat_us = x->last_heartbeat_us;
		y->tasks_done = x->tasks_done;
		y->tasks_failed = x->tasks_failed;
		if (!y->name || !y->peer || !y->queues)
			rc = GS_ENOMEM;
	}
	*n_out = m->n_workers;
	*out = ws;
	gsched__v1__list_workers_response__free_unpacked(m, NULL);
	if (rc != GS_OK) {
		gs_client_workers_free(ws, *n_out);
		*out = NULL;
		*n_out = 0;
	}
	return rc;
}

void gs_client_workers_free(struct gs_client_worker *w, size_t n)
{
	for (size_t i = 0; w && i < n; i++) {
		free(w[i].name);
		free(w[i].peer);
		free(w[i].queues);
	}
	free(w);
}

int gs_client_stats(struct gs_client *c, struct gs_client_stats *out)
{
	if (!c || !out)
		return GS_EINVAL;
	memset(out, 0, sizeof(*out));
	struct pbw w;
	pbw_init(&w);
	struct gs_rpc_reply rep;
	int rc = call(c, SVC_ADMIN "Stats", &w, 0, &rep);
	pbw_free(&w);
	if (rc != GS_OK) {
		gs_rpc_reply_free(&rep);
		return rc;
	}
	Gsched__V1__StatsResponse *m = gsched__v1__stats_response__unpack(NULL, rep.len, rep.data);
	gs_rpc_reply_free(&rep);
	if (!m) {
		set_err(c, "Stats: %s%s", "malformed reply", "");
		return GS_EPROTO;
	}
	out->tasks_capacity = m->tasks_capacity;
	out->tasks_in_use = m->tasks_in_use;
	out->workers_alive = m->workers_alive;
	out->uptime_ms = m->uptime_ms;
	out->queues = calloc(m->n_queues ? m->n_queues : 1, sizeof(*out->queues));
	if (!out->queues)
		rc = GS_ENOMEM;
	for (size_t i = 0; rc == GS_OK && i < m->n_queues; i++) {
		const Gsched__V1__QueueStats *q = m->queues[i];
		struct gs_client_queue_stats *y = &out->queues[i];
		out->n_queues++;
		y->queue = dup_str(q->queue);
		y->queued = q->queued;
		y->delayed = q->delayed;
		y->assigned = q->assigned;
		y->running = q->running;
		y->submitted_total = q->submitted_total;
		y->done_total = q->done_total;
		y->failed_total = q->failed_total;
		y->cancelled_total = q->cancelled_total;
		y->retried_total = q->retried_total;
		if (!y->queue)
			rc = GS_ENOMEM;
	}
	gsched__v1__stats_response__free_unpacked(m, NULL);
	if (rc != GS_OK)
		gs_client_stats_free(out);
	return rc;
}

void gs_client_stats_free(struct gs_client_stats *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->queues && i < s->n_queues; i++)
		free(s->queues[i].queue);
	free(s->queues);
	memset(s, 0, sizeof(*s));
}

/* --- SubmitStream ---------------------------------------------------- */

static void st_message(struct gs_rpc_stream *rs, void *ud, const uint8_t *bytes, size_t len)
{
	struct gs_client_stream *s = ud;
	Gsched__V1__SubmitStreamOut *m = gsched__v1__submit_stream_out__unpack(NULL, len, bytes);
	if (!m) {
		pthread_mutex_lock(&s->mu);
		snprintf(s->err, sizeof(s->err), "SubmitStream: malformed message from %s",
		         s->c->addr);
		pthread_mutex_unlock(&s->mu);
		gs_rpc_stream_cancel(rs);
		return;
	}
	for (size_t i = 0; i < m->n_acks && s->on_ack; i++) {
		const Gsched__V1__SubmitAck *a = m->acks[i];
		if (a->outcome_case == GSCHED__V1__SUBMIT_ACK__OUTCOME_ID)
			s->on_ack(s->ud, a->client_seq, a->id, 0, "");
		else
			s->on_ack(s->ud, a->client_seq, 0,
			          a->error ? (int)a->error->code : GS_RPC_UNKNOWN,
			          a->error && a->error->message ? a->error->message : "rejected");
	}
	for (size_t i = 0; i < m->n_results && s->on_result; i++) {
		struct gs_client_result r;
		from_pb(&r, m->results[i], false);
		s->on_result(s->ud, &r);
	}
	gsched__v1__submit_stream_out__free_unpacked(m, NULL);
}

static void st_close(struct gs_rpc_stream *rs, void *ud, int code, const char *details)
{
	(void)rs;
	struct gs_client_stream *s = ud;
	pthread_mutex_lock(&s->mu);
	s->code = code;
	s->ended = true;
	if (code != GS_RPC_OK && !s->err[0])
		snprintf(s->err, sizeof(s->err), "%s to %s: %s%s%s", s->method, s->c->addr,
		         gs_rpc_code_name(code), details && details[0] ? ": " : "",
		         details ? details : "");
	pthread_mutex_unlock(&s->mu);
}

int gs_client_stream_open(struct gs_client *c, gs_client_ack_fn on_ack,
                          gs_client_result_fn on_result, void *ud, struct gs_client_stream **out)
{
	if (!c || !out)
		return GS_EINVAL;
	struct gs_client_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return GS_ENOMEM;
	s->c = c;
	s->on_ack = on_ack;
	s->on_result = on_result;
	s->ud = ud;
	s->method = "SubmitStream";
	pthread_mutex_init(&s->mu, NULL);
	static const struct gs_rpc_stream_ops ops = {.on_message = st_message,
	                                             .on_close = st_close};
	int rc = gs_rpc_stream_open(c->rpc, SVC_TASK "SubmitStream", GS_RPC_BIDI, NULL, 0, c->md,
	                            c->n_md, 0, &ops, s, &s->rpc);
	if (rc != GS_OK) {
		set_err(c, "SubmitStream: %s%s", gs_strerror(rc), "");
		pthread_mutex_destroy(&s->mu);
		free(s);
		return rc;
	}
	*out = s;
	return GS_OK;
}

int gs_client_stream_submit(struct gs_client_stream *s, const struct gs_client_spec *spec,
                            uint64_t client_seq)
{
	if (!s || !spec)
		return GS_EINVAL;
	struct pbw w;
	pbw_init(&w);
	size_t m = pbw_begin(&w, 1);
	pbw_varint(&w, 1, client_seq);
	put_spec(&w, 2, spec);
	pbw_end(&w, m);
	int rc = w.oom ? GS_ENOMEM : gs_rpc_stream_send(s->rpc, w.d, w.len);
	pbw_free(&w);
	return rc;
}

int gs_client_stream_close(struct gs_client_stream *s)
{
	return s ? gs_rpc_stream_close_send(s->rpc) : GS_EINVAL;
}

int gs_client_stream_wait(struct gs_client_stream *s, int timeout_ms)
{
	if (!s)
		return GS_EINVAL;
	int code = 0;
	int rc = gs_rpc_stream_wait(s->rpc, timeout_ms, &code);
	if (rc != GS_OK)
		return rc;
	return code == GS_RPC_OK ? GS_OK : gs_rpc_status_from_code(code);
}

const char *gs_client_stream_error(struct gs_client_stream *s)
{
	return s ? s->err : "no stream";
}

/* --- Watch ------------------------------------------------------------- */

static void watch_message(struct gs_rpc_stream *rs, void *ud, const uint8_t *bytes, size_t len)
{
	struct gs_client_stream *s = ud;
	Gsched__V1__TaskEvents *m = gsched__v1__task_events__unpack(NULL, len, bytes);
	if (!m) {
		pthread_mutex_lock(&s->mu);
		snprintf(s->err, sizeof(s->err), "Watch: malformed message from %s", s->c->addr);
		pthread_mutex_unlock(&s->mu);
		gs_rpc_stream_cancel(rs);
		return;
	}
	if (m->n_events == 0 && s->on_ready)
		s->on_ready(s->ud);
	for (size_t i = 0; i < m->n_events; i++) {
		const Gsched__V1__TaskEvent *e = m->events[i];
		struct gs_client_result r;
		if (e->result) {
			from_pb(&r, e->result, false);
		} else {
			memset(&r, 0, sizeof(r));
			r.error = (char *)"";
		}
		r.id = e->id;
		r.state = e->state;
		r.attempts = e->attempt;
		r.worker_id = e->worker_id;
		s->on_event(s->ud, &r, e->at_us);
	}
	gsched__v1__task_events__free_unpacked(m, NULL);
}

int gs_client_watch_open(struct gs_client *c, const char *queue, const uint64_t *ids, size_t n,
                         bool include_output, gs_client_event_fn on_event,
                         void (*on_ready)(void *ud), void *ud, struct gs_client_stream **out)
{
	if (!c || !out || !on_event || (n > 0 && !ids))
		return GS_EINVAL;
	struct pbw w;
	pbw_init(&w);
	if (n)
		put_ids(&w, 1, ids, n);
	if (queue && queue[0])
		pbw_bytes(&w, 2, queue, strlen(queue));
	if (include_output)
		pbw_varint(&w, 3, 1);
	struct gs_client_stream *s = w.oom ? NULL : calloc(1, sizeof(*s));
	if (!s) {
		pbw_free(&w);
		return GS_ENOMEM;
	}
	s->c = c;
	s->on_event = on_event;
	s->on_ready = on_ready;
	s->ud = ud;
	s->method = "Watch";
	pthread_mutex_init(&s->mu, NULL);
	static const struct gs_rpc_stream_ops ops = {.on_message = watch_message,
	                                             .on_close = st_close};
	int rc = gs_rpc_stream_open(c->rpc, SVC_TASK "Watch", GS_RPC_SERVER_STREAM, w.d, w.len,
	                            c->md, c->n_md, 0, &ops, s, &s->rpc);
	pbw_free(&w);
	if (rc != GS_OK) {
		set_err(c, "Watch: %s%s", gs_strerror(rc), "");
		pthread_mutex_destroy(&s->mu);
		free(s);
		return rc;
	}
	*out = s;
	return GS_OK;
}

void gs_client_stream_destroy(struct gs_client_stream *s)
{
	if (!s)
		return;
	gs_rpc_stream_destroy(s->rpc);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
