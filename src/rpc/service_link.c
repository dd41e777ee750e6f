/*
 * service_link.c - a role process's hand-offs to the roles in the other
 * processes (service.h, "Roles as processes"; the rings are roles.h's).
 *
 * The rings are hints: a task's state in the engine is what counts, so each
 * entry taken is checked against it, a repeat does no harm (a worker ignores
 * an assignment it has; a final task handed to the PLM twice is retained
 * twice, and its second release finds nothing), and what a dead process
 * lost is found again by gs_service_link_resync after the next pause.
 */
#include <stdlib.h>

#include "gs_error.h"
#include "service_impl.h"

#define TAKE 255 /* entries per pop: a multiple of 3 (cancel triples) */

void gs_link_done(gs_service *s, uint64_t id)
{
	pthread_mutex_lock(&s->link_mu);
	if (!gs_roles_push(s->link, GS_RING_DONE, &id, 1))
		gs_roles_overflow_set(s->link, GS_RING_DONE); /* the PLM scans instead */
	pthread_mutex_unlock(&s->link_mu);
	gs_roles_bell_ring(s->link, GS_ROLE_PLM);
}

void gs_link_cancel(gs_service *s, uint64_t wid, uint64_t task, uint32_t attempt)
{
	uint64_t t[3] = {task, wid, attempt};
	pthread_mutex_lock(&s->link_mu);
	/* Full: the worker is not told; its result comes back stale and is
	 * ignored, as for any cancel that crosses a result. */
	bool ok = gs_roles_push(s->link, GS_RING_CANCEL, t, 3);
	pthread_mutex_unlock(&s->link_mu);
	if (ok)
		gs_roles_bell_ring(s->link, GS_ROLE_REGISTER);
}

void gs_link_drain(gs_service *s, uint64_t wid)
{
	uint64_t t[3] = {0, wid, 0}; /* task 0: a drain, not a cancel */
	pthread_mutex_lock(&s->link_mu);
	bool ok = gs_roles_push(s->link, GS_RING_CANCEL, t, 3);
	pthread_mutex_unlock(&s->link_mu);
	if (ok)
		gs_roles_bell_ring(s->link, GS_ROLE_REGISTER);
}

/* Adds task id to its worker's message of this pass if it is still
 * ASSIGNED (under sched_mu).  A worker with no stream here is declared lost
 * by the send (gs_worker_batch_flush), so that its tasks run elsewhere. */
static void assign_again(gs_service *s, uint64_t id)
{
	gs_task_info info;
	if (gs_engine_task_info(s->eng, id, &info) != GS_OK || info.state != GS_TASK_ASSIGNED)
		return;
	gs_assignment a = {.task = id,
	                   .worker = info.worker,
	                   .attempt = info.attempt,
	                   .queue = info.queue,
	                   .priority = info.priority,
	                   .timeout_ms = info.timeout_ms};
	gs_worker_batch_add(s, &a);
}

static size_t drain_register(gs_service *s)
{
	uint64_t ids[TAKE];
	size_t n, total = 0;
	pthread_mutex_lock(&s->sched_mu);
	while ((n = gs_roles_pop(s->link, GS_RING_ASSIGN, ids, TAKE)) > 0) {
		for (size_t i = 0; i < n; i++)
			assign_again(s, ids[i]);
		total += n;
	}
	gs_worker_batch_flush(s);
	pthread_mutex_unlock(&s->sched_mu);
	if (total)
		gs_roles_bell_ring(s->link, GS_ROLE_SCHEDULER); /* the ring has room again */
	while ((n = gs_roles_pop(s->link, GS_RING_CANCEL, ids, TAKE)) > 0) {
		for (size_t i = 0; i + 2 < n; i += 3) {
			if (ids[i] == 0)
				gs_worker_send_drain(s, ids[i + 1], "drain requested");
			else
				gs_worker_send_cancel(s, ids[i + 1], ids[i], (uint32_t)ids[i + 2]);
		}
		total += n;
	}
	return total;
}

/* The PLM: every final task whose ID is in ids goes to its waiters. */
static void deliver(gs_service *s, const uint64_t *ids, size_t n, uint64_t now_us)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		gs_task_info info;
		if (gs_engine_task_info(s->eng, ids[i], &info) == GS_OK &&
		    gs_task_state_final(info.state))
			gs_plm_finished(s, ids[i], now_us);
	}
	gs_plm_flush(s, now_us);
	pthread_mutex_unlock(&s->mu);
}

/* The PLM's scan for what the ring did not bring: the tasks its waiters
 * wait for, then every final task (retained, so that it is released). */
