/*
 * task_service.c - TaskService: the PLM's front-end for clients.
 *
 * Submit and SubmitStream validate every spec before anything is queued
 * (bad input changes nothing), store the packed spec as the task's payload,
 * and wake the scheduler.  A Submit with an idempotency_key goes through
 * gs_engine_submit_idem: a retry gets the first request's IDs.  Wait,
 * SubmitStream and Watch subscribe to the tasks' final states through plm.c;
 * Get reads the engine; Cancel moves the task and tells its worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gs_error.h"
#include "service_impl.h"

#define SVC "/gsched.v1.TaskService/"

#define LOG_FAILED "write-ahead log failed: restart the server"

static void finish_err(struct gs_rpc_call *call, int rc, const char *msg)
{
	gs_rpc_call_finish(call, gs_rpc_code_from_status(rc), msg ? msg : gs_strerror(rc));
}

/* Validates and converts n specs; all-or-nothing.  packed[] owns the bytes. */
static int prepare(gs_service *s, Gsched__V1__TaskSpec *const *specs, size_t n, gs_task_spec *out,
                   gs_pb_buf *packed, uint64_t now, char *err, size_t err_len, size_t *bad)
{
	const gs_geom *g = gs_engine_geom(s->eng);
	for (size_t i = 0; i < n; i++) {
		const Gsched__V1__TaskSpec *sp = specs[i];
		pthread_mutex_lock(&s->mu);
		int rc =
		    gs_codec_spec_check(sp, g->max_payload, gs_plm_handler_known, s, err, err_len);
		pthread_mutex_unlock(&s->mu);
		uint32_t q = 0;
		if (rc == GS_OK) {
			const char *qn = sp->queue[0] ? sp->queue : "default";
			rc = gs_engine_queue(s->eng, qn, true, &q);
			if (rc != GS_OK)
				snprintf(err, err_len, "bad queue name '%.48s'", qn);
		}
		if (rc != GS_OK) {
			*bad = i;
			return rc;
		}
		gs_pb_buf_reset(&packed[i]);
		gs_pb_buf *pb = &packed[i];
		size_t sz = protobuf_c_message_get_packed_size(&sp->base);
		pb->data = realloc(pb->data, sz ? sz : 1);
		if (!pb->data) {
			*bad = i;
			return GS_ENOMEM;
		}
		pb->cap = sz ? sz : 1;
		pb->len = protobuf_c_message_pack(&sp->base, pb->data);
		out[i] = (gs_task_spec){
		    .queue = q,
		    .priority = sp->priority,
		    .max_retries = sp->retries,
		    .timeout_ms = sp->timeout_ms,
		    .not_before_us = sp->delay_ms ? now + (uint64_t)sp->delay_ms * 1000 : 0,
		    .payload = pb->data,
		    .payload_len = (uint32_t)pb->len,
		};
	}
	return GS_OK;
}

static void free_packed(gs_pb_buf *packed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gs_pb_buf_free(&packed[i]);
	free(packed);
}

/* --- Submit ------------------------------------------------------------- */

static void sleep_1ms(void)
{
	struct timespec ts = {0, 1000000L};
	nanosleep(&ts, NULL);
}

/* FNV-1a 64, continued from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* A field into the digest: its tag, its length, its bytes. */
static uint64_t dg(uint64_t h, uint32_t tag, const void *p, size_t n)
{
	uint64_t hdr[2] = {tag, n};
	return fnv(fnv(h, hdr, sizeof(hdr)), p, n);
}

static uint64_t dg_u32(uint64_t h, uint32_t tag, uint32_t v)
{
	return dg(h, tag, &v, sizeof(v));
}

static uint64_t dg_str(uint64_t h, uint32_t tag, const char *str)
{
	return dg(h, tag, str ? str : "", str ? strlen(str) : 0);
}

/*
 * The digest a retry under the same idempotency key must match: every field
 * of every spec, in order, labels in any order (a map's wire order is not
 * fixed).  Stored with the key (segment and log): keep it stable.
 */
