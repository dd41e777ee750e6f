/* server.c - the server process: engine, services, role threads, shutdown. */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gs_clock.h"
#include "gs_error.h"
#include "rpc_server.h"
#include "service.h"
#include "wal.h"

struct roles {
	gs_service *svc;
	uint32_t tick_ms;
	volatile sig_atomic_t *stop;
	volatile int done; /* set by the main thread to end the role threads */
};

/* The Main Scheduler: dispatch while there is work, sleep until woken. */
static void *scheduler_main(void *arg)
{
	struct roles *r = arg;
	gs_service_thread_online(r->svc);
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		uint64_t now = gs_now_us(), next_due = 0;
		size_t n = gs_service_schedule(r->svc, now, &next_due);
		if (n > 0)
			continue;
		int wait_ms = gs_service_sleep_ms(now, next_due, 100);
		if (wait_ms > 0)
			gs_service_wait_work(r->svc, wait_ms);
	}
	gs_service_thread_offline(r->svc);
	return NULL;
}

/* The Register: dead workers, Wait deadlines, result expiry. */
static void *register_main(void *arg)
{
	struct roles *r = arg;
	gs_service_thread_online(r->svc);
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		gs_service_tick(r->svc, gs_now_us());
		gs_clock_sleep_ms(r->tick_ms);
	}
	gs_service_thread_offline(r->svc);
	return NULL;
}

/* --- the write-ahead log ---------------------------------------------------- */

struct committer {
	gs_service *svc;
	gs_wal *wal;
	int fsync_ms;
	int quiet;
	volatile int done;
};

/* Replaces the log with a snapshot of the engine's live tasks. */
static int compact(gs_wal *wal, gs_service *svc, int quiet)
{
	gs_wal_stats before, after;
	gs_wal_stats_get(wal, &before);
	uint64_t t0 = gs_now_us();
	int rc = gs_wal_compact(wal, gs_service_snapshot, svc);
	gs_wal_stats_get(wal, &after);
	if (rc != GS_OK)
		fprintf(stderr, "gsched server: log compaction failed: %s\n", gs_strerror(rc));
	else if (!quiet)
		fprintf(stderr,
		        "gsched server: log compacted: %llu bytes of log -> %llu-byte snapshot "
		        "(%.1f ms)\n",
		        (unsigned long long)before.log_bytes,
		        (unsigned long long)after.snapshot_bytes,
		        (double)(gs_now_us() - t0) / 1000);
	return rc;
}

/*
 * Group commit: sync every fsync_ms (or, with 0, whenever a reply waits),
 * then send the replies that are durable; compact when the log has grown.
 */
static void *committer_main(void *arg)
{
	struct committer *c = arg;
	gs_service_thread_online(c->svc);
	for (;;) {
		bool last = __atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
		if (!last) {
			if (c->fsync_ms > 0)
				gs_clock_sleep_ms((unsigned)c->fsync_ms);
			else
				gs_service_acks_wait(c->svc, 100);
		}
		uint64_t durable = 0;
		int rc = gs_wal_sync(c->wal, &durable);
		gs_service_durable(c->svc, durable, rc);
		if (last)
			break;
		gs_wal_stats st;
		gs_wal_stats_get(c->wal, &st);
		uint64_t limit = st.snapshot_bytes * 4;
		if (limit < (64ull << 20))
			limit = 64ull << 20;
		if (rc == GS_OK && st.log_bytes > limit)
			compact(c->wal, c->svc, c->quiet);
	}
	gs_service_thread_offline(c->svc);
	return NULL;
}

struct restore_ctx {
	gs_engine *eng;
	uint64_t now_us;
	size_t restored, queued, final, dropped_results, keys, dropped_keys;
	int rc;
	char err[256];
};

