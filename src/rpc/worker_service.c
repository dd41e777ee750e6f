/*
 * worker_service.c - WorkerService.Connect: the Register's front-end.
 *
 * One bidi stream per worker.  The first message must carry a Register; the
 * server answers Registered, then sends assignments (from the scheduler
 * thread) and cancels.  Results, starts and heartbeats go to the engine.  A
 * result for an attempt that is not the worker's current one (a task
 * requeued after it was declared dead, a task never given to it) is ignored
 * and counted: the engine refuses it without changing anything.  The stream
 * ending, or silence past the worker timeout, makes the worker dead: its
 * tasks are requeued or failed ("worker lost").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"
#include "service_impl.h"

#define CONNECT_PATH "/gsched.v1.WorkerService/Connect"

struct lost_ctx {
	gs_service *s;
	uint64_t now_us;
};

/* A task of a lost worker moved (under s->mu, held by gs_worker_lost). */
static void on_task_moved(uint64_t task, uint32_t state, void *arg)
{
	struct lost_ctx *c = arg;
	if (state != GS_TASK_FAILED) {
		/* Requeued: its next ASSIGN says so to the worker; watchers hear. */
		if (atomic_load_explicit(&c->s->watchers, memory_order_relaxed))
			gs_plm_event(c->s, task, c->now_us);
		return;
	}
	uint64_t lsn = 0;
	if (c->s->o.wal) {
		gs_outcome o = {.failed = true, .status = -1, .reason = GS_REASON_WORKER_LOST};
		gs_task_info info;
		uint32_t attempt =
		    gs_engine_task_info(c->s->eng, task, &info) == GS_OK ? info.attempt : 0;
		lsn = gs_dur_complete_lsn(c->s, task, attempt, &o, c->now_us);
	}
	gs_dur_finished(c->s, task, lsn, GS_TASK_RUNNING, c->now_us);
}

/* gs_worker_lost and gs_worker_orphaned; charge: see gs_engine_worker_orphaned. */
static void worker_gone(gs_service *s, uint64_t wid, uint64_t now_us, bool charge)
{
	struct lost_ctx c = {.s = s, .now_us = now_us};
	/* Under the PLM lock from the engine's change to gs_dur_finished: no
	 * reader may see a FAILED ("worker lost") state before it is hidden
	 * until durable (durable.c, "Final states"). */
	pthread_mutex_lock(&s->mu);
	int rc = charge ? gs_engine_worker_dead(s->eng, wid, now_us, on_task_moved, &c)
	                : gs_engine_worker_orphaned(s->eng, wid, now_us, on_task_moved, &c);
	gs_plm_flush(s, now_us);
	pthread_mutex_unlock(&s->mu);
	if (rc == GS_OK)
		atomic_fetch_add_explicit(&s->workers_lost, 1, memory_order_relaxed);
	/* Tear its stream down; its record goes after a grace period. */
	gs_worker_table_read_lock();
	gs_worker_rec *rec = gs_worker_table_find(s->workers, wid);
	if (rec) {
		struct worker_conn *conn = rec->ctx;
		atomic_store(&conn->lost, true);
		gs_rpc_call_cancel(conn->call);
	}
	gs_worker_table_read_unlock();
	gs_worker_table_remove(s->workers, wid);
	gs_service_kick(s);
}

void gs_worker_lost(gs_service *s, uint64_t wid, uint64_t now_us)
{
	worker_gone(s, wid, now_us, true);
}

void gs_worker_orphaned(gs_service *s, uint64_t wid, uint64_t now_us)
{
	worker_gone(s, wid, now_us, false);
}

/* Acks pending for one worker past this many bytes (~2,300 results) are
 * sent at once rather than held for a ride. */
#define ACK_SEND_BYTES (32u * 1024u)

/* An assignment message takes the pending acks along only up to this size
 * (well under the smallest message limit a worker stream is useful with):
 * past it they wait for the Register's tick, rather than make the message
 * too big for the stream, which would end it. */