static uint64_t request_digest(Gsched__V1__TaskSpec *const *specs, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	h = dg_u32(h, 0, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		const Gsched__V1__TaskSpec *sp = specs[i];
		h = dg_str(h, 1, sp->queue && sp->queue[0] ? sp->queue : "default");
		h = dg_u32(h, 2, sp->priority);
		h = dg_u32(h, 3, (uint32_t)sp->body_case);
		if (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_ARGV && sp->argv) {
			h = dg_u32(h, 4, (uint32_t)sp->argv->n_args);
			for (size_t a = 0; a < sp->argv->n_args; a++)
				h = dg_str(h, 5, sp->argv->args[a]);
			h = dg(h, 6, sp->argv->stdin.data, sp->argv->stdin.len);
		} else if (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_HANDLER && sp->handler) {
			h = dg_str(h, 7, sp->handler->name);
			h = dg(h, 8, sp->handler->payload.data, sp->handler->payload.len);
		}
		h = dg_u32(h, 9, sp->retries);
		h = dg_u32(h, 10, sp->timeout_ms);
		h = dg_u32(h, 11, sp->delay_ms);
		uint64_t labels = 0;
		for (size_t l = 0; l < sp->n_labels; l++) {
			uint64_t e = dg_str(0xcbf29ce484222325ull, 12, sp->labels[l]->key);
			labels += dg_str(e, 13, sp->labels[l]->value);
		}
		h = dg(h, 14, &labels, sizeof(labels));
	}
	return h;
}

/*
 * A Submit with an idempotency key: the engine's lookup-or-submit and, for
 * new tasks, their records (KEY first, then the SUBMITs) under the PLM lock,
 * so a retry that comes next sees the key only once its records are
 * appended, and its reply (held until *lsn is durable) follows them.  GS_OK
 * with *existing: ids are the first request's.  Errors carry a message.
 */
static int submit_keyed(gs_service *s, const Gsched__V1__SubmitRequest *req,
                        const gs_task_spec *specs, uint64_t *ids, size_t n, uint64_t now,
                        uint64_t *lsn, bool *existing, bool *log_bad, char *err, size_t err_len)
{
	gs_idem_req k = {.key = req->idempotency_key,
	                 .key_len = (uint32_t)strlen(req->idempotency_key),
	                 .digest = request_digest(req->tasks, n)};
	enum gs_idem_outcome oc = GS_IDEM_NEW;
	int rc = GS_EBUSY;
	/* GS_EBUSY: another process inserts the same key right now (in this
	 * one, keyed submits are serialized by mu): it is done in moments. */
	for (int tries = 0; rc == GS_EBUSY && tries < 2000; tries++) {
		if (tries)
			sleep_1ms();
		pthread_mutex_lock(&s->mu);
		rc = gs_engine_submit_idem(s->eng, &k, specs, n, now, ids, &oc);
		if (rc == GS_OK && oc == GS_IDEM_NEW && s->o.wal) {
			int wrc = gs_dur_key(s, &k, ids, n, now, lsn);
			if (wrc == GS_OK)
				wrc = gs_dur_submit(s, specs, ids, n, now, lsn);
			if (wrc != GS_OK) {
				/* Not in the log: take the tasks back (the key dies with
				 * them), acknowledge nothing. */
				gs_dur_undo(s, ids, n, now);
				*log_bad = true;
			}
		} else if (rc == GS_OK && s->o.wal) {
			/* Appended before the key became visible to us: covered. */
			*lsn = gs_wal_appended_lsn(s->o.wal);
		}
		pthread_mutex_unlock(&s->mu);
	}
	*existing = rc == GS_OK && oc == GS_IDEM_EXISTING;
	if (rc == GS_ESTATE) {
		snprintf(err, err_len,
		         "idempotency key '%.64s' was used by a different request (another task "
		         "count or spec): nothing queued",
		         req->idempotency_key);
		return GS_EINVAL;
	}
	if (rc == GS_EFULL && oc == GS_IDEM_KEYS_FULL)
		snprintf(err, err_len,
		         "idempotency key table full (keys live until their tasks' results are "
		         "fetched or expire): nothing queued");
	else if (rc == GS_EBUSY) {
		snprintf(err, err_len, "idempotency key '%.64s' is being submitted: retry",
		         req->idempotency_key);
		return GS_EUNAVAIL;
	}
	return rc;
}

