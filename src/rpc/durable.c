/*
 * durable.c - the services' side of the write-ahead log (wal.h): the records
 * each change appends, the acknowledgements held until their record is on
 * disk, the snapshot of the live tasks (and idempotency keys) for
 * compaction, and the retention of results found in the engine at start.
 *
 * Rule: the engine changes first, then its record is appended, in the same
 * thread, so a snapshot (which walks the engine after the log rolled over to
 * a new segment) covers every record of the segments it replaces.
 *
 * Acknowledgements.  A Submit, a SubmitStream message's acks and a Cancel
 * reply are not sent by the RPC thread: it appends the records, queues the
 * reply with the LSN of its last record and returns (it never sleeps on a
 * sync).  The server's committer thread syncs the log (group commit) and
 * calls gs_service_durable(), which sends every reply whose LSN is durable.
 * For a SubmitStream, the accepted tasks are subscribed to the stream only
 * then, so a task's result never reaches the client before its ack (a
 * result recorded meanwhile is retained, and handed over at the ack).
 *
 * Final states.  A result, a cancel or a loss is shown to nobody (Wait,
 * Get, a stream's result, Watch) before its record is durable: a crash in
 * between would replay the task as unfinished and run it again, and its
 * watcher would see a second final state.  gs_dur_finished() queues
 * (task, LSN) and marks the task in s->unsynced, which gs_service_read()
 * shows as not final; gs_service_durable() hands each durable one to the
 * PLM (gs_plm_finished).
 *
 * When the log fails (GS_EIO: a write or fsync failed), it has failed for
 * good: held Submits are answered UNAVAILABLE and their tasks cancelled and
 * released (they were never acknowledged), held streams are ended
 * UNAVAILABLE likewise, held Cancels are answered UNAVAILABLE (the cancel
 * itself stands), health goes NOT_SERVING and every later Submit is refused.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gs_clock.h"
#include "gs_error.h"
#include "service_impl.h"

enum dur_kind { DA_SUBMIT, DA_STREAM, DA_CANCEL };

struct dur_fin {
	uint64_t id, lsn;
};

struct dur_ack {
	struct dur_ack *next;
	enum dur_kind kind;
	uint64_t lsn;
	struct gs_rpc_call *call; /* a reference of ours */
	struct waiter *w;         /* DA_STREAM: a reference of ours (under mu) */
	gs_pb_buf reply;          /* sent once durable */
	uint64_t *ids;            /* DA_SUBMIT, DA_STREAM: the accepted tasks */
	size_t n_ids;
};

/* --- appending ------------------------------------------------------------ */

/* The log failed: refuse submissions from now on (health NOT_SERVING). */
static void log_failed(gs_service *s)
{
	if (atomic_exchange(&s->log_failed, true))
		return;
	if (s->health) {
		gs_rpc_health_set(s->health, "", false);
		gs_rpc_health_set(s->health, "gsched.v1.TaskService", false);
	}
}

static int append(gs_service *s, const gs_wal_rec *r, uint64_t *lsn)
{
	int rc = gs_wal_append(s->o.wal, r, lsn);
	if (rc == GS_EIO)
		log_failed(s);
	return rc;
}

int gs_dur_submit(gs_service *s, const gs_task_spec *specs, const uint64_t *ids, size_t n,
                  uint64_t now_us, uint64_t *lsn)
{
	for (size_t i = 0; i < n; i++) {
		const char *qn = gs_engine_queue_name(s->eng, specs[i].queue);
		gs_wal_rec r = {.type = GS_WAL_SUBMIT,
		                .task = ids[i],
		                .time_us = now_us,
		                .queue = qn ? qn : "default",
		                .priority = specs[i].priority,
		                .max_retries = specs[i].max_retries,
		                .timeout_ms = specs[i].timeout_ms,
		                .not_before_us = specs[i].not_before_us,
		                .data = specs[i].payload,
		                .data_len = specs[i].payload_len};
		int rc = append(s, &r, lsn);
		if (rc != GS_OK)
			return rc;
	}
	return GS_OK;
}

int gs_dur_key(gs_service *s, const gs_idem_req *k, const uint64_t *ids, size_t n, uint64_t now_us,
               uint64_t *lsn)
{
	gs_wal_rec r = {.type = GS_WAL_KEY,
	                .time_us = now_us,
	                .key = k->key,
	                .key_len = k->key_len,
	                .digest = k->digest,
	                .ids = ids,
	                .n_ids = (uint32_t)n};
	return append(s, &r, lsn);
}

