/* service.c - the services' life cycle and the role loops' steps. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gs_clock.h"
#include "gs_error.h"
#include "rpc_tls.h"
#include "service_impl.h"

uint64_t gs_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void gs_worker_conn_unref(struct worker_conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	gs_rpc_call_unref(c->call);
	gs_pb_buf_free(&c->acks);
	free(c);
}

/* The worker table frees a removed record after its RCU grace period. */
static void conn_free(void *ctx, void *arg)
{
	(void)arg;
	gs_worker_conn_unref(ctx);
}

int gs_service_create(gs_engine *e, const gs_service_opts *o, gs_service **out)
{
	if (o && o->client_token && o->worker_token &&
	    strcmp(o->client_token, o->worker_token) == 0)
		return GS_EINVAL;
	gs_service *s = calloc(1, sizeof(*s));
	if (!s)
		return GS_ENOMEM;
	s->eng = e;
	if (o)
		s->o = *o;
	if (!s->o.heartbeat_ms)
		s->o.heartbeat_ms = 500;
	if (!s->o.worker_timeout_ms)
		s->o.worker_timeout_ms = 3000;
	if (!s->o.result_ttl_ms)
		s->o.result_ttl_ms = 300000;
	if (!s->o.max_batch)
		s->o.max_batch = 100000;
	s->o.client_token = NULL;
	s->o.worker_token = NULL;
	s->roles = s->o.roles ? s->o.roles & GS_ROLES_ALL : GS_ROLES_ALL;
	s->link = s->o.link;
	if (!s->roles || (s->roles != GS_ROLES_ALL && (!s->link || s->o.wal))) {
		free(s);
		return GS_EINVAL; /* roles apart need the segment's rings, and no log */
	}
	for (int r = 0; s->link && r < GS_ROLE_COUNT; r++)
		s->seen_starts[r] = gs_roles_starts(s->link, (enum gs_role)r);
	int rc = GS_ENOMEM;
	if (o && o->client_token && o->client_token[0]) {
		if (!(s->o.client_token = strdup(o->client_token)))
			goto fail;
		s->client_token_len = strlen(o->client_token);
	}
	if (o && o->worker_token && o->worker_token[0]) {
		if (!(s->o.worker_token = strdup(o->worker_token)))
			goto fail;
		s->worker_token_len = strlen(o->worker_token);
	}
	uint32_t mw = gs_engine_geom(e)->max_workers;
	if (!(s->batch.pos = malloc(mw * sizeof(*s->batch.pos))))
		goto fail;
	for (uint32_t i = 0; i < mw; i++)
		s->batch.pos[i] = -1;
	rc = gs_worker_table_create(conn_free, s, &s->workers);
	if (rc != GS_OK)
		goto fail;
	s->started_us = gs_now_us();
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->wake_mu, NULL);
	pthread_mutex_init(&s->sched_mu, NULL);
	pthread_cond_init(&s->wake_cv, NULL);
	pthread_mutex_init(&s->dur_mu, NULL);
	pthread_cond_init(&s->dur_cv, NULL);
	pthread_mutex_init(&s->ack_mu, NULL);
	pthread_mutex_init(&s->link_mu, NULL);
	s->waits.next_wait = s->waits.prev_wait = &s->waits;
	gs_delay_timer_init(&s->timer);
	*out = s;
	return GS_OK;
fail:
	gs_rpc_token_free((char *)s->o.client_token);
	gs_rpc_token_free((char *)s->o.worker_token);
	free(s->batch.pos);
	free(s);
	return rc;
}

#define WORKER_PREFIX "/gsched.v1.WorkerService/"
#define HEALTH_PREFIX "/grpc.health.v1.Health/"

/* The token check of every call (see service.h).  Messages are static and
 * never carry the presented or expected token. */