static void submit_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	if (atomic_load(&s->stopping)) {
		gs_rpc_call_finish(call, GS_RPC_UNAVAILABLE, "server shutting down");
		return;
	}
	if (atomic_load(&s->log_failed)) {
		gs_rpc_call_finish(call, GS_RPC_UNAVAILABLE, LOG_FAILED);
		return;
	}
	Gsched__V1__SubmitRequest *req = gsched__v1__submit_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed SubmitRequest");
		return;
	}
	size_t n = req->n_tasks;
	char err[256] = "";
	size_t key_len = req->idempotency_key ? strlen(req->idempotency_key) : 0;
	if (n == 0 || n > s->o.max_batch)
		snprintf(err, sizeof(err), "a Submit carries 1..%u tasks, not %zu", s->o.max_batch,
		         n);
	else if (key_len > GS_IDEM_MAX_KEY)
		snprintf(err, sizeof(err), "idempotency_key is %zu bytes, over the limit of %u",
		         key_len, GS_IDEM_MAX_KEY);
	else if (key_len && n > gs_engine_idem_max_ids(s->eng))
		snprintf(err, sizeof(err),
		         "a Submit with an idempotency_key carries at most %u tasks",
		         gs_engine_idem_max_ids(s->eng));
	if (err[0]) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, err);
		gsched__v1__submit_request__free_unpacked(req, NULL);
		return;
	}
	gs_task_spec *specs = calloc(n, sizeof(*specs));
	gs_pb_buf *packed = calloc(n, sizeof(*packed));
	uint64_t *ids = calloc(n, sizeof(*ids));
	size_t bad = 0;
	int rc = specs && packed && ids ? GS_OK : GS_ENOMEM;
	uint64_t now = gs_now_us();
	if (rc == GS_OK)
		rc = prepare(s, req->tasks, n, specs, packed, now, err, sizeof(err), &bad);
	if (rc != GS_OK && err[0]) {
		char full[300];
		snprintf(full, sizeof(full), "task %zu: %s", bad, err);
		finish_err(call, rc, full);
	} else if (rc != GS_OK) {
		finish_err(call, rc, NULL);
	} else {
		uint64_t lsn = 0;
		bool existing = false, log_bad = false;
		if (key_len)
			rc = submit_keyed(s, req, specs, ids, n, now, &lsn, &existing, &log_bad,
			                  err, sizeof(err));
		else
			rc = gs_engine_submit(s->eng, specs, n, now, ids);
		if (!key_len && rc == GS_OK && s->o.wal &&
		    gs_dur_submit(s, specs, ids, n, now, &lsn) != GS_OK) {
			/* Not in the log: take the tasks back, acknowledge nothing. */
			pthread_mutex_lock(&s->mu);
			gs_dur_undo(s, ids, n, now);
			pthread_mutex_unlock(&s->mu);
			log_bad = true;
		}
		if (log_bad) {
			gs_rpc_call_finish(call, GS_RPC_UNAVAILABLE, LOG_FAILED);
		} else if (rc != GS_OK && err[0]) {
			finish_err(call, rc, err);
		} else if (rc != GS_OK) {
			finish_err(call, rc,
			           rc == GS_EFULL
			               ? "task table or payload arena full: nothing queued"
			               : NULL);
		} else {
			if (!existing) /* QUEUED (or DELAYED) before any ASSIGNED */
				gs_plm_events(s, ids, n, now);
			gs_service_kick(s);
			gs_pb_buf b;
			gs_pb_buf_init(&b);
			size_t m = gs_pb_begin(&b, 1); /* packed repeated fixed64 */
			for (size_t i = 0; i < n; i++) {
				uint8_t le[8];
				for (int k = 0; k < 8; k++)
					le[k] = (uint8_t)(ids[i] >> (8 * k));
				gs_pb_put_raw(&b, le, 8);
			}
			gs_pb_end(&b, m);
			/* A retry's reply waits for the first request's records too (lsn
			 * covers them), but takes nothing back if the log fails. */
			if (s->o.wal && !b.oom &&
			    gs_dur_hold_reply(s, call, !existing, lsn, &b, existing ? NULL : ids,
			                      existing ? 0 : n) == GS_OK) {
				/* answered by the committer once durable */
			} else if (b.oom || gs_rpc_call_send(call, b.data, b.len) != GS_OK) {
				gs_rpc_call_finish(call, GS_RPC_INTERNAL, "reply failed");
			} else if (s->o.wal) {
				/* Out of memory holding it: answer after a sync of our own. */
				int wrc = gs_wal_sync(s->o.wal, NULL);
				if (wrc == GS_OK)
					gs_rpc_call_finish(call, GS_RPC_OK, NULL);
				else
					gs_rpc_call_finish(call, GS_RPC_UNAVAILABLE, LOG_FAILED);
			} else {
				gs_rpc_call_finish(call, GS_RPC_OK, NULL);
			}
			gs_pb_buf_free(&b);
		}
	}
	free(specs);
	free(ids);
	if (packed)
		free_packed(packed, n);
	gsched__v1__submit_request__free_unpacked(req, NULL);
}