void gs_dur_assign(gs_service *s, const gs_assignment *a, uint64_t now_us)
{
	gs_wal_rec r = {.type = GS_WAL_ASSIGN,
	                .task = a->task,
	                .time_us = now_us,
	                .worker = a->worker,
	                .attempt = a->attempt};
	append(s, &r, NULL);
}

int gs_dur_complete(gs_service *s, uint64_t id, uint32_t attempt, const gs_outcome *o,
                    uint64_t now_us, uint64_t *lsn)
{
	gs_wal_rec r = {.type = GS_WAL_COMPLETE,
	                .task = id,
	                .time_us = o->finished_us ? o->finished_us : now_us,
	                .state = o->failed ? GS_TASK_FAILED : GS_TASK_DONE,
	                .status = o->status,
	                .reason = o->reason ? o->reason : GS_REASON_EXIT,
	                .attempt = attempt,
	                .data = o->result,
	                .data_len = o->result_len};
	return append(s, &r, lsn);
}

uint64_t gs_dur_complete_lsn(gs_service *s, uint64_t id, uint32_t attempt, const gs_outcome *o,
                             uint64_t now_us)
{
	uint64_t lsn = 0;
	if (gs_dur_complete(s, id, attempt, o, now_us, &lsn) != GS_OK)
		lsn = gs_wal_appended_lsn(s->o.wal); /* no record: after what is there */
	return lsn;
}

int gs_dur_cancel(gs_service *s, uint64_t id, uint64_t now_us, uint64_t *lsn)
{
	gs_wal_rec r = {.type = GS_WAL_CANCEL, .task = id, .time_us = now_us};
	return append(s, &r, lsn);
}

void gs_dur_release(gs_service *s, uint64_t id)
{
	gs_wal_rec r = {.type = GS_WAL_RELEASE, .task = id};
	append(s, &r, NULL);
}

/* Takes back tasks that were never acknowledged (under s->mu). */
void gs_dur_undo(gs_service *s, const uint64_t *ids, size_t n, uint64_t now_us)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t worker = 0;
		uint32_t attempt = 0;
		if (gs_engine_cancel(s->eng, ids[i], now_us, &worker, &attempt) == GS_OK && worker)
			gs_worker_send_cancel(s, worker, ids[i], attempt);
		gs_plm_release(s, ids[i]);
	}
}

/* --- final states held until durable -------------------------------------- */

void gs_dur_finished(gs_service *s, uint64_t id, uint64_t lsn, uint32_t shown, uint64_t now_us)
{
	if (!gs_service_has(s, GS_ROLE_PLM)) {
		gs_link_done(s, id); /* the PLM is another process (no log then) */
		return;
	}
	if (!s->o.wal || atomic_load(&s->log_failed)) {
		gs_plm_finished(s, id, now_us);
		return;
	}
	bool held = false;
	pthread_mutex_lock(&s->dur_mu);
	if (s->n_fin == s->cap_fin) {
		size_t cap = s->cap_fin ? s->cap_fin * 2 : 256;
		struct dur_fin *f = realloc(s->fin, cap * sizeof(*f));
		if (f) {
			s->fin = f;
			s->cap_fin = cap;
		}
	}
	if (s->n_fin < s->cap_fin && gs_id_map_put(&s->unsynced, id, shown) == GS_OK) {
		s->fin[s->n_fin++] = (struct dur_fin){id, lsn};
		held = true;
		pthread_cond_signal(&s->dur_cv);
	}
	pthread_mutex_unlock(&s->dur_mu);
	/* Out of memory: shown now, as without a log (the record follows). */
	if (!held)
		gs_plm_finished(s, id, now_us);
}

/* Hands the final states whose records are durable (all of them once the
 * log has failed: nothing better can come) to the PLM. */
static void finished_durable(gs_service *s, uint64_t durable_lsn, bool failed, uint64_t now_us)
{
	struct dur_fin *ready = NULL;
	size_t n = 0;
	pthread_mutex_lock(&s->dur_mu);
	if (s->n_fin) {
		ready = malloc(s->n_fin * sizeof(*ready));
		size_t keep = 0;
		for (size_t i = 0; i < s->n_fin; i++) {
			/* Without memory for the list, wait for the next round. */
			if (ready && (failed || s->fin[i].lsn <= durable_lsn))
				ready[n++] = s->fin[i];
			else
				s->fin[keep++] = s->fin[i];
		}
		s->n_fin = keep;
	}
	pthread_mutex_unlock(&s->dur_mu);
	if (n == 0) {
		free(ready);
		return;
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		gs_id_map_del(&s->unsynced, ready[i].id);
		gs_task_info info;
		if (gs_engine_task_info(s->eng, ready[i].id, &info) == GS_OK)
			gs_plm_finished(s, ready[i].id, now_us);
	}
	gs_plm_flush(s, now_us);
	pthread_mutex_unlock(&s->mu);
	free(ready);
}