#define ACK_RIDE_MAX (16u * 1024u)

/* Moves c's pending acks to the end of b (WorkerDown fields concatenate);
 * with `ride`, only when b stays within ACK_RIDE_MAX.  Acks lost to an
 * allocation failure cost the worker a resend, no more. */
static void acks_take(gs_service *s, struct worker_conn *c, gs_pb_buf *b, bool ride)
{
	pthread_mutex_lock(&s->ack_mu);
	if (!ride || b->len + c->acks.len <= ACK_RIDE_MAX) {
		if (c->acks.len && !c->acks.oom)
			gs_pb_put_raw(b, c->acks.data, c->acks.len);
		gs_pb_buf_reset(&c->acks);
	}
	pthread_mutex_unlock(&s->ack_mu);
}

static int send_to_worker(gs_service *s, uint64_t wid, gs_pb_buf *b)
{
	int rc = GS_ENOTFOUND;
	gs_worker_table_read_lock();
	gs_worker_rec *rec = gs_worker_table_find(s->workers, wid);
	if (rec) {
		struct worker_conn *c = rec->ctx;
		acks_take(s, c, b, true);
		rc = b->oom ? GS_ENOMEM : gs_rpc_call_send(c->call, b->data, b->len);
	}
	gs_worker_table_read_unlock();
	return rc;
}

/* Queues one result's ack for c (see worker_conn.acks); returns true when
 * enough are pending to send them now. */
static bool ack_add(gs_service *s, struct worker_conn *c, uint64_t id, uint32_t attempt)
{
	pthread_mutex_lock(&s->ack_mu);
	size_t m = gs_pb_begin(&c->acks, 5); /* WorkerDown.result_acks */
	gs_pb_put_fixed64(&c->acks, 1, id);
	gs_pb_put_varint(&c->acks, 2, attempt);
	gs_pb_end(&c->acks, m);
	if (!c->on_ack_list) {
		c->on_ack_list = true;
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
		c->ack_next = s->ack_list;
		s->ack_list = c;
	}
	bool full = c->acks.len >= ACK_SEND_BYTES;
	pthread_mutex_unlock(&s->ack_mu);
	return full;
}

void gs_worker_acks_flush(gs_service *s, bool drop)
{
	pthread_mutex_lock(&s->ack_mu);
	struct worker_conn *c = s->ack_list;
	s->ack_list = NULL;
	pthread_mutex_unlock(&s->ack_mu);
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	while (c) {
		struct worker_conn *next = c->ack_next;
		pthread_mutex_lock(&s->ack_mu);
		c->on_ack_list = false;
		c->ack_next = NULL;
		pthread_mutex_unlock(&s->ack_mu);
		gs_pb_buf_reset(&b);
		acks_take(s, c, &b, false);
		/* A worker that is gone or too slow to take these resends its
		 * results, which is all an ack spares it. */
		if (!drop && b.len && !b.oom && !atomic_load(&c->lost))
			(void)gs_rpc_call_send(c->call, b.data, b.len);
		gs_worker_conn_unref(c);
		c = next;
	}
	gs_pb_buf_free(&b);
}