static int restore_one(void *arg, const gs_wal_task *t)
{
	struct restore_ctx *r = arg;
	uint32_t q;
	int rc = gs_engine_queue(r->eng, t->queue, true, &q);
	if (rc != GS_OK) {
		snprintf(r->err, sizeof(r->err), "task %016llx: queue '%.64s': %s",
		         (unsigned long long)t->id, t->queue, gs_strerror(rc));
		return rc;
	}
	gs_restore_task rt = {.id = t->id,
	                      .state = t->state,
	                      .queue = q,
	                      .priority = t->priority,
	                      .max_retries = t->max_retries,
	                      .timeout_ms = t->timeout_ms,
	                      .submitted_us = t->submitted_us,
	                      .not_before_us = t->not_before_us,
	                      .payload = t->spec,
	                      .payload_len = t->spec_len,
	                      .attempt = t->attempt,
	                      .status = t->status,
	                      .reason = t->reason,
	                      .finished_us = t->finished_us,
	                      .result = t->result,
	                      .result_len = t->result_len};
	rc = gs_engine_restore(r->eng, &rt, r->now_us);
	if (rc == GS_EFULL && rt.result_len) {
		/* As when the arena is full at finish time: the result is dropped. */
		rt.result = NULL;
		rt.result_len = 0;
		rc = gs_engine_restore(r->eng, &rt, r->now_us);
		if (rc == GS_OK)
			r->dropped_results++;
	}
	if (rc != GS_OK) {
		snprintf(r->err, sizeof(r->err),
		         "task %016llx: %s (start with at least the --max-tasks and payload "
		         "limits of the server that wrote the log)",
		         (unsigned long long)t->id, gs_strerror(rc));
		return rc;
	}
	r->restored++;
	if (t->state == GS_TASK_QUEUED)
		r->queued++;
	else
		r->final++;
	return GS_OK;
}

/* Puts an idempotency key back with the IDs of its (restored) tasks. */
static int restore_key(void *arg, const gs_wal_key *k)
{
	struct restore_ctx *r = arg;
	gs_idem_req req = {.key = k->key, .key_len = k->key_len, .digest = k->digest};
	int rc = gs_engine_idem_restore(r->eng, &req, k->created_us, k->ids, k->n_ids);
	if (rc == GS_OK)
		r->keys++;
	else if (rc == GS_EFULL)
		r->dropped_keys++; /* a smaller key table than the writer's: warned */
	else if (rc != GS_ENOTFOUND) {
		snprintf(r->err, sizeof(r->err), "idempotency key '%.*s': %s",
		         (int)(k->key_len < 64 ? k->key_len : 64), (const char *)k->key,
		         gs_strerror(rc));
		return rc;
	}
	return GS_OK;
}

/*
 * Opens the log in o->data_dir.  With `adopted` the engine came from a
 * segment (newer than the log): the log is only opened.  Otherwise it is
 * replayed into the fresh engine, every live task under its old ID.
 */
static int open_log(const gs_server_opts *o, gs_engine *eng, bool adopted, gs_wal **out)
{
	gs_wal_state *st = NULL;
	gs_wal_report rep = {0};
	int rc = adopted ? GS_OK : gs_wal_state_new(&st);
	if (rc == GS_OK)
		rc =
		    gs_wal_open(o->data_dir, NULL, adopted ? NULL : gs_wal_state_fn, st, &rep, out);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: cannot open the log in %s: %s%s%s\n", o->data_dir,
		        gs_strerror(rc), rep.message[0] ? ": " : "", rep.message);
		gs_wal_state_free(st);
		return rc;
	}
	if (rep.warnings)
		fprintf(stderr, "gsched server: warning: log %s: %s\n", o->data_dir, rep.message);
	if (adopted) {
		if (!o->quiet)
			fprintf(stderr,
			        "gsched server: log %s opened; the adopted segment is newer, "
			        "nothing replayed\n",
			        o->data_dir);
		return GS_OK;
	}
	struct restore_ctx r = {.eng = eng, .now_us = gs_now_us()};
	rc = gs_wal_state_each(st, restore_one, &r);
	if (rc == GS_OK)
		rc = gs_wal_state_each_key(st, restore_key, &r);
	if (rc == GS_OK) {
		uint32_t high = gs_wal_state_gen_high(st);
		rc = gs_engine_restore_finish(eng, high < UINT32_MAX ? high + 1 : high, NULL);
	}
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: cannot replay the log in %s: %s\n", o->data_dir,
		        r.err[0] ? r.err : gs_strerror(rc));
		gs_wal_state_free(st);
		gs_wal_close(*out);
		*out = NULL;
		return rc;
	}
	if (r.dropped_keys)
		fprintf(stderr,
		        "gsched server: warning: the idempotency key table is too small for %zu "
		        "logged keys: dropped (a retry with one of them queues its tasks again)\n",
		        r.dropped_keys);
	if (gs_wal_state_unacked(st))
		fprintf(stderr,
		        "gsched server: warning: %zu tasks of keyed submits cut off by a torn tail "
		        "(never acknowledged) dropped\n",
		        gs_wal_state_unacked(st));
	if (r.dropped_results)
		fprintf(stderr,
		        "gsched server: warning: the payload arena is too small for %zu logged "
		        "results: dropped\n",
		        r.dropped_results);
	if (!o->quiet)
		fprintf(stderr,
		        "gsched server: log %s replayed: %llu records, %zu live tasks (%zu to run, "
		        "%zu finished), %zu idempotency keys%s\n",
		        o->data_dir, (unsigned long long)rep.records, r.restored, r.queued, r.final,
		        r.keys, rep.truncated ? "; a torn tail was cut" : "");
	gs_wal_state_free(st);
	return GS_OK;
}