/* --- SubmitStream --------------------------------------------------------- */

static int stream_open(struct gs_rpc_call *call, void *method_ud, void **call_ud)
{
	gs_service *s = method_ud;
	if (atomic_load(&s->stopping))
		return GS_EUNAVAIL;
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return GS_ENOMEM;
	w->kind = W_STREAM;
	w->svc = s;
	w->call = call;
	w->refs = 1;
	*call_ud = w;
	return GS_OK;
}

static void put_ack(gs_pb_buf *b, uint64_t seq, uint64_t id, int rc, const char *msg)
{
	size_t m = gs_pb_begin(b, 1);
	gs_pb_put_varint(b, 1, seq);
	if (rc == GS_OK) {
		/* A oneof member is written even when zero; IDs never are. */
		gs_pb_put_fixed64(b, 2, id);
	} else {
		size_t e = gs_pb_begin(b, 3);
		gs_pb_put_varint(b, 1, (uint64_t)gs_rpc_code_from_status(rc));
		gs_pb_put_bytes(b, 2, msg, strlen(msg));
		gs_pb_end(b, e);
	}
	gs_pb_end(b, m);
}

static void stream_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	struct waiter *w = ud;
	gs_service *s = w->svc;
	Gsched__V1__SubmitStreamIn *in = gsched__v1__submit_stream_in__unpack(NULL, len, bytes);
	if (!in) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed SubmitStreamIn");
		return;
	}
	gs_pb_buf acks;
	gs_pb_buf_init(&acks);
	uint64_t now = gs_now_us();
	uint64_t lsn = 0, *held = NULL;
	size_t n_held = 0;
	if (s->o.wal && in->n_submits) {
		held = malloc(in->n_submits * sizeof(*held));
		if (!held) {
			gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "out of memory");
			gsched__v1__submit_stream_in__free_unpacked(in, NULL);
			return;
		}
	}
	for (size_t i = 0; i < in->n_submits; i++) {
		const Gsched__V1__SubmitItem *it = in->submits[i];
		char err[256] = "";
		gs_task_spec spec;
		gs_pb_buf packed;
		gs_pb_buf_init(&packed);
		size_t bad;
		uint64_t id = 0;
		int rc;
		if (atomic_load(&s->stopping)) {
			rc = GS_EUNAVAIL;
			snprintf(err, sizeof(err), "server shutting down");
		} else if (atomic_load(&s->log_failed)) {
			rc = GS_EUNAVAIL;
			snprintf(err, sizeof(err), LOG_FAILED);
		} else if (!it->task) {
			rc = GS_EINVAL;
			snprintf(err, sizeof(err), "item has no task");
		} else {
			rc = prepare(s, &it->task, 1, &spec, &packed, now, err, sizeof(err), &bad);
		}
		/* Subscribe before the task can finish, and (without a log) put
		 * its ack on the stream's output in the same section: a result,
		 * which another thread may deliver at any moment (the PLM's ring
		 * thread, another RPC thread), always goes out after its ack. */
		pthread_mutex_lock(&s->mu);
		if (rc == GS_OK && w->closed) {
			/* The stream was ended (a client too slow): a message already
			 * on its way queues nothing nobody would hear of. */
			rc = GS_EUNAVAIL;
			snprintf(err, sizeof(err), "stream closed");
		}
		if (rc == GS_OK) {
			rc = gs_engine_submit(s->eng, &spec, 1, now, &id);
			if (rc == GS_OK && held) {
				/* Subscribed once the ack is sent (durable.c). */
				if (gs_dur_submit(s, &spec, &id, 1, now, &lsn) == GS_OK) {
					held[n_held++] = id;
					w->pending++;
				} else {
					gs_dur_undo(s, &id, 1, now);
					rc = GS_EUNAVAIL;
					snprintf(err, sizeof(err), LOG_FAILED);
				}
			} else if (rc == GS_OK) {
				if (gs_plm_subscribe(s, id, w) == GS_OK)
					w->pending++;
			}
			if (rc == GS_OK &&
			    atomic_load_explicit(&s->watchers, memory_order_relaxed)) {
				gs_plm_event(s, id, now);
			} else if (rc != GS_OK && err[0] == 0) {
				snprintf(err, sizeof(err), "%s",
				         rc == GS_EFULL ? "task table or payload arena full"
				                        : gs_strerror(rc));
			}
		}
		if (!held && !w->closed) {
			put_ack(&w->out, it->client_seq, id, rc, err);
			gs_plm_mark_dirty(s, w);
		}
		pthread_mutex_unlock(&s->mu);
		gs_pb_buf_free(&packed);
		if (held)
			put_ack(&acks, it->client_seq, id, rc, err);
	}
	gs_service_kick(s);
	if (held && !acks.oom && gs_dur_hold_stream(s, w, lsn, &acks, held, n_held) == GS_OK) {
		/* sent by the committer once durable */
	} else if (held) {
		pthread_mutex_lock(&s->mu);
		gs_dur_undo(s, held, n_held, now);
		w->pending = w->pending > n_held ? w->pending - n_held : 0;
		pthread_mutex_unlock(&s->mu);
		gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	/* Without a log, the acks with any result that came meanwhile, as one
	 * message; and the Watch events of the new tasks. */
	pthread_mutex_lock(&s->mu);
	gs_plm_flush(s, now);
	pthread_mutex_unlock(&s->mu);
	free(held);
	gs_pb_buf_free(&acks);
	gsched__v1__submit_stream_in__free_unpacked(in, NULL);
}