void gs_worker_batch_add(gs_service *s, const gs_assignment *a)
{
	struct assign_batch *ab = &s->batch;
	uint32_t slot = (uint32_t)a->worker;
	if (slot >= gs_engine_geom(s->eng)->max_workers)
		return;
	if (ab->pos[slot] < 0) {
		if (ab->n == ab->cap) {
			size_t cap = ab->cap ? ab->cap * 2 : 16;
			struct assign_ent *e = realloc(ab->ent, cap * sizeof(*e));
			if (!e) {
				gs_worker_lost(s, a->worker, gs_now_us()); /* its tasks requeue */
				return;
			}
			for (size_t i = ab->cap; i < cap; i++)
				gs_pb_buf_init(&e[i].buf);
			ab->ent = e;
			ab->cap = cap;
		}
		ab->pos[slot] = (int32_t)ab->n;
		ab->ent[ab->n].wid = a->worker;
		gs_pb_buf_reset(&ab->ent[ab->n].buf);
		ab->n++;
	}
	gs_pb_buf *b = &ab->ent[ab->pos[slot]].buf;
	size_t start = b->len;
	gs_task_info info;
	const uint8_t *spec;
	uint32_t spec_len;
	if (gs_engine_task_payload(s->eng, a->task, &spec, &spec_len) != GS_OK)
		return;
	size_t m = gs_pb_begin(b, 2); /* WorkerDown.assignments */
	gs_pb_put_fixed64(b, 1, a->task);
	gs_pb_put_varint(b, 2, a->attempt);
	gs_pb_put_bytes(b, 3, spec, spec_len);
	/* The copy is valid only if the task is still this attempt's (a cancel
	 * and release may have recycled the slot meanwhile). */
	if (gs_engine_task_info(s->eng, a->task, &info) != GS_OK || info.attempt != a->attempt ||
	    (info.state != GS_TASK_ASSIGNED && info.state != GS_TASK_RUNNING)) {
		b->len = start;
		return;
	}
	gs_pb_put_varint(b, 4, info.submitted_us);
	gs_pb_put_varint(b, 5, info.assigned_us);
	gs_pb_end(b, m);
}

void gs_worker_batch_flush(gs_service *s)
{
	struct assign_batch *ab = &s->batch;
	for (size_t i = 0; i < ab->n; i++) {
		struct assign_ent *e = &ab->ent[i];
		ab->pos[(uint32_t)e->wid] = -1;
		if (e->buf.len == 0)
			continue;
		if (e->buf.oom || send_to_worker(s, e->wid, &e->buf) != GS_OK) {
			/* No stream, or a worker that stopped reading: it is lost,
			 * and so its tasks go back to the queue. */
			gs_worker_lost(s, e->wid, gs_now_us());
		}
		/* Big buffers are not kept between passes. */
		if (e->buf.cap > (1u << 20))
			gs_pb_buf_free(&e->buf);
	}
	ab->n = 0;
}