/*
 * A server running every role holds all three role locks of a named segment
 * (roles.h), so that no role process starts on it, and it starts on none a
 * role process serves.  GS_EBUSY (one line on stderr) if one is held.
 */
static int claim_roles(const char *segment, gs_engine *eng)
{
	const gs_seg *seg = gs_engine_segment(eng);
	gs_roles *link = gs_engine_roles(eng);
	if (!seg->has_fd || gs_roles_set_lock_fd(link, seg->fd) != GS_OK)
		return GS_OK; /* no locks here: the owner check alone */
	int32_t me = (int32_t)getpid(), holder = 0;
	for (int r = 0; r < GS_ROLE_COUNT; r++) {
		if (gs_roles_claim(link, (enum gs_role)r, me, &holder, NULL) == GS_OK)
			continue;
		fprintf(stderr,
		        "gsched server: segment %s is served by other processes (%s: pid %d)\n",
		        segment, gs_role_name((enum gs_role)r), (int)holder);
		while (r-- > 0)
			gs_roles_unclaim(link, (enum gs_role)r, me);
		return GS_EBUSY;
	}
	return GS_OK;
}

static int open_engine(const gs_server_opts *o, gs_engine **eng, int quiet, bool *adopted)
{
	gs_engine_opts eo = {.segment_name = o->segment, .geom = o->geom, .replace = false};
	if (o->segment) {
		bool owner_dead = false;
		int rc = gs_engine_attach(o->segment, eng, &owner_dead);
		if (rc == GS_OK && claim_roles(o->segment, *eng) != GS_OK) {
			gs_engine_close(*eng, false);
			return GS_EBUSY;
		}
		if (rc == GS_OK && !owner_dead) {
			fprintf(stderr, "gsched server: segment %s is served by a live process\n",
			        o->segment);
			gs_engine_close(*eng, false);
			return GS_EBUSY;
		}
		if (rc == GS_OK) {
			gs_recovery_report rep;
			*adopted = true;
			rc = gs_engine_recover(*eng, &rep);
			if (!quiet)
				fprintf(stderr,
				        "gsched server: adopted segment %s (requeued %u, freed %u "
				        "half-submitted, %u orphaned tasks requeued)\n",
				        o->segment, rep.requeued_unlinked, rep.reserved_freed,
				        rep.orphans_requeued);
			return rc;
		}
		if (rc == GS_ELAYOUT) {
			fprintf(stderr,
			        "gsched server: segment %s has another layout; remove it "
			        "(rm /dev/shm%s) or use another --segment\n",
			        o->segment, o->segment);
			return rc;
		}
		if (rc != GS_ENOTFOUND)
			return rc;
	}
	int rc = gs_engine_create(&eo, eng);
	if (rc == GS_OK && o->segment && claim_roles(o->segment, *eng) != GS_OK) {
		gs_engine_close(*eng, false); /* a role process attached it meanwhile */
		return GS_EBUSY;
	}
	return rc;
}