/* --- held acknowledgements ------------------------------------------------ */

static void hold(gs_service *s, struct dur_ack *a)
{
	pthread_mutex_lock(&s->dur_mu);
	if (s->dur_tail)
		s->dur_tail->next = a;
	else
		s->dur_head = a;
	s->dur_tail = a;
	pthread_cond_signal(&s->dur_cv);
	pthread_mutex_unlock(&s->dur_mu);
}

static struct dur_ack *ack_new(enum dur_kind kind, struct gs_rpc_call *call, uint64_t lsn,
                               gs_pb_buf *reply, const uint64_t *ids, size_t n)
{
	struct dur_ack *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	if (n) {
		a->ids = malloc(n * sizeof(*ids));
		if (!a->ids) {
			free(a);
			return NULL;
		}
		memcpy(a->ids, ids, n * sizeof(*ids));
		a->n_ids = n;
	}
	a->kind = kind;
	a->lsn = lsn;
	a->call = call;
	gs_rpc_call_ref(call);
	a->reply = *reply; /* moved */
	gs_pb_buf_init(reply);
	return a;
}

int gs_dur_hold_reply(gs_service *s, struct gs_rpc_call *call, bool submit, uint64_t lsn,
                      gs_pb_buf *reply, const uint64_t *ids, size_t n)
{
	struct dur_ack *a = ack_new(submit ? DA_SUBMIT : DA_CANCEL, call, lsn, reply, ids, n);
	if (!a)
		return GS_ENOMEM;
	hold(s, a);
	return GS_OK;
}

int gs_dur_hold_stream(gs_service *s, struct waiter *w, uint64_t lsn, gs_pb_buf *acks,
                       const uint64_t *ids, size_t n)
{
	struct dur_ack *a = ack_new(DA_STREAM, w->call, lsn, acks, ids, n);
	if (!a)
		return GS_ENOMEM;
	pthread_mutex_lock(&s->mu);
	w->refs++;
	pthread_mutex_unlock(&s->mu);
	a->w = w;
	hold(s, a);
	return GS_OK;
}

static void ack_free(struct dur_ack *a)
{
	gs_rpc_call_unref(a->call);
	gs_pb_buf_free(&a->reply);
	free(a->ids);
	free(a);
}

/* The record is on disk: send the reply (and, for a stream, subscribe). */
static void deliver(gs_service *s, struct dur_ack *a, uint64_t now_us)
{
	if (a->kind != DA_STREAM) {
		if (a->reply.oom || gs_rpc_call_send(a->call, a->reply.data, a->reply.len) != GS_OK)
			gs_rpc_call_finish(a->call, GS_RPC_INTERNAL, "reply failed");
		else
			gs_rpc_call_finish(a->call, GS_RPC_OK, NULL);
		return;
	}
	struct waiter *w = a->w;
	pthread_mutex_lock(&s->mu);
	if (!w->closed && !a->reply.oom && a->reply.len &&
	    gs_rpc_call_send(a->call, a->reply.data, a->reply.len) != GS_OK) {
		gs_rpc_call_finish(a->call, GS_RPC_RESOURCE_EXHAUSTED, "client too slow");
		w->closed = true;
	}
	for (size_t i = 0; i < a->n_ids && !w->closed; i++) {
		gs_task_info info;
		const uint8_t *res;
		uint32_t res_len;
		if (gs_service_read(s, a->ids[i], &info, &res, &res_len) != GS_OK) {
			if (w->pending) /* gone meanwhile (cannot be fetched twice) */
				w->pending--;
			continue;
		}
		if (gs_plm_subscribe(s, a->ids[i], w) != GS_OK)
			continue; /* kept, fetchable by Wait */
		/* Finished before the ack, and durable (gs_service_read shows a
		 * final state only then; else finished_durable delivers it, to
		 * this subscription too). */
		if (gs_task_state_final(info.state))
			gs_plm_finished(s, a->ids[i], now_us);
	}
	gs_plm_flush(s, now_us);
	if (!w->closed && w->half_closed && w->pending == 0) {
		gs_rpc_call_finish(a->call, GS_RPC_OK, NULL);
		w->closed = true;
	}
	gs_plm_waiter_unref(s, w);
	pthread_mutex_unlock(&s->mu);
}