static int authorize(const struct gs_rpc_call *call, void *arg, const char **message)
{
	gs_service *s = arg;
	const char *path = gs_rpc_call_method(call);
	if (strncmp(path, HEALTH_PREFIX, sizeof(HEALTH_PREFIX) - 1) == 0)
		return GS_RPC_OK;
	bool worker = strncmp(path, WORKER_PREFIX, sizeof(WORKER_PREFIX) - 1) == 0;
	const char *want = worker ? s->o.worker_token : s->o.client_token;
	size_t want_len = worker ? s->worker_token_len : s->client_token_len;
	const char *other = worker ? s->o.client_token : s->o.worker_token;
	size_t other_len = worker ? s->client_token_len : s->worker_token_len;
	if (want == NULL)
		return GS_RPC_OK;
	const char *v = NULL, *tok = NULL;
	size_t vlen = 0, tlen = 0;
	if (gs_rpc_call_metadata(call, "authorization", &v, &vlen) != GS_OK) {
		*message = "missing credentials: send \"authorization: Bearer <token>\"";
		return GS_RPC_UNAUTHENTICATED;
	}
	tlen = gs_rpc_bearer_parse(v, vlen, &tok);
	if (tlen == 0) {
		*message = "malformed authorization header: expected \"Bearer <token>\"";
		return GS_RPC_UNAUTHENTICATED;
	}
	/* Both comparisons always run: the time taken does not say which matched. */
	bool ok = gs_rpc_token_equal(tok, tlen, want, want_len);
	bool is_other = other != NULL && gs_rpc_token_equal(tok, tlen, other, other_len);
	if (ok)
		return GS_RPC_OK;
	if (is_other) {
		*message = worker ? "a client token cannot connect as a worker"
		                  : "a worker token cannot call the client or admin API";
		return GS_RPC_PERMISSION_DENIED;
	}
	*message = "invalid token";
	return GS_RPC_UNAUTHENTICATED;
}

int gs_service_register(gs_service *s, struct gs_rpc_server *srv)
{
	int rc = GS_OK;
	if (s->o.client_token || s->o.worker_token)
		rc = gs_rpc_server_set_auth(srv, authorize, s);
	bool plm = gs_service_has(s, GS_ROLE_PLM), reg = gs_service_has(s, GS_ROLE_REGISTER);
	if (rc == GS_OK && plm)
		rc = gs_task_service_register(s, srv);
	if (rc == GS_OK && reg)
		rc = gs_worker_service_register(s, srv);
	if (rc == GS_OK && plm)
		rc = gs_admin_service_register(s, srv);
	if (rc == GS_OK)
		rc = gs_rpc_health_register(srv, &s->health);
	if (rc == GS_OK) {
		gs_rpc_health_set(s->health, "", true);
		if (plm)
			gs_rpc_health_set(s->health, "gsched.v1.TaskService", true);
		if (reg)
			gs_rpc_health_set(s->health, "gsched.v1.WorkerService", true);
	}
	return rc;
}

void gs_service_destroy(gs_service *s)
{
	if (!s)
		return;
	gs_worker_acks_flush(s, true);
	gs_worker_table_destroy(s->workers);
	gs_dur_free_all(s);
	pthread_mutex_lock(&s->mu);
	gs_plm_free(s);
	pthread_mutex_unlock(&s->mu);
	gs_delay_timer_free(&s->timer);
	for (size_t i = 0; i < s->batch.cap; i++)
		gs_pb_buf_free(&s->batch.ent[i].buf);
	free(s->batch.ent);
	free(s->batch.pos);
	free(s->ev_ids);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->wake_mu);
	pthread_mutex_destroy(&s->sched_mu);
	pthread_cond_destroy(&s->wake_cv);
	pthread_mutex_destroy(&s->dur_mu);
	pthread_cond_destroy(&s->dur_cv);
	pthread_mutex_destroy(&s->ack_mu);
	pthread_mutex_destroy(&s->link_mu);
	gs_rpc_token_free((char *)s->o.client_token);
	gs_rpc_token_free((char *)s->o.worker_token);
	free(s);
}

void gs_service_thread_online(gs_service *s)
{
	(void)s;
	gs_worker_table_thread_online();
}

void gs_service_thread_offline(gs_service *s)
{
	(void)s;
	gs_worker_table_thread_offline();
}

void gs_service_rpc_thread_start(void *svc)
{
	gs_service_thread_online(svc);
}

void gs_service_rpc_thread_stop(void *svc)
{
	gs_service_thread_offline(svc);
}