static void stream_half_close(struct gs_rpc_call *call, void *ud)
{
	struct waiter *w = ud;
	gs_service *s = w->svc;
	pthread_mutex_lock(&s->mu);
	w->half_closed = true;
	if (w->pending == 0 && !w->closed) {
		gs_rpc_call_finish(call, GS_RPC_OK, NULL);
		w->closed = true;
	}
	pthread_mutex_unlock(&s->mu);
}

/* Shared by every waiter-backed call: the call is over. */
static void waiter_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	(void)call;
	(void)cancelled;
	struct waiter *w = ud;
	gs_service *s = w->svc;
	pthread_mutex_lock(&s->mu);
	w->closed = true;
	if (w->watch_counted) {
		w->watch_counted = false;
		atomic_fetch_sub_explicit(&s->watchers, 1, memory_order_relaxed);
		if (w->queue_watch)
			gs_plm_queue_watch(s, w, false);
	}
	if (w->kind == W_WAIT) {
		if (w->prev_wait) {
			w->prev_wait->next_wait = w->next_wait;
			w->next_wait->prev_wait = w->prev_wait;
			w->prev_wait = w->next_wait = NULL;
		}
	}
	/* Results still pending stay in the engine, fetchable by Wait. */
	if (w->refs > 1)
		gs_plm_unsubscribe_all(s, w);
	gs_plm_waiter_unref(s, w); /* the call's reference */
	pthread_mutex_unlock(&s->mu);
}

/* --- Wait -------------------------------------------------------------- */

static int waiter_open(struct gs_rpc_call *call, void *method_ud, void **call_ud)
{
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return GS_ENOMEM;
	w->svc = method_ud;
	w->call = call;
	w->refs = 1;
	*call_ud = w;
	return GS_OK;
}

