/* admin_service.c - AdminService: ListWorkers, Stats, Drain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"
#include "service_impl.h"

#define SVC "/gsched.v1.AdminService/"

static Gsched__V1__WorkerState worker_state(uint32_t st)
{
	switch (st) {
	case GS_WORKER_ALIVE:
		return GSCHED__V1__WORKER_STATE__WORKER_STATE_ALIVE;
	case GS_WORKER_DRAINING:
		return GSCHED__V1__WORKER_STATE__WORKER_STATE_DRAINING;
	default:
		return GSCHED__V1__WORKER_STATE__WORKER_STATE_DEAD;
	}
}

static void list_workers(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	Gsched__V1__ListWorkersRequest *req =
	    gsched__v1__list_workers_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed ListWorkersRequest");
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	const gs_geom *g = gs_engine_geom(s->eng);
	for (uint32_t i = 0; i < g->max_workers; i++) {
		gs_worker_info wi;
		if (gs_engine_worker_at(s->eng, i, &wi) != GS_OK)
			continue;
		if (wi.state == GS_WORKER_DEAD && !req->include_dead)
			continue;
		size_t m = gs_pb_begin(&b, 1);
		gs_pb_put_fixed64(&b, 1, wi.id);
		gs_worker_table_read_lock();
		gs_worker_rec *rec = gs_worker_table_find(s->workers, wi.id);
		if (rec) {
			struct worker_conn *c = rec->ctx;
			gs_pb_put_bytes(&b, 2, c->name, strlen(c->name));
			gs_pb_put_bytes(&b, 3, c->peer, strlen(c->peer));
			gs_pb_put_varint(&b, 9, c->registered_us);
		}
		gs_worker_table_read_unlock();
		gs_pb_put_varint(&b, 4, (uint64_t)worker_state(wi.state));
		gs_pb_put_varint(&b, 5, wi.slots);
		gs_pb_put_varint(&b, 6, wi.load);
		for (uint64_t mask = wi.queue_mask; mask; mask &= mask - 1) {
			const char *qn =
			    gs_engine_queue_name(s->eng, (uint32_t)__builtin_ctzll(mask));
			if (qn)
				gs_pb_put_bytes(&b, 7, qn, strlen(qn));
		}
		gs_pb_put_varint(&b, 10, wi.last_seen_us);
		gs_pb_put_varint(&b, 11, wi.finished_total);
		gs_pb_end(&b, m);
	}
	gs_service_reply(call, &b);
	gsched__v1__list_workers_request__free_unpacked(req, NULL);
}

static void stats(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	Gsched__V1__StatsRequest *req = gsched__v1__stats_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed StatsRequest");
		return;
	}
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		const char *qn = gs_engine_queue_name(s->eng, q);
		if (!qn)
			continue;
		bool wanted = req->n_queues == 0;
		for (size_t i = 0; i < req->n_queues && !wanted; i++)
			wanted = strcmp(req->queues[i], qn) == 0;
		gs_queue_stats st;
		if (!wanted || gs_engine_queue_stats(s->eng, q, &st) != GS_OK)
			continue;
		size_t m = gs_pb_begin(&b, 1);
		gs_pb_put_bytes(&b, 1, qn, strlen(qn));
		gs_pb_put_varint(&b, 2, st.queued);
		gs_pb_put_varint(&b, 3, st.delayed);
		gs_pb_put_varint(&b, 4, st.assigned);
		gs_pb_put_varint(&b, 5, st.running);
		gs_pb_put_varint(&b, 6, st.submitted);
		gs_pb_put_varint(&b, 7, st.done);
		gs_pb_put_varint(&b, 8, st.failed);
		gs_pb_put_varint(&b, 9, st.cancelled);
		gs_pb_put_varint(&b, 10, st.requeued);
		gs_pb_end(&b, m);
	}
	const gs_geom *g = gs_engine_geom(s->eng);
	uint32_t alive = 0;
	for (uint32_t i = 0; i < g->max_workers; i++) {
		gs_worker_info wi;
		if (gs_engine_worker_at(s->eng, i, &wi) == GS_OK && wi.state == GS_WORKER_ALIVE)
			alive++;
	}
	gs_pb_put_varint(&b, 2, g->max_tasks);
	gs_pb_put_varint(&b, 3, gs_engine_tasks_in_use(s->eng));
	gs_pb_put_varint(&b, 4, alive);
	gs_pb_put_varint(&b, 5, (gs_now_us() - s->started_us) / 1000);
	gs_service_reply(call, &b);
	gsched__v1__stats_request__free_unpacked(req, NULL);
}

static void drain(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	gs_service *s = ud;
	Gsched__V1__DrainRequest *req = gsched__v1__drain_request__unpack(NULL, len, bytes);
	if (!req) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed DrainRequest");
		return;
	}
	int rc = gs_engine_worker_drain(s->eng, req->worker_id);
	if (rc != GS_OK) {
		gs_rpc_call_finish(call, gs_rpc_code_from_status(rc),
		                   rc == GS_ENOTFOUND ? "no such worker" : gs_strerror(rc));
	} else {
		gs_worker_send_drain(s, req->worker_id, req->reason);
		gs_pb_buf b;
		gs_pb_buf_init(&b);
		gs_pb_put_varint(&b, 1, GSCHED__V1__WORKER_STATE__WORKER_STATE_DRAINING);
		gs_service_reply(call, &b);
	}
	gsched__v1__drain_request__free_unpacked(req, NULL);
}

int gs_admin_service_register(gs_service *s, struct gs_rpc_server *srv)
{
	static const struct gs_rpc_method_ops lw = {.on_message = list_workers,
	                                            .on_close = gs_service_unary_close};
	static const struct gs_rpc_method_ops st = {.on_message = stats,
	                                            .on_close = gs_service_unary_close};
	static const struct gs_rpc_method_ops dr = {.on_message = drain,
	                                            .on_close = gs_service_unary_close};
	int rc = gs_rpc_server_add_method(srv, SVC "ListWorkers", GS_RPC_UNARY, &lw, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Stats", GS_RPC_UNARY, &st, s);
	if (rc == GS_OK)
		rc = gs_rpc_server_add_method(srv, SVC "Drain", GS_RPC_UNARY, &dr, s);
	return rc;
}