/* The log failed before the record was on disk: nothing is acknowledged. */
static void refuse(gs_service *s, struct dur_ack *a, uint64_t now_us)
{
	static const char msg[] = "write-ahead log failed: not acknowledged";
	pthread_mutex_lock(&s->mu);
	if (a->kind != DA_CANCEL)
		gs_dur_undo(s, a->ids, a->n_ids, now_us);
	if (a->kind == DA_STREAM) {
		struct waiter *w = a->w;
		w->pending = w->pending > a->n_ids ? w->pending - a->n_ids : 0;
		if (!w->closed)
			gs_rpc_call_finish(a->call, GS_RPC_UNAVAILABLE, msg);
		w->closed = true;
		gs_plm_waiter_unref(s, w);
	} else {
		gs_rpc_call_finish(a->call, GS_RPC_UNAVAILABLE, msg);
	}
	pthread_mutex_unlock(&s->mu);
}

void gs_service_durable(gs_service *s, uint64_t durable_lsn, int sync_rc)
{
	if (sync_rc == GS_EIO)
		log_failed(s);
	bool failed = atomic_load(&s->log_failed);
	struct dur_ack *ready = NULL, **tail = &ready;
	pthread_mutex_lock(&s->dur_mu);
	/* LSNs grow along the list, except across RPC threads racing to
	 * append: scan it all (it holds one entry per call in flight). */
	struct dur_ack **pp = &s->dur_head, *prev = NULL;
	while (*pp) {
		struct dur_ack *a = *pp;
		if (failed || a->lsn <= durable_lsn) {
			*pp = a->next;
			a->next = NULL;
			*tail = a;
			tail = &a->next;
		} else {
			prev = a;
			pp = &a->next;
		}
	}
	s->dur_tail = prev;
	pthread_mutex_unlock(&s->dur_mu);
	uint64_t now = gs_now_us();
	for (struct dur_ack *a = ready, *nx; a; a = nx) {
		nx = a->next;
		if (failed)
			refuse(s, a, now);
		else
			deliver(s, a, now);
		ack_free(a);
	}
	finished_durable(s, durable_lsn, failed, now);
	if (ready)
		gs_service_kick(s);
}

bool gs_service_acks_wait(gs_service *s, int timeout_ms)
{
	struct timespec until = gs_clock_after_ms(CLOCK_REALTIME, timeout_ms);
	pthread_mutex_lock(&s->dur_mu);
	if (!s->dur_head && !s->n_fin)
		pthread_cond_timedwait(&s->dur_cv, &s->dur_mu, &until);
	bool any = s->dur_head != NULL || s->n_fin;
	pthread_mutex_unlock(&s->dur_mu);
	return any;
}

void gs_dur_free_all(gs_service *s)
{
	pthread_mutex_lock(&s->dur_mu);
	struct dur_ack *a = s->dur_head;
	s->dur_head = s->dur_tail = NULL;
	free(s->fin);
	s->fin = NULL;
	s->n_fin = s->cap_fin = 0;
	pthread_mutex_unlock(&s->dur_mu);
	pthread_mutex_lock(&s->mu);
	gs_id_map_free(&s->unsynced);
	pthread_mutex_unlock(&s->mu);
	for (struct dur_ack *nx; a; a = nx) {
		nx = a->next;
		if (a->w) {
			pthread_mutex_lock(&s->mu);
			gs_plm_waiter_unref(s, a->w);
			pthread_mutex_unlock(&s->mu);
		}
		ack_free(a);
	}
}

/* --- snapshot and restore ------------------------------------------------- */