static void wait_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	struct waiter *w = ud;
	gs_service *s = w->svc;
	Gsched__V1__WaitRequest *req = gsched__v1__wait_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed WaitRequest");
		return;
	}
	if (req->n_ids == 0 || req->n_ids > s->o.max_batch) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "Wait needs 1..max_batch ids");
		gsched__v1__wait_request__free_unpacked(req, NULL);
		return;
	}
	w->kind = W_WAIT;
	w->any = req->mode == GSCHED__V1__WAIT_MODE__WAIT_MODE_ANY;
	w->include_output = true;
	w->ids = malloc(req->n_ids * sizeof(*w->ids));
	if (!w->ids) {
		gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "out of memory");
		gsched__v1__wait_request__free_unpacked(req, NULL);
		return;
	}
	memcpy(w->ids, req->ids, req->n_ids * sizeof(*w->ids));
	w->n_ids = req->n_ids;
	uint64_t now = gs_now_us();
	int64_t left = gs_rpc_call_deadline_left_ms(call);
	uint64_t tmo = req->timeout_ms;
	if (left >= 0 && (uint64_t)left < tmo)
		tmo = (uint64_t)left;
	w->deadline_us = now + tmo * 1000;

	/* Check and subscribe under the PLM lock: a result recorded after the
	 * check is delivered through the subscription. */
	pthread_mutex_lock(&s->mu);
	size_t finals = 0, unknown = 0;
	for (size_t i = 0; i < w->n_ids; i++) {
		gs_task_info info;
		const uint8_t *res;
		uint32_t res_len;
		/* gs_service_read: a final state not on disk yet is not final. */
		if (gs_service_read(s, w->ids[i], &info, &res, &res_len) != GS_OK) {
			unknown++;
			continue;
		}
		if (gs_task_state_final(info.state)) {
			finals++;
			continue;
		}
		if (gs_plm_subscribe(s, w->ids[i], w) == GS_OK)
			w->remaining++;
	}
	bool met = w->any ? finals > 0 : w->remaining == 0;
	if (met || req->timeout_ms == 0 || w->remaining == 0) {
		gs_plm_wait_reply(s, w, met && (w->any || unknown == 0));
	} else {
		w->next_wait = s->waits.next_wait;
		w->prev_wait = &s->waits;
		s->waits.next_wait->prev_wait = w;
		s->waits.next_wait = w;
	}
	pthread_mutex_unlock(&s->mu);
	gsched__v1__wait_request__free_unpacked(req, NULL);
}

/* --- Get ------------------------------------------------------------- */

/* A TaskStatus or TaskEvent (the same fields 1 and 2) for a task not known,
 * as field 1. */
static void put_unknown(gs_pb_buf *b, uint64_t id)
{
	size_t m = gs_pb_begin(b, 1);
	gs_pb_put_fixed64(b, 1, id);
	gs_pb_put_varint(b, 2, GSCHED__V1__TASK_STATE__TASK_STATE_UNKNOWN);
	gs_pb_end(b, m);
}

/* The TaskStatus of a known task (gs_service_read), as field 1. */
static void put_status(gs_service *s, gs_pb_buf *b, const gs_task_info *info, const uint8_t *res,
                       uint32_t res_len, bool include_output)
{
	size_t m = gs_pb_begin(b, 1);
	gs_pb_put_fixed64(b, 1, info->id);
	gs_pb_put_varint(b, 2, (uint64_t)gs_codec_state(info->state));
	const char *qn = gs_engine_queue_name(s->eng, info->queue);
	if (qn)
		gs_pb_put_bytes(b, 3, qn, strlen(qn));
	gs_pb_put_varint(b, 4, info->priority);
	gs_pb_put_fixed64(b, 5, info->worker);
	gs_pb_put_varint(b, 6, info->attempt);
	gs_pb_put_varint(b, 7, info->submitted_us);
	gs_pb_put_varint(b, 8, info->assigned_us);
	gs_pb_put_varint(b, 9, info->started_us);
	gs_pb_put_varint(b, 10, info->finished_us);
	if (gs_task_state_final(info->state))
		gs_codec_put_result(b, 12, info, res, res_len, include_output);
	gs_pb_end(b, m);
}