int gs_service_sleep_ms(uint64_t now_us, uint64_t next_due_us, int cap_ms)
{
	if (!next_due_us)
		return cap_ms;
	uint64_t d = next_due_us > now_us ? (next_due_us - now_us + 999) / 1000 : 0;
	return d < (uint64_t)cap_ms ? (int)d : cap_ms;
}

uint32_t gs_service_tick_ms(const gs_service *s)
{
	uint32_t q = s->o.heartbeat_ms / 4;
	return q < 5 ? 5 : (q > 50 ? 50 : q);
}

void gs_service_wake(gs_service *s)
{
	atomic_store_explicit(&s->wake_flag, true, memory_order_release);
	/* seq_cst pair with wait_work: it sets `sleeping` then re-reads the
	 * flag, we set the flag then read `sleeping`: one of us sees the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&s->sleeping, memory_order_relaxed)) {
		pthread_mutex_lock(&s->wake_mu);
		pthread_cond_signal(&s->wake_cv);
		pthread_mutex_unlock(&s->wake_mu);
	}
}

void gs_service_wait_work(gs_service *s, int timeout_ms)
{
	if (atomic_exchange_explicit(&s->wake_flag, false, memory_order_acq_rel))
		return;
	struct timespec until = gs_clock_after_ms(CLOCK_REALTIME, timeout_ms);
	pthread_mutex_lock(&s->wake_mu);
	atomic_store_explicit(&s->sleeping, true, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&s->wake_flag, memory_order_acquire))
		pthread_cond_timedwait(&s->wake_cv, &s->wake_mu, &until);
	atomic_store_explicit(&s->sleeping, false, memory_order_relaxed);
	pthread_mutex_unlock(&s->wake_mu);
	atomic_store_explicit(&s->wake_flag, false, memory_order_release);
}

/* Notes an assigned task for its Watch event (under sched_mu); without
 * memory the event is skipped (events are informational). */
static void ev_add(gs_service *s, uint64_t id)
{
	if (s->n_ev == s->cap_ev) {
		size_t cap = s->cap_ev ? s->cap_ev * 2 : 256;
		uint64_t *v = realloc(s->ev_ids, cap * sizeof(*v));
		if (!v)
			return;
		s->ev_ids = v;
		s->cap_ev = cap;
	}
	s->ev_ids[s->n_ev++] = id;
}

/* One dispatch pass of at most `budget` tasks; the caller holds sched_mu.
 * With the Register in another process, each assignment goes on its ring,
 * and the pass stops while the ring is full (the Register rings our bell
 * when it has taken some). */
static size_t schedule_locked(gs_service *s, uint64_t now_us, size_t budget, bool *more)
{
	size_t total = 0;
	bool apart = !gs_service_has(s, GS_ROLE_REGISTER);
	*more = false;
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		if (!gs_engine_queue_name(s->eng, q))
			continue;
		/* A bounded turn per queue keeps the queues fair to each other. */
		size_t turn = 0;
		for (; turn < budget; turn++) {
			if (apart && gs_roles_ring_free(s->link, GS_RING_ASSIGN) == 0)
				break;
			gs_assignment a;
			if (gs_engine_dispatch(s->eng, q, now_us, &a) != GS_OK)
				break;
			if (s->o.wal)
				gs_dur_assign(s, &a, now_us);
			if (apart)
				gs_roles_push(s->link, GS_RING_ASSIGN, &a.task,
				              1); /* room checked */
			else
				gs_worker_batch_add(s, &a);
			if (atomic_load_explicit(&s->watchers, memory_order_relaxed))
				ev_add(s, a.task);
		}
		total += turn;
		*more |= turn == budget;
	}
	gs_worker_batch_flush(s);
	if (apart && total)
		gs_roles_bell_ring(s->link, GS_ROLE_REGISTER);
	atomic_fetch_add_explicit(&s->dispatched, total, memory_order_relaxed);
	gs_plm_events(s, s->ev_ids, s->n_ev, now_us); /* ASSIGNED, after the sends */
	s->n_ev = 0;
	return total;
}

