/*
 * plm.c - the Process Lifecycle Manager's delivery side: who waits for which
 * task, handing each final result to its waiters, and keeping unfetched
 * results until their time-to-live ends.  Every function runs under s->mu.
 *
 * A result handed to a Wait or a SubmitStream has been fetched: the task is
 * released at once and its ID stops resolving.  A result nobody waits for is
 * retained for result_ttl_ms, then released.
 */
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"
#include "service_impl.h"

static size_t bucket_of(const gs_service *s, uint64_t id)
{
	uint64_t h = id * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32) & (s->n_buckets - 1);
}

static int grow(gs_service *s)
{
	size_t n = s->n_buckets ? s->n_buckets * 2 : 1024;
	struct sub **b = calloc(n, sizeof(*b));
	if (!b)
		return GS_ENOMEM;
	struct sub **old = s->buckets;
	size_t old_n = s->n_buckets;
	s->buckets = b;
	s->n_buckets = n;
	for (size_t i = 0; i < old_n; i++) {
		for (struct sub *x = old[i], *nx; x; x = nx) {
			nx = x->next;
			size_t k = bucket_of(s, x->id);
			x->next = b[k];
			b[k] = x;
		}
	}
	free(old);
	return GS_OK;
}

int gs_plm_subscribe(gs_service *s, uint64_t id, struct waiter *w)
{
	if (s->n_subs >= s->n_buckets && grow(s) != GS_OK && !s->n_buckets)
		return GS_ENOMEM;
	struct sub *x = malloc(sizeof(*x));
	if (!x)
		return GS_ENOMEM;
	size_t k = bucket_of(s, id);
	x->id = id;
	x->w = w;
	x->next = s->buckets[k];
	s->buckets[k] = x;
	s->n_subs++;
	w->refs++;
	return GS_OK;
}

void gs_plm_waiter_unref(gs_service *s, struct waiter *w)
{
	(void)s;
	if (--w->refs > 0)
		return;
	if (w->call)
		gs_rpc_call_unref(w->call);
	free(w->ids);
	free(w->out_ids);
	gs_pb_buf_free(&w->out);
	free(w);
}

/* Removes w's subscription to id; returns 1 if there was one (its
 * reference on w is then the caller's to drop), else 0. */
static unsigned unsubscribe(gs_service *s, uint64_t id, struct waiter *w)
{
	if (!s->n_buckets)
		return 0; /* nothing was ever subscribed */
	struct sub **pp = &s->buckets[bucket_of(s, id)];
	while (*pp) {
		struct sub *x = *pp;
		if (x->id == id && x->w == w) {
			*pp = x->next;
			free(x);
			s->n_subs--;
			return 1;
		}
		pp = &x->next;
	}
	return 0;
}

void gs_plm_unsubscribe_all(gs_service *s, struct waiter *w)
{
	if (w->kind == W_WAIT) {
		unsigned removed = 0;
		for (size_t i = 0; i < w->n_ids; i++)
			removed += unsubscribe(s, w->ids[i], w);
		/* Drop the subscriptions' references, the last through the usual
		 * path (which frees w if nothing else holds it). */
		if (removed) {
			w->refs -= removed - 1;
			gs_plm_waiter_unref(s, w);
		}
		return;
	}
	/* Streams are subscribed to many IDs: sweep the table (rare: a stream
	 * that closes with results still pending). */
	w->refs++;
	for (size_t k = 0; k < s->n_buckets; k++) {
		struct sub **pp = &s->buckets[k];
		while (*pp) {
			struct sub *x = *pp;
			if (x->w == w) {
				*pp = x->next;
				free(x);
				s->n_subs--;
				gs_plm_waiter_unref(s, w);
			} else {
				pp = &x->next;
			}
		}
	}
	gs_plm_waiter_unref(s, w);
}

int gs_plm_release(gs_service *s, uint64_t id)
{
	int rc = gs_engine_release(s->eng, id);
	if (rc == GS_OK && s->o.wal)
		gs_dur_release(s, id);
	return rc;
}