static void get_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	Gsched__V1__GetRequest *req = gsched__v1__get_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed GetRequest");
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < req->n_ids; i++) {
		gs_task_info info;
		const uint8_t *res;
		uint32_t res_len;
		if (gs_service_read(s, req->ids[i], &info, &res, &res_len) != GS_OK)
			put_unknown(&b, req->ids[i]);
		else
			put_status(s, &b, &info, res, res_len, req->include_output);
	}
	pthread_mutex_unlock(&s->mu);
	gs_service_reply(call, &b);
	gsched__v1__get_request__free_unpacked(req, NULL);
}

/* --- Cancel ---------------------------------------------------------- */

static void cancel_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	Gsched__V1__CancelRequest *req = gsched__v1__cancel_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed CancelRequest");
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	uint64_t now = gs_now_us(), lsn = 0;
	bool logged = true;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < req->n_ids; i++) {
		uint64_t id = req->ids[i], worker = 0, task_lsn = 0;
		uint32_t attempt = 0;
		Gsched__V1__CancelResult out;
		int rc = gs_engine_cancel(s->eng, id, now, &worker, &attempt);
		gs_task_info info;
		int irc = gs_engine_task_info(s->eng, id, &info);
		if (rc == GS_OK && s->o.wal) {
			if (gs_dur_cancel(s, id, now, &task_lsn) != GS_OK) {
				logged = false;
				task_lsn = gs_wal_appended_lsn(s->o.wal);
			} else {
				lsn = task_lsn;
			}
		} else if (rc == GS_ESTATE && s->o.wal && gs_id_map_get(&s->unsynced, id, NULL)) {
			/* Final, not durable yet: the reply (which says so) waits
			 * until it is. */
			uint64_t at = gs_wal_appended_lsn(s->o.wal);
			lsn = at > lsn ? at : lsn;
		}
		if (rc == GS_OK) {
			out = worker ? GSCHED__V1__CANCEL_RESULT__CANCEL_RESULT_REQUESTED
			             : GSCHED__V1__CANCEL_RESULT__CANCEL_RESULT_CANCELLED;
			if (worker)
				gs_worker_send_cancel(s, worker, id, attempt);
		} else if (rc == GS_ESTATE || rc == GS_EBUSY) {
			out = GSCHED__V1__CANCEL_RESULT__CANCEL_RESULT_ALREADY_FINISHED;
		} else {
			out = GSCHED__V1__CANCEL_RESULT__CANCEL_RESULT_NOT_FOUND;
		}
		size_t m = gs_pb_begin(&b, 1);
		gs_pb_put_fixed64(&b, 1, id);
		gs_pb_put_varint(&b, 2, (uint64_t)out);
		gs_pb_put_varint(&b, 3,
		                 (uint64_t)(irc == GS_OK
		                                ? gs_codec_state(info.state)
		                                : GSCHED__V1__TASK_STATE__TASK_STATE_UNKNOWN));
		gs_pb_end(&b, m);
		if (rc == GS_OK)
			gs_dur_finished(s, id, task_lsn, worker ? GS_TASK_RUNNING : GS_TASK_QUEUED,
			                now);
	}
	gs_plm_flush(s, now);
	pthread_mutex_unlock(&s->mu);
	if (!logged) /* the cancels stand, but may not survive a crash */
		gs_rpc_call_finish(call, GS_RPC_UNAVAILABLE, LOG_FAILED);
	else if (s->o.wal && lsn && !b.oom &&
	         gs_dur_hold_reply(s, call, false, lsn, &b, NULL, 0) == GS_OK)
		; /* answered by the committer once durable */
	else
		gs_service_reply(call, &b);
	gs_pb_buf_free(&b); /* a no-op after gs_service_reply, which freed it */
	gsched__v1__cancel_request__free_unpacked(req, NULL);
	gs_service_kick(s);
}

/* --- Watch ----------------------------------------------------------- */