static void plm_rescan(gs_service *s, uint64_t now_us)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	pthread_mutex_lock(&s->mu);
	if (s->n_subs && (ids = malloc(s->n_subs * sizeof(*ids))) != NULL)
		for (size_t b = 0; b < s->n_buckets; b++)
			for (struct sub *x = s->buckets[b]; x && n < s->n_subs; x = x->next)
				ids[n++] = x->id;
	pthread_mutex_unlock(&s->mu);
	deliver(s, ids, n, now_us);
	free(ids);
	gs_service_retain_found(s);
}

size_t gs_service_link_drain(gs_service *s, uint64_t now_us)
{
	if (!s->link)
		return 0;
	size_t total = 0;
	if (gs_service_has(s, GS_ROLE_REGISTER) && !gs_service_has(s, GS_ROLE_SCHEDULER))
		total += drain_register(s);
	if (gs_service_has(s, GS_ROLE_PLM) && !gs_service_has(s, GS_ROLE_REGISTER)) {
		bool rescan = gs_roles_overflow_take(s->link, GS_RING_DONE);
		uint64_t ids[TAKE];
		size_t n;
		while ((n = gs_roles_pop(s->link, GS_RING_DONE, ids, TAKE)) > 0) {
			deliver(s, ids, n, now_us);
			total += n;
		}
		if (rescan)
			plm_rescan(s, now_us);
	}
	return total;
}

/* Did role r start again since this process last looked?  Updates the note. */
static bool restarted(gs_service *s, enum gs_role r)
{
	uint64_t now = gs_roles_starts(s->link, r);
	bool changed = now != s->seen_starts[r];
	s->seen_starts[r] = now;
	return changed;
}

/* The Register after a pause: its workers' heartbeats may wait behind the
 * gate still, and the pause counts as heard from them (else a long repair
 * would have them all expire at the next tick). */
static void refresh_workers(gs_service *s, uint64_t now_us)
{
	uint32_t mw = gs_engine_geom(s->eng)->max_workers;
	gs_worker_table_read_lock();
	for (uint32_t i = 0; i < mw; i++) {
		gs_worker_info wi;
		if (gs_engine_worker_at(s->eng, i, &wi) == GS_OK &&
		    (wi.state == GS_WORKER_ALIVE || wi.state == GS_WORKER_DRAINING) &&
		    gs_worker_table_find(s->workers, wi.id) != NULL)
			gs_engine_worker_heartbeat(s->eng, wi.id, now_us);
	}
	gs_worker_table_read_unlock();
}

void gs_service_link_resync(gs_service *s, uint64_t now_us)
{
	if (!s->link)
		return;
	/* The scheduler needs nothing: the repair put every delayed task back on
	 * the engine's inbox, and the timer's older entries for them are
	 * harmless (a second release of a task is refused). */
	if (gs_service_has(s, GS_ROLE_SCHEDULER))
		gs_roles_bell_ring(s->link, GS_ROLE_SCHEDULER);
	if (gs_service_has(s, GS_ROLE_REGISTER)) {
		refresh_workers(s, now_us);
		/* Only a scheduler that died between an assignment and its push
		 * can have lost one: then every ASSIGNED task of a worker whose
		 * stream is here is sent again (a worker ignores one it runs). */
		if (restarted(s, GS_ROLE_SCHEDULER)) {
			uint32_t used = gs_engine_task_slots_used(s->eng);
			pthread_mutex_lock(&s->sched_mu);
			for (uint32_t slot = 0; slot < used; slot++) {
				gs_task_info ti;
				if (gs_engine_task_at(s->eng, slot, &ti) == GS_OK &&
				    ti.state == GS_TASK_ASSIGNED)
					assign_again(s, ti.id);
			}
			gs_worker_batch_flush(s);
			pthread_mutex_unlock(&s->sched_mu);
		}
		gs_roles_bell_ring(s->link, GS_ROLE_SCHEDULER); /* loads were recounted */
	}
	/* Only a Register that died between a task's end and its push can have
	 * lost a final task from the PLM's ring. */
	if (gs_service_has(s, GS_ROLE_PLM) && restarted(s, GS_ROLE_REGISTER))
		plm_rescan(s, now_us);
}

size_t gs_service_link_start(gs_service *s, uint64_t now_us)
{
	if (!s->link || !gs_service_has(s, GS_ROLE_REGISTER))
		return 0;
	size_t n = 0;
	uint32_t mw = gs_engine_geom(s->eng)->max_workers;
	for (uint32_t i = 0; i < mw; i++) {
		gs_worker_info wi;
		if (gs_engine_worker_at(s->eng, i, &wi) != GS_OK || wi.state == GS_WORKER_DEAD)
			continue;
		gs_worker_orphaned(s, wi.id, now_us);
		n++;
	}
	return n;
}