void gs_plm_retain(gs_service *s, uint64_t id, uint64_t now_us)
{
	if (s->ret_len == s->ret_cap) {
		size_t cap = s->ret_cap ? s->ret_cap * 2 : 4096;
		struct retained *r = malloc(cap * sizeof(*r));
		if (!r)
			return; /* kept until a Wait or Get fetches it; never lost */
		for (size_t i = 0; i < s->ret_len; i++)
			r[i] = s->ret[(s->ret_head + i) % s->ret_cap];
		free(s->ret);
		s->ret = r;
		s->ret_cap = cap;
		s->ret_head = 0;
	}
	s->ret[(s->ret_head + s->ret_len) % s->ret_cap] =
	    (struct retained){id, now_us + (uint64_t)s->o.result_ttl_ms * 1000};
	s->ret_len++;
}

void gs_plm_expire(gs_service *s, uint64_t now_us)
{
	while (s->ret_len && s->ret[s->ret_head].expires_us <= now_us) {
		gs_plm_release(s, s->ret[s->ret_head].id); /* may be fetched already */
		s->ret_head = (s->ret_head + 1) % s->ret_cap;
		s->ret_len--;
	}
}

static void wait_list_remove(struct waiter *w)
{
	if (w->prev_wait) {
		w->prev_wait->next_wait = w->next_wait;
		w->next_wait->prev_wait = w->prev_wait;
		w->prev_wait = w->next_wait = NULL;
	}
}

/* Replies to a Wait with every task's current state; releases the final ones. */
void gs_plm_wait_reply(gs_service *s, struct waiter *w, bool complete)
{
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	for (size_t i = 0; i < w->n_ids; i++) {
		gs_task_info info;
		const uint8_t *res = NULL;
		uint32_t res_len = 0;
		if (gs_service_read(s, w->ids[i], &info, &res, &res_len) != GS_OK) {
			memset(&info, 0, sizeof(info));
			info.id = w->ids[i];
			info.state = GS_TASK_FREE; /* UNKNOWN */
		}
		gs_codec_put_result(&b, 1, &info, res, res_len, w->include_output);
	}
	gs_pb_put_varint(&b, 2, complete ? 1 : 0);
	if (!w->closed) {
		if (b.oom)
			gs_rpc_call_finish(w->call, GS_RPC_RESOURCE_EXHAUSTED, "out of memory");
		else if (gs_rpc_call_send(w->call, b.data, b.len) == GS_OK)
			gs_rpc_call_finish(w->call, GS_RPC_OK, NULL);
		else
			gs_rpc_call_finish(w->call, GS_RPC_RESOURCE_EXHAUSTED,
			                   "reply over the message limit");
		/* Delivered: the client has fetched these results (the ones
		 * it was shown as final: gs_service_read). */
		for (size_t i = 0; i < w->n_ids; i++) {
			gs_task_info info;
			const uint8_t *res;
			uint32_t res_len;
			if (gs_service_read(s, w->ids[i], &info, &res, &res_len) == GS_OK &&
			    gs_task_state_final(info.state))
				gs_plm_release(s, w->ids[i]);
		}
	}
	w->closed = true;
	gs_pb_buf_free(&b);
	wait_list_remove(w);
	gs_plm_unsubscribe_all(s, w);
}

/* Gathers one result or event into w->out; true when it is a SubmitStream's
 * result (the flush releases the task once it is sent). */
void gs_plm_mark_dirty(gs_service *s, struct waiter *w)
{
	if (!w->dirty) {
		w->dirty = true;
		w->refs++; /* the dirty list's reference */
		w->next_dirty = s->dirty;
		s->dirty = w;
	}
}