int gs_service_snapshot(void *arg, gs_wal_snap *snap)
{
	gs_service *s = arg;
	uint32_t max = gs_engine_task_slots_used(s->eng);
	int rc = GS_OK;
	/* Under mu a task seen live cannot be released (plm.c releases under
	 * mu), so its bytes stay put while they are copied; in chunks, so the
	 * RPC threads are held up for a moment at a time only. */
	for (uint32_t base = 0; base < max && rc == GS_OK; base += 4096) {
		pthread_mutex_lock(&s->mu);
		for (uint32_t slot = base; slot < max && slot < base + 4096 && rc == GS_OK;
		     slot++) {
			gs_task_info ti;
			if (gs_engine_task_at(s->eng, slot, &ti) != GS_OK)
				continue;
			const uint8_t *spec = NULL, *res = NULL;
			uint32_t spec_len = 0, res_len = 0;
			if (gs_engine_task_payload(s->eng, ti.id, &spec, &spec_len) != GS_OK)
				continue;
			if (gs_task_state_final(ti.state) &&
			    gs_engine_task_result(s->eng, ti.id, &res, &res_len) != GS_OK)
				continue;
			const char *qn = gs_engine_queue_name(s->eng, ti.queue);
			gs_wal_task t = {.id = ti.id,
			                 .state = ti.state,
			                 .queue = qn ? qn : "default",
			                 .priority = ti.priority,
			                 .max_retries = ti.max_retries,
			                 .timeout_ms = ti.timeout_ms,
			                 .submitted_us = ti.submitted_us,
			                 .not_before_us = ti.not_before_us,
			                 .spec = spec,
			                 .spec_len = spec_len,
			                 /* a QUEUED task's attempt is the next one */
			                 .attempt = gs_task_state_final(ti.state) ||
			                                    ti.state >= GS_TASK_ASSIGNED
			                                ? ti.attempt
			                                : (ti.attempt ? ti.attempt - 1 : 0),
			                 .status = ti.status,
			                 .reason = ti.reason,
			                 .finished_us = ti.finished_us,
			                 .result = res,
			                 .result_len = res_len};
			rc = gs_wal_snap_add(snap, &t);
		}
		pthread_mutex_unlock(&s->mu);
	}
	/* The live idempotency keys (keyed submits change them under mu only). */
	uint32_t cap = gs_engine_idem_capacity(s->eng), max_ids = gs_engine_idem_max_ids(s->eng);
	uint64_t *kids = rc == GS_OK ? malloc((size_t)max_ids * sizeof(*kids)) : NULL;
	if (rc == GS_OK && !kids)
		rc = GS_ENOMEM;
	for (uint32_t base = 0; base < cap && rc == GS_OK; base += 4096) {
		pthread_mutex_lock(&s->mu);
		for (uint32_t i = base; i < cap && i < base + 4096 && rc == GS_OK; i++) {
			gs_idem_info info;
			int krc = GS_EBUSY;
			for (int tries = 0; krc == GS_EBUSY && tries < 100; tries++)
				krc = gs_engine_idem_at(s->eng, i, &info, kids, max_ids);
			if (krc != GS_OK)
				continue;
			gs_wal_key k = {.key = info.key,
			                .key_len = info.key_len,
			                .digest = info.digest,
			                .created_us = info.created_us,
			                .ids = kids,
			                .n_ids = info.n};
			rc = gs_wal_snap_add_key(snap, &k);
		}
		pthread_mutex_unlock(&s->mu);
	}
	free(kids);
	/* After the walk: covers every ID issued before it ended. */
	gs_wal_snap_gen_high(snap, gs_engine_gen_high(s->eng));
	return rc;
}

struct fin {
	uint64_t id, finished_us;
};

static int fin_cmp(const void *a, const void *b)
{
	const struct fin *x = a, *y = b;
	return x->finished_us < y->finished_us ? -1 : x->finished_us > y->finished_us;
}

size_t gs_service_retain_found(gs_service *s)
{
	uint32_t max = gs_engine_task_slots_used(s->eng);
	size_t n = 0, cap = 0;
	struct fin *v = NULL;
	for (uint32_t slot = 0; slot < max; slot++) {
		gs_task_info ti;
		if (gs_engine_task_at(s->eng, slot, &ti) != GS_OK || !gs_task_state_final(ti.state))
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 256;
			struct fin *nv = realloc(v, c * sizeof(*nv));
			if (!nv)
				break; /* the rest stay until a Wait fetches them */
			v = nv;
			cap = c;
		}
		v[n++] = (struct fin){ti.id, ti.finished_us};
	}
	if (n)
		qsort(v, n, sizeof(*v), fin_cmp);
	uint64_t now = gs_now_us();
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		/* The TTL runs from when the result came, not from the restart. */
		uint64_t from = v[i].finished_us && v[i].finished_us < now ? v[i].finished_us : now;
		gs_plm_retain(s, v[i].id, from);
	}
	pthread_mutex_unlock(&s->mu);
	free(v);
	return n;
}