size_t gs_service_schedule(gs_service *s, uint64_t now_us, uint64_t *next_due_us)
{
	size_t released = 0, total = 0;
	bool more;
	pthread_mutex_lock(&s->sched_mu);
	gs_delay_timer_poll(&s->timer, s->eng, now_us, next_due_us, &released);
	if (!atomic_load_explicit(&s->stopping, memory_order_acquire))
		total = schedule_locked(s, now_us, 4096, &more);
	pthread_mutex_unlock(&s->sched_mu);
	return total;
}

void gs_service_kick(gs_service *s)
{
	if (!gs_service_has(s, GS_ROLE_SCHEDULER)) {
		gs_roles_bell_ring(s->link, GS_ROLE_SCHEDULER);
		return;
	}
	if (atomic_load_explicit(&s->stopping, memory_order_acquire) ||
	    pthread_mutex_trylock(&s->sched_mu) != 0) {
		gs_service_wake(s);
		return;
	}
	bool more;
	schedule_locked(s, gs_now_us(), 64, &more);
	pthread_mutex_unlock(&s->sched_mu);
	if (more)
		gs_service_wake(s); /* a backlog: the scheduler thread takes it */
}

void gs_service_tick(gs_service *s, uint64_t now_us)
{
	if (gs_service_has(s, GS_ROLE_REGISTER)) {
		uint64_t dead[64];
		size_t n = gs_engine_worker_expired(
		    s->eng, now_us, (uint64_t)s->o.worker_timeout_ms * 1000, dead, 64);
		for (size_t i = 0; i < n; i++)
			gs_worker_lost(s, dead[i], now_us);
		gs_worker_acks_flush(s, false);
	}
	if (!gs_service_has(s, GS_ROLE_PLM))
		return;
	pthread_mutex_lock(&s->mu);
	for (struct waiter *w = s->waits.next_wait, *nx; w != &s->waits; w = nx) {
		nx = w->next_wait;
		if (w->deadline_us <= now_us)
			gs_plm_wait_reply(s, w, false);
	}
	gs_plm_expire(s, now_us);
	pthread_mutex_unlock(&s->mu);
}

void gs_service_begin_shutdown(gs_service *s)
{
	atomic_store_explicit(&s->stopping, true, memory_order_release);
	if (s->health) {
		gs_rpc_health_set(s->health, "", false);
		gs_rpc_health_set(s->health, "gsched.v1.TaskService", false);
		gs_rpc_health_set(s->health, "gsched.v1.WorkerService", false);
	}
	gs_service_wake(s);
}

void gs_service_counters_get(gs_service *s, gs_service_counters *out)
{
	out->dispatched = atomic_load(&s->dispatched);
	out->results = atomic_load(&s->results);
	out->stale_results = atomic_load(&s->stale_results);
	out->workers_lost = atomic_load(&s->workers_lost);
	out->in_flight = 0;
	for (uint32_t i = 0;; i++) {
		gs_worker_info wi;
		if (i >= gs_engine_geom(s->eng)->max_workers)
			break;
		if (gs_engine_worker_at(s->eng, i, &wi) == GS_OK)
			out->in_flight += wi.load;
	}
}

int gs_service_read(gs_service *s, uint64_t id, gs_task_info *info, const uint8_t **res,
                    uint32_t *res_len)
{
	int rc = gs_engine_task_info(s->eng, id, info);
	if (rc != GS_OK)
		return rc;
	*res = NULL;
	*res_len = 0;
	uint32_t shown;
	if (gs_id_map_get(&s->unsynced, id, &shown)) {
		/* Final, but not on disk yet (durable.c): not final to anyone. */
		info->state = shown;
		info->finished_us = 0;
		return GS_OK;
	}
	if (gs_task_state_final(info->state))
		gs_engine_task_result(s->eng, id, res, res_len);
	return GS_OK;
}

void gs_service_reply(struct gs_rpc_call *call, gs_pb_buf *b)
{
	if (b->oom || gs_rpc_call_send(call, b->data, b->len) != GS_OK)
		gs_rpc_call_finish(call, GS_RPC_RESOURCE_EXHAUSTED, "reply too large");
	else
		gs_rpc_call_finish(call, GS_RPC_OK, NULL);
	gs_pb_buf_free(b);
}

void gs_service_unary_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	(void)ud;
	(void)cancelled;
	gs_rpc_call_unref(call);
}