void gs_worker_send_cancel(gs_service *s, uint64_t wid, uint64_t task, uint32_t attempt)
{
	if (!gs_service_has(s, GS_ROLE_REGISTER)) {
		gs_link_cancel(s, wid, task, attempt);
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	size_t m = gs_pb_begin(&b, 3); /* WorkerDown.cancels */
	gs_pb_put_fixed64(&b, 1, task);
	gs_pb_put_varint(&b, 2, attempt);
	gs_pb_end(&b, m);
	if (!b.oom)
		send_to_worker(s, wid, &b);
	gs_pb_buf_free(&b);
}

void gs_worker_send_drain(gs_service *s, uint64_t wid, const char *reason)
{
	if (!gs_service_has(s, GS_ROLE_REGISTER)) {
		gs_link_drain(s, wid);
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	size_t m = gs_pb_begin(&b, 4); /* WorkerDown.drain */
	gs_pb_put_bytes(&b, 1, reason, strlen(reason));
	gs_pb_end(&b, m);
	gs_worker_table_read_lock();
	gs_worker_rec *rec = gs_worker_table_find(s->workers, wid);
	if (rec && !b.oom)
		gs_rpc_call_send(((struct worker_conn *)rec->ctx)->call, b.data, b.len);
	gs_worker_table_read_unlock();
	gs_pb_buf_free(&b);
}

static int on_open(struct gs_rpc_call *call, void *method_ud, void **call_ud)
{
	gs_service *s = method_ud;
	if (atomic_load(&s->stopping))
		return GS_EUNAVAIL;
	struct worker_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return GS_ENOMEM;
	c->svc = s;
	c->call = call;
	atomic_init(&c->refs, 1);
	snprintf(c->peer, sizeof(c->peer), "%s", gs_rpc_call_peer(call));
	*call_ud = c;
	return GS_OK;
}

static void do_register(struct worker_conn *c, const Gsched__V1__Register *r)
{
	gs_service *s = c->svc;
	uint64_t mask = 0;
	if (r->slots == 0 || r->slots > GS_WORKER_MAX_SLOTS) {
		gs_rpc_call_finish(c->call, GS_RPC_INVALID_ARGUMENT, "slots must be 1..65535");
		return;
	}
	for (size_t i = 0; i < r->n_queues || i == 0; i++) {
		const char *qn = (r->n_queues && r->queues[i][0]) ? r->queues[i] : "default";
		uint32_t q;
		if (gs_engine_queue(s->eng, qn, true, &q) != GS_OK) {
			gs_rpc_call_finish(c->call, GS_RPC_INVALID_ARGUMENT, "bad queue name");
			return;
		}
		mask |= 1ull << q;
		if (r->n_queues == 0)
			break;
	}
	uint64_t now = gs_now_us();
	/* Under sched_mu until its record is in the table: no dispatch pass
	 * sends to the new worker before its stream can be found (a send that
	 * finds no stream declares the worker lost). */
	pthread_mutex_lock(&s->sched_mu);
	int rc = gs_engine_worker_register(s->eng, r->slots, mask, now, &c->wid);
	if (rc != GS_OK) {
		pthread_mutex_unlock(&s->sched_mu);
		gs_rpc_call_finish(c->call, gs_rpc_code_from_status(rc),
		                   rc == GS_EFULL ? "worker table full" : gs_strerror(rc));
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", r->name);
	c->slots = r->slots;
	c->registered_us = now;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < r->n_handlers; i++)
		gs_plm_add_handler(s, r->handlers[i]);
	pthread_mutex_unlock(&s->mu);
	/* The table holds a reference to c until the record is freed. */
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	if (gs_worker_table_add(s->workers, c->wid, c->name, c) != GS_OK) {
		atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
		gs_engine_worker_dead(s->eng, c->wid, now, NULL, NULL);
		pthread_mutex_unlock(&s->sched_mu);
		c->wid = 0;
		gs_rpc_call_finish(c->call, GS_RPC_INTERNAL, "worker table insert failed");
		return;
	}
	pthread_mutex_unlock(&s->sched_mu);
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	size_t m = gs_pb_begin(&b, 1); /* WorkerDown.registered */
	gs_pb_put_fixed64(&b, 1, c->wid);
	gs_pb_put_varint(&b, 2, s->o.heartbeat_ms);
	gs_pb_put_varint(&b, 3, s->o.worker_timeout_ms);
	gs_pb_end(&b, m);
	gs_rpc_call_send(c->call, b.data, b.len);
	gs_pb_buf_free(&b);
	gs_service_kick(s);
}

static void on_message(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	struct worker_conn *c = ud;
	gs_service *s = c->svc;
	if (atomic_load(&c->lost))
		return;
	Gsched__V1__WorkerUp *up = gsched__v1__worker_up__unpack(NULL, len, bytes);
	if (!up) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed WorkerUp message");
		return;
	}
	if (c->wid == 0) {
		if (up->n_register_ != 1) {
			gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT,
			                   "the first message must carry one Register");
		} else {
			do_register(c, up->register_[0]);
		}
		if (c->wid == 0) {
			gsched__v1__worker_up__free_unpacked(up, NULL);
			return;
		}
	}
	uint64_t now = gs_now_us();
	gs_engine_worker_heartbeat(s->eng, c->wid, now);
	bool watched = atomic_load_explicit(&s->watchers, memory_order_relaxed) > 0;
	uint64_t *started =
	    watched && up->n_started ? malloc(up->n_started * sizeof(*started)) : NULL;
	size_t n_started = 0;
	for (size_t i = 0; i < up->n_started; i++) {
		if (gs_engine_start(s->eng, up->started[i]->id, c->wid, up->started[i]->attempt,
		                    up->started[i]->started_us ? up->started[i]->started_us
		                                               : now) == GS_OK &&
		    started)
			started[n_started++] = up->started[i]->id;
	}
	gs_plm_events(s, started, n_started, now); /* RUNNING */
	free(started);
	if (up->n_results) {
		gs_pb_buf frag;
		gs_pb_buf_init(&frag);
		bool acks_due = false;
		size_t n_done = 0;
		/* Under the PLM lock from each engine change to gs_dur_finished:
		 * no reader may see the final state before it is hidden until
		 * durable (durable.c, "Final states"). */
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < up->n_results; i++) {
			const Gsched__V1__WorkResult *r = up->results[i];
			/* Recorded or refused as stale: either way, stop resending. */
			acks_due |= ack_add(s, c, r->id, r->attempt);
			gs_pb_buf_reset(&frag);
			gs_codec_result_fragment(&frag, r);
			gs_outcome o = {
			    .failed = r->state != GSCHED__V1__TASK_STATE__TASK_STATE_DONE,
			    .status = r->exit_code,
			    .reason = GS_REASON_EXIT,
			    .result = frag.data,
			    .result_len = frag.oom ? 0 : (uint32_t)frag.len,
			    .started_us = r->started_us,
			    .finished_us = r->finished_us,
			};
			int rc = gs_engine_finish(s->eng, r->id, c->wid, r->attempt, &o, now);
			if (rc == GS_ETOOBIG) {
				o.result = NULL;
				o.result_len = 0;
				o.failed = true;
				rc = gs_engine_finish(s->eng, r->id, c->wid, r->attempt, &o, now);
			}
			if (rc != GS_OK) {
				atomic_fetch_add_explicit(&s->stale_results, 1,
				                          memory_order_relaxed);
				continue;
			}
			uint64_t lsn =
			    s->o.wal ? gs_dur_complete_lsn(s, r->id, r->attempt, &o, now) : 0;
			gs_dur_finished(s, r->id, lsn, GS_TASK_RUNNING, now);
			n_done++;
		}
		/* The latency path first: the results to their waiters, then the
		 * freed slots to the scheduler (whose next assignment to this
		 * worker carries the acks). */
		gs_plm_flush(s, now);
		pthread_mutex_unlock(&s->mu);
		gs_pb_buf_free(&frag);
		atomic_fetch_add_explicit(&s->results, n_done, memory_order_relaxed);
		if (n_done)
			gs_service_kick(s);
		if (acks_due) {
			gs_pb_buf b;
			gs_pb_buf_init(&b);
			acks_take(s, c, &b, false);
			if (b.len && !b.oom)
				(void)gs_rpc_call_send(call, b.data, b.len);
			gs_pb_buf_free(&b);
		}
	}
	gsched__v1__worker_up__free_unpacked(up, NULL);
}

static void on_half_close(struct gs_rpc_call *call, void *ud)
{
	(void)ud;
	gs_rpc_call_finish(call, GS_RPC_OK, NULL);
}

static void on_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	(void)cancelled;
	struct worker_conn *c = ud;
	(void)call;
	/* The stream is over: the worker is gone. */
	if (c->wid)
		gs_worker_lost(c->svc, c->wid, gs_now_us());
	gs_worker_conn_unref(c);
}

int gs_worker_service_register(gs_service *s, struct gs_rpc_server *srv)
{
	static const struct gs_rpc_method_ops ops = {
	    .on_open = on_open,
	    .on_message = on_message,
	    .on_half_close = on_half_close,
	    .on_close = on_close,
	};
	return gs_rpc_server_add_method(srv, CONNECT_PATH, GS_RPC_BIDI, &ops, s);
}