static void watch_msg(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	struct waiter *w = ud;
	gs_service *s = w->svc;
	Gsched__V1__WatchRequest *req = gsched__v1__watch_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed WatchRequest");
		return;
	}
	w->kind = W_WATCH;
	w->include_output = req->include_output;
	if (req->n_ids == 0) {
		/* A whole queue: every state change of its tasks from now on,
		 * until the client ends the call.  The first message (no events)
		 * says the watch is in place. */
		const char *qn = req->queue && req->queue[0] ? req->queue : "default";
		uint32_t q;
		int rc = gs_engine_queue(s->eng, qn, true, &q);
		if (rc != GS_OK) {
			gs_rpc_call_finish(call,
			                   rc == GS_EFULL ? GS_RPC_RESOURCE_EXHAUSTED
			                                  : GS_RPC_INVALID_ARGUMENT,
			                   rc == GS_EFULL ? "too many queues" : "bad queue name");
			gsched__v1__watch_request__free_unpacked(req, NULL);
			return;
		}
		pthread_mutex_lock(&s->mu);
		w->queue_watch = true;
		w->queue = q;
		gs_plm_queue_watch(s, w, true);
		w->watch_counted = true;
		atomic_fetch_add_explicit(&s->watchers, 1, memory_order_relaxed);
		if (gs_rpc_call_send(call, "", 0) != GS_OK) {
			gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "reply failed");
			w->closed = true;
		}
		pthread_mutex_unlock(&s->mu);
		gsched__v1__watch_request__free_unpacked(req, NULL);
		return;
	}
	w->half_closed = true; /* the stream ends when every watched task is final */
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	pthread_mutex_lock(&s->mu);
	/* Counted first: a change from here on is an event for this call. */
	w->watch_counted = true;
	atomic_fetch_add_explicit(&s->watchers, 1, memory_order_relaxed);
	for (size_t i = 0; i < req->n_ids; i++) {
		gs_task_info info;
		const uint8_t *res;
		uint32_t res_len;
		if (gs_service_read(s, req->ids[i], &info, &res, &res_len) != GS_OK) {
			put_unknown(&b, req->ids[i]);
			continue;
		}
		bool final = gs_task_state_final(info.state);
		gs_codec_put_event(&b, 1, &info, gs_now_us(), res, res_len, final,
		                   req->include_output);
		if (!final && gs_plm_subscribe(s, req->ids[i], w) == GS_OK)
			w->pending++;
	}
	if (b.oom || gs_rpc_call_send(call, b.data, b.len) != GS_OK) {
		gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "reply too large");
		w->closed = true;
	} else if (w->pending == 0) {
		gs_rpc_call_finish(call, GS_RPC_OK, NULL);
		w->closed = true;
	}
	pthread_mutex_unlock(&s->mu);
	gs_pb_buf_free(&b);
	gsched__v1__watch_request__free_unpacked(req, NULL);
}

int gs_task_service_register(gs_service *s, struct gs_rpc_server *srv)
{
	static const struct gs_rpc_method_ops submit = {.on_message = submit_msg,
	                                                .on_close = gs_service_unary_close};
	static const struct gs_rpc_method_ops stream = {
	    .on_open = stream_open,
	    .on_message = stream_msg,
	    .on_half_close = stream_half_close,
	    .on_close = waiter_close,
	};
	static const struct gs_rpc_method_ops wait = {
	    .on_open = waiter_open, .on_message = wait_msg, .on_close = waiter_close};
	static const struct gs_rpc_method_ops get = {.on_message = get_msg,
	                                             .on_close = gs_service_unary_close};
	static const struct gs_rpc_method_ops cancel = {.on_message = cancel_msg,
	                                                .on_close = gs_service_unary_close};
	static const struct gs_rpc_method_ops watch = {
	    .on_open = waiter_open, .on_message = watch_msg, .on_close = waiter_close};
	int rc = gs_rpc_server_add_method(srv, SVC "Submit", GS_RPC_UNARY, &submit, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "SubmitStream", GS_RPC_BIDI, &stream, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Wait", GS_RPC_UNARY, &wait, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Get", GS_RPC_UNARY, &get, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Cancel", GS_RPC_UNARY, &cancel, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Watch", GS_RPC_SERVER_STREAM, &watch, s);
	return rc;
}