int gs_server_run(const gs_server_opts *o)
{
	if (o->role)
		return gs_server_run_role(o);
	const char *listen = o->listen ? o->listen : "127.0.0.1:7070";
	gs_engine *eng = NULL;
	gs_wal *wal = NULL;
	bool adopted = false;
	int rc = open_engine(o, &eng, o->quiet, &adopted);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: cannot open the engine: %s\n", gs_strerror(rc));
		return rc;
	}
	if (o->data_dir) {
		rc = open_log(o, eng, adopted, &wal);
		if (rc != GS_OK) {
			gs_engine_close(eng, false);
			return rc;
		}
	}
	gs_service_opts so = {
	    .wal = wal,
	    .heartbeat_ms = o->heartbeat_ms,
	    .worker_timeout_ms = o->worker_timeout_ms,
	    .result_ttl_ms = o->result_ttl_ms,
	    .client_token = o->client_token,
	    .worker_token = o->worker_token,
	};
	gs_service *svc = NULL;
	struct gs_rpc_server *srv = NULL;
	rc = gs_service_create(eng, &so, &svc);
	if (rc == GS_EINVAL)
		fprintf(stderr, "gsched server: the client and worker tokens must differ\n");
	struct gs_rpc_server_opts ro = {.threads = o->rpc_threads ? o->rpc_threads : 1,
	                                .busy_poll_us = o->busy_poll_us,
	                                .max_message_bytes = o->max_message_bytes,
	                                .max_queue_bytes = o->stream_queue_bytes,
	                                .max_connections = o->max_connections,
	                                .max_streams = o->max_streams,
	                                .on_thread_start = gs_service_rpc_thread_start,
	                                .on_thread_stop = gs_service_rpc_thread_stop};
	if (rc == GS_OK) {
		ro.thread_arg = svc;
		rc = gs_rpc_server_create(&ro, &srv);
	}
	if (rc == GS_OK)
		rc = gs_service_register(svc, srv);
	if (rc == GS_OK)
		gs_service_retain_found(svc);
	/* Before the first Submit: the log then holds no released ID, and
	 * remembers the highest generation issued (wal.h, gen_high). */
	if (rc == GS_OK && wal)
		rc = compact(wal, svc, o->quiet);
	int port = 0;
	if (rc == GS_OK) {
		char err[512];
		rc = gs_rpc_server_start_tls(srv, listen, o->tls, &port, err, sizeof(err));
		if (rc != GS_OK)
			fprintf(stderr, "gsched server: %s\n", err[0] ? err : "cannot listen");
	}
	if (rc != GS_OK) {
		if (srv)
			gs_rpc_server_destroy(srv);
		gs_service_destroy(svc);
		if (wal)
			gs_wal_close(wal);
		gs_engine_close(eng, false);
		return rc;
	}
	struct roles roles = {.svc = svc, .stop = o->stop};
	roles.tick_ms = gs_service_tick_ms(svc);
	pthread_t sched, reg;
	pthread_create(&sched, NULL, scheduler_main, &roles);
	pthread_create(&reg, NULL, register_main, &roles);
	struct committer com = {.svc = svc,
	                        .wal = wal,
	                        .fsync_ms = o->fsync_ms < 0 ? 5 : o->fsync_ms,
	                        .quiet = o->quiet};
	pthread_t commit;
	if (wal)
		pthread_create(&commit, NULL, committer_main, &com);
	if (!o->quiet)
		fprintf(
		    stderr,
		    "gsched server: listening on %s (port %d), %u task slots; %s, client API %s, "
		    "workers %s; durability: %s\n",
		    listen, port, gs_engine_geom(eng)->max_tasks, o->tls ? "TLS" : "plaintext",
		    o->client_token ? "token required" : "open",
		    o->worker_token ? "token required" : "open",
		    wal ? "log" : (o->segment ? "segment" : "none"));
	if (o->on_ready)
		o->on_ready(port, o->arg);

	while (!*o->stop)
		gs_clock_sleep_ms(20);

	/* Shutdown: refuse new work, let running tasks finish within grace. */
	gs_service_begin_shutdown(svc);
	int grace = o->grace_ms > 0 ? o->grace_ms : 10000;
	for (int waited = 0; waited < grace; waited += 20) {
		gs_service_counters c;
		gs_service_counters_get(svc, &c);
		if (c.in_flight == 0)
			break;
		gs_clock_sleep_ms(20);
	}
	gs_rpc_server_stop(srv, 1000);
	__atomic_store_n(&roles.done, 1, __ATOMIC_RELEASE);
	gs_service_wake(svc);
	pthread_join(sched, NULL);
	pthread_join(reg, NULL);
	if (wal) {
		/* A last sync; the replies it frees go to calls already over. */
		__atomic_store_n(&com.done, 1, __ATOMIC_RELEASE);
		pthread_join(commit, NULL);
	}
	gs_rpc_server_destroy(srv);
	gs_service_destroy(svc);
	int wrc = wal ? gs_wal_close(wal) : GS_OK;
	if (wrc != GS_OK)
		fprintf(stderr, "gsched server: closing the log: %s\n", gs_strerror(wrc));
	if (!o->quiet)
		fprintf(stderr, "gsched server: stopped\n");
	for (int r = 0; r < GS_ROLE_COUNT; r++)
		gs_roles_unclaim(gs_engine_roles(eng), (enum gs_role)r, (int32_t)getpid());
	gs_engine_close(eng, false);
	return GS_OK;
}