static bool stream_deliver(gs_service *s, struct waiter *w, uint64_t id)
{
	gs_task_info info;
	const uint8_t *res;
	uint32_t res_len;
	if (w->closed || gs_service_read(s, id, &info, &res, &res_len) != GS_OK)
		return false;
	gs_pb_buf *b = &w->out;
	if (w->kind == W_STREAM) {
		gs_codec_put_result(b, 2, &info, res, res_len, true);
	} else {
		gs_codec_put_event(b, 1, &info, info.finished_us, res, res_len, true,
		                   w->include_output);
	}
	if (w->pending)
		w->pending--;
	gs_plm_mark_dirty(s, w);
	if (w->kind != W_STREAM)
		return false;
	if (w->n_out_ids == w->cap_out_ids) {
		size_t cap = w->cap_out_ids ? w->cap_out_ids * 2 : 64;
		uint64_t *ids = realloc(w->out_ids, cap * sizeof(*ids));
		if (!ids)
			return false; /* kept instead: fetchable by Wait until its TTL */
		w->out_ids = ids;
		w->cap_out_ids = cap;
	}
	w->out_ids[w->n_out_ids++] = id;
	return true;
}

void gs_plm_flush(gs_service *s, uint64_t now_us)
{
	while (s->dirty) {
		struct waiter *w = s->dirty;
		s->dirty = w->next_dirty;
		w->dirty = false;
		bool sent = false;
		if (!w->closed && w->out.oom) {
			/* Acks or results could not be gathered: end the stream
			 * rather than leave the client without them. */
			gs_rpc_call_finish(w->call, GS_RPC_RESOURCE_EXHAUSTED, "out of memory");
			w->closed = true;
		} else if (!w->closed && w->out.len) {
			int rc = gs_rpc_call_send(w->call, w->out.data, w->out.len);
			sent = rc == GS_OK;
			if (!sent) {
				/* The client stopped reading (or the message is over the
				 * limit): end its stream rather than grow without bound. */
				gs_rpc_call_finish(w->call, GS_RPC_RESOURCE_EXHAUSTED,
				                   rc == GS_ETOOBIG
				                       ? "results over the message size limit"
				                       : "client too slow: outbound queue full");
				w->closed = true;
			}
		}
		/* Sent: fetched, released.  Not sent: kept for Wait until its TTL. */
		for (size_t i = 0; i < w->n_out_ids; i++) {
			if (sent)
				gs_plm_release(s, w->out_ids[i]);
			else
				gs_plm_retain(s, w->out_ids[i], now_us);
		}
		w->n_out_ids = 0;
		gs_pb_buf_reset(&w->out);
		if (w->half_closed && w->pending == 0 && !w->closed) {
			gs_rpc_call_finish(w->call, GS_RPC_OK, NULL);
			w->closed = true;
		}
		gs_plm_waiter_unref(s, w);
	}
}

/* Appends one event for a Watch call (its stream never counts it as a
 * result: Watch releases nothing). */
static void watch_put(gs_service *s, struct waiter *w, const gs_task_info *info, const uint8_t *res,
                      uint32_t res_len, bool final, uint64_t now_us)
{
	if (w->closed)
		return;
	gs_codec_put_event(&w->out, 1, info,
	                   final && info->finished_us ? info->finished_us : now_us, res, res_len,
	                   final, w->include_output);
	gs_plm_mark_dirty(s, w);
}

static void queue_watchers_put(gs_service *s, const gs_task_info *info, const uint8_t *res,
                               uint32_t res_len, bool final, uint64_t now_us)
{
	if (info->queue >= GS_MAX_QUEUES)
		return;
	for (struct waiter *w = s->qwatch[info->queue]; w; w = w->next_qwatch)
		watch_put(s, w, info, res, res_len, final, now_us);
}

void gs_plm_queue_watch(gs_service *s, struct waiter *w, bool on)
{
	if (on) {
		w->prev_qwatch = NULL;
		w->next_qwatch = s->qwatch[w->queue];
		if (w->next_qwatch)
			w->next_qwatch->prev_qwatch = w;
		s->qwatch[w->queue] = w;
		return;
	}
	if (w->prev_qwatch)
		w->prev_qwatch->next_qwatch = w->next_qwatch;
	else if (s->qwatch[w->queue] == w)
		s->qwatch[w->queue] = w->next_qwatch;
	if (w->next_qwatch)
		w->next_qwatch->prev_qwatch = w->prev_qwatch;
	w->next_qwatch = w->prev_qwatch = NULL;
}

void gs_plm_event(gs_service *s, uint64_t id, uint64_t now_us)
{
	gs_task_info info;
	const uint8_t *res;
	uint32_t res_len;
	if (gs_service_read(s, id, &info, &res, &res_len) != GS_OK)
		return;
	if (gs_task_state_final(info.state))
		return; /* final: gs_plm_finished tells */
	queue_watchers_put(s, &info, NULL, 0, false, now_us);
	if (!s->n_buckets)
		return;
	for (struct sub *x = s->buckets[bucket_of(s, id)]; x; x = x->next)
		if (x->id == id && x->w->kind == W_WATCH)
			watch_put(s, x->w, &info, NULL, 0, false, now_us);
}

void gs_plm_events(gs_service *s, const uint64_t *ids, size_t n, uint64_t now_us)
{
	if (n == 0 || atomic_load_explicit(&s->watchers, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++)
		gs_plm_event(s, ids[i], now_us);
	gs_plm_flush(s, now_us);
	pthread_mutex_unlock(&s->mu);
}

void gs_plm_finished(gs_service *s, uint64_t id, uint64_t now_us)
{
	bool fetched = false, handed = false;
	if (atomic_load_explicit(&s->watchers, memory_order_relaxed)) {
		/* Queue watches first: a waiter below may release the task. */
		gs_task_info info;
		const uint8_t *res;
		uint32_t res_len;
		if (gs_service_read(s, id, &info, &res, &res_len) == GS_OK)
			queue_watchers_put(s, &info, res, res_len, true, now_us);
	}
	struct sub *none = NULL;
	/* No table yet (nothing was ever subscribed): nobody waits. */
	struct sub **pp = s->n_buckets ? &s->buckets[bucket_of(s, id)] : &none;
	while (*pp) {
		struct sub *x = *pp;
		if (x->id != id) {
			pp = &x->next;
			continue;
		}
		struct waiter *w = x->w;
		*pp = x->next;
		free(x);
		s->n_subs--;
		w->refs++; /* ours, while delivering */
		if (w->kind == W_WAIT) {
			if (!w->closed && w->remaining > 0) {
				w->remaining--;
				if (w->any || w->remaining == 0) {
					gs_plm_wait_reply(s, w, true);
					fetched = true;
				}
			}
		} else {
			handed |= stream_deliver(s, w, id);
		}
		w->refs--; /* the subscription's reference: ours keeps w alive */
		gs_plm_waiter_unref(s, w);
		pp = &s->buckets[bucket_of(s, id)]; /* the chain may have changed */
	}
	if (fetched && !handed)
		gs_plm_release(s, id);
	else if (!handed)
		gs_plm_retain(s, id, now_us);
	/* handed to a stream: released or retained by gs_plm_flush */
}

void gs_plm_free(gs_service *s)
{
	for (size_t k = 0; k < s->n_buckets; k++) {
		for (struct sub *x = s->buckets[k], *nx; x; x = nx) {
			nx = x->next;
			gs_plm_waiter_unref(s, x->w);
			free(x);
		}
	}
	free(s->buckets);
	free(s->ret);
	s->buckets = NULL;
	s->ret = NULL;
	s->n_buckets = s->n_subs = s->ret_len = s->ret_cap = 0;
}

static const char *const builtin_handlers[] = {"noop", "echo", "sleep"};

bool gs_plm_handler_known(const char *name, void *arg)
{
	gs_service *s = arg;
	if (!gs_service_has(s, GS_ROLE_REGISTER))
		return true; /* workers advertise to another process (service.h) */
	for (size_t i = 0; i < sizeof(builtin_handlers) / sizeof(builtin_handlers[0]); i++)
		if (strcmp(name, builtin_handlers[i]) == 0)
			return true;
	for (size_t i = 0; i < s->n_handlers; i++)
		if (strcmp(name, s->handlers[i]) == 0)
			return true;
	return false;
}

void gs_plm_add_handler(gs_service *s, const char *name)
{
	if (!name[0] || strlen(name) >= sizeof(s->handlers[0]) || gs_plm_handler_known(name, s) ||
	    s->n_handlers >= sizeof(s->handlers) / sizeof(s->handlers[0]))
		return;
	strcpy(s->handlers[s->n_handlers++], name);
}
