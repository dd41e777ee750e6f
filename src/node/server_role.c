/*
 * server_role.c - `gsched server --role R`: one server role in a process of
 * its own, on a named segment the other roles' processes share (server.h,
 * "Roles as processes"; the meeting place is roles.h).
 *
 * Threads: the RPC polling threads (a PLM's and a Register's calls), the
 * role loop (drains this role's rings, dispatches or ticks, sleeps on the
 * role's doorbell) and the parker (stops the other two at a safe point when
 * a restarted role repairs the engine, then resynchronises).  Every engine
 * operation of this process runs under `gate` held for reading: RPC
 * callbacks through the rpc server's gate option, the role loop per pass;
 * the parker takes it for writing before it acknowledges a pause.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gs_clock.h"
#include "gs_error.h"
#include "rpc_server.h"
#include "server.h"
#include "service.h"

#define PAUSE_TIMEOUT_MS 10000

struct role_proc {
	gs_engine *eng;
	gs_roles *link;
	gs_service *svc;
	enum gs_role role;
	pthread_rwlock_t gate;
	uint32_t tick_ms;
	volatile int done;
};

/* Attaches the segment, or creates it when there is none (or only one
 * abandoned unfinished by a creator that died).  Two roles starting at
 * once: one creates, the other waits until it is ready (GS_EBUSY after 5 s). */
static int open_segment(const gs_server_opts *o, gs_engine **eng, bool *created)
{
	gs_engine_opts eo = {.segment_name = o->segment, .geom = o->geom};
	uint64_t until = gs_clock_mono_ms() + 5000;
	for (;;) {
		int rc = gs_engine_attach(o->segment, eng, NULL);
		*created = false;
		if (rc != GS_ENOTFOUND)
			return rc;
		rc = gs_engine_create(&eo, eng);
		*created = rc == GS_OK;
		if (!(rc == GS_EIO && errno == EEXIST))
			return rc;
		/* Being made by another role right now: attach it once ready. */
		if (gs_clock_mono_ms() >= until)
			return GS_EBUSY;
		gs_clock_sleep_ms(10);
	}
}

/* The role loop: hand-offs, then this role's own step, then sleep on the
 * doorbell until something rings it or a tick or delayed task is due. */
static void *role_main(void *arg)
{
	struct role_proc *p = arg;
	gs_service_thread_online(p->svc);
	uint64_t last_tick = 0;
	while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
		uint32_t seen = gs_roles_bell_read(p->link, p->role);
		uint64_t now = gs_now_us(), next_due = 0;
		pthread_rwlock_rdlock(&p->gate);
		if (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
			/* Stopping, maybe inside a pause the parker left early. */
			pthread_rwlock_unlock(&p->gate);
			break;
		}
		size_t work = gs_service_link_drain(p->svc, now);
		if (p->role == GS_ROLE_SCHEDULER)
			work += gs_service_schedule(p->svc, now, &next_due);
		else if (now - last_tick >= (uint64_t)p->tick_ms * 1000) {
			gs_service_tick(p->svc, now);
			last_tick = now;
		}
		pthread_rwlock_unlock(&p->gate);
		if (work)
			continue;
		int wait_ms = gs_service_sleep_ms(
		    now, next_due, p->role == GS_ROLE_SCHEDULER ? 100 : (int)p->tick_ms);
		gs_roles_bell_wait(p->link, p->role, seen, wait_ms);
	}
	gs_service_thread_offline(p->svc);
	return NULL;
}

/* The parker: when another role's restart pauses us, stop every engine
 * operation of this process (the gate, for writing), acknowledge, wait for
 * the end of the pause, then, before letting the others go on, find what
 * the dead process's rings lost. */
static void *parker_main(void *arg)
{
	struct role_proc *p = arg;
	gs_service_thread_online(p->svc);
	while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
		uint32_t word;
		if (!gs_roles_pause_pending(p->link, 100, &word))
			continue;
		pthread_rwlock_wrlock(&p->gate);
		gs_roles_park(p->link, p->role, word, &p->done);
		bool stopping = __atomic_load_n(&p->done, __ATOMIC_ACQUIRE);
		/* Still alone in this process: nothing (a tick, a callback) runs
		 * on the repaired engine before the resync. */
		if (!stopping)
			gs_service_link_resync(p->svc, gs_now_us());
		pthread_rwlock_unlock(&p->gate);
		if (stopping)
			break;                        /* the role loop ends without operating */
		gs_roles_bell_ring(p->link, p->role); /* the role loop looks again */
	}
	gs_service_thread_offline(p->svc);
	return NULL;
}

/* Claims the role and, on a segment that was there before, repairs it with
 * the other roles paused.  One line on stderr says what went wrong. */
static int claim_and_repair(const gs_server_opts *o, struct role_proc *p, bool created)
{
	const char *name = gs_role_name(p->role);
	int32_t pid = (int32_t)getpid(), holder = 0;
	bool restart = false;
	int rc = gs_roles_claim(p->link, p->role, pid, &holder, &restart);
	if (rc != GS_OK) {
		/* A server running every role holds all three. */
		if (rc == GS_EBUSY)
			fprintf(stderr, "gsched server: role %s on %s is held by live process %d\n",
			        name, o->segment, (int)holder);
		else
			fprintf(stderr, "gsched server: role %s on %s: cannot claim it: %s\n", name,
			        o->segment, gs_strerror(rc));
		return rc;
	}
	if (created) {
		if (!o->quiet)
			fprintf(stderr, "gsched server: role %s created segment %s\n", name,
			        o->segment);
		return GS_OK;
	}
	uint64_t t0 = gs_now_us();
	gs_roles_blocker why = {GS_ROLE_COUNT, 0};
	rc = gs_roles_pause(p->link, p->role, pid, PAUSE_TIMEOUT_MS, &why);
	if (rc != GS_OK) {
		if (why.role < GS_ROLE_COUNT)
			fprintf(stderr,
			        "gsched server: role %s: role %s (pid %d) did not stop for the "
			        "repair within %d ms (is it stopped or hung?); not started\n",
			        name, gs_role_name((enum gs_role)why.role), (int)why.pid,
			        PAUSE_TIMEOUT_MS);
		else
			fprintf(stderr,
			        "gsched server: role %s: another restart (pid %d) held the pause "
			        "for %d ms; not started\n",
			        name, (int)why.pid, PAUSE_TIMEOUT_MS);
		gs_roles_unclaim(p->link, p->role, pid);
		return rc;
	}
	gs_recovery_report rep;
	rc = gs_engine_recover(p->eng, &rep);
	gs_roles_resume(p->link, pid);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: role %s: repairing segment %s: %s\n", name,
		        o->segment, gs_strerror(rc));
		gs_roles_unclaim(p->link, p->role, pid);
		return rc;
	}
	if (!o->quiet)
		fprintf(stderr,
		        "gsched server: role %s attached segment %s (start %llu%s; paused the "
		        "others and repaired in "
		        "%.1f ms: %u requeued, %u half-submitted freed, %u half-recorded results "
		        "undone, %u orphans requeued)\n",
		        name, o->segment, (unsigned long long)gs_roles_starts(p->link, p->role),
		        restart ? ", after a crash" : "", (double)(gs_now_us() - t0) / 1000,
		        rep.requeued_unlinked, rep.reserved_freed, rep.completing_undone,
		        rep.orphans_requeued);
	return GS_OK;
}

int gs_server_run_role(const gs_server_opts *o)
{
	struct role_proc p = {0};
	if (!o->segment || o->data_dir || gs_role_parse(o->role, &p.role) != GS_OK) {
		fprintf(stderr, "gsched server: --role needs a role name and --segment, and no "
		                "--data-dir\n");
		return GS_EINVAL;
	}
	const char *name = gs_role_name(p.role);
	bool created = false;
	int rc = open_segment(o, &p.eng, &created);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: role %s: cannot open segment %s: %s%s\n", name,
		        o->segment, gs_strerror(rc),
		        rc == GS_ELAYOUT ? " (another layout: remove it from /dev/shm)" : "");
		return rc;
	}
	p.link = gs_engine_roles(p.eng);
	/* Liveness by a lock on the very object mapped (roles.h): the kernel
	 * lets go of it when this process dies, however it dies. */
	const gs_seg *seg = gs_engine_segment(p.eng);
	if (!seg->has_fd || gs_roles_set_lock_fd(p.link, seg->fd) != GS_OK) {
		fprintf(stderr, "gsched server: role %s: cannot lock segment %s: %s\n", name,
		        o->segment, strerror(errno));
		gs_engine_close(p.eng, false);
		return GS_EIO;
	}
	rc = claim_and_repair(o, &p, created);
	if (rc != GS_OK) {
		gs_engine_close(p.eng, false);
		return rc;
	}
	gs_service_opts so = {.heartbeat_ms = o->heartbeat_ms,
	                      .worker_timeout_ms = o->worker_timeout_ms,
	                      .result_ttl_ms = o->result_ttl_ms,
	                      .client_token = o->client_token,
	                      .worker_token = o->worker_token,
	                      .roles = GS_ROLE_BIT(p.role),
	                      .link = p.link};
	pthread_rwlockattr_t ga;
	pthread_rwlockattr_init(&ga);
	/* A pause must not wait behind an endless stream of callbacks. */
	pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p.gate, &ga);
	pthread_rwlockattr_destroy(&ga);
	struct gs_rpc_server *srv = NULL;
	pthread_t loop, parker;
	bool parker_up = false;
	rc = gs_service_create(p.eng, &so, &p.svc);
	if (rc == GS_OK) {
		p.tick_ms = gs_service_tick_ms(p.svc);
		gs_roles_activate(p.link, p.role, &p.done);
		parker_up = pthread_create(&parker, NULL, parker_main, &p) == 0;
		rc = parker_up ? GS_OK : GS_ENOMEM;
	}
	struct gs_rpc_server_opts ro = {.threads = o->rpc_threads ? o->rpc_threads : 1,
	                                .busy_poll_us = o->busy_poll_us,
	                                .max_message_bytes = o->max_message_bytes,
	                                .max_queue_bytes = o->stream_queue_bytes,
	                                .max_connections = o->max_connections,
	                                .max_streams = o->max_streams,
	                                .on_thread_start = gs_service_rpc_thread_start,
	                                .on_thread_stop = gs_service_rpc_thread_stop,
	                                .thread_arg = p.svc,
	                                .gate = &p.gate};
	if (rc == GS_OK)
		rc = gs_rpc_server_create(&ro, &srv);
	if (rc == GS_OK)
		rc = gs_service_register(p.svc, srv);
	if (rc == GS_OK) {
		/* Before listening (a worker connecting now is not one of the
		 * previous Register's), and under the gate like every engine
		 * operation of this process. */
		pthread_rwlock_rdlock(&p.gate);
		if (p.role == GS_ROLE_PLM)
			gs_service_retain_found(p.svc);
		size_t lost = gs_service_link_start(p.svc, gs_now_us());
		pthread_rwlock_unlock(&p.gate);
		if (lost && !o->quiet)
			fprintf(stderr,
			        "gsched server: role register: %zu workers of the previous "
			        "register declared lost; their tasks run again\n",
			        lost);
	}
	const char *listen = o->listen ? o->listen : "127.0.0.1:7070";
	int port = 0;
	if (rc == GS_OK) {
		char err[512];
		rc = gs_rpc_server_start_tls(srv, listen, o->tls, &port, err, sizeof(err));
		if (rc != GS_OK)
			fprintf(stderr, "gsched server: role %s: %s\n", name,
			        err[0] ? err : "cannot listen");
	}
	bool loop_up = false;
	if (rc == GS_OK) {
		loop_up = pthread_create(&loop, NULL, role_main, &p) == 0;
		rc = loop_up ? GS_OK : GS_ENOMEM;
	}
	if (rc == GS_OK) {
		if (!o->quiet)
			fprintf(
			    stderr,
			    "gsched server: role %s (pid %d) listening on %s (port %d), segment "
			    "%s\n",
			    name, (int)getpid(), listen, port, o->segment);
		if (o->on_ready)
			o->on_ready(port, o->arg);
		while (!*o->stop)
			gs_clock_sleep_ms(20);
		gs_service_begin_shutdown(p.svc);
		/* The Register lets running tasks finish within the grace time. */
		int grace = o->grace_ms > 0 ? o->grace_ms : 10000;
		for (int waited = 0; p.role == GS_ROLE_REGISTER && waited < grace; waited += 20) {
			gs_service_counters c;
			gs_service_counters_get(p.svc, &c);
			if (c.in_flight == 0)
				break;
			gs_clock_sleep_ms(20);
		}
	}
	if (srv)
		gs_rpc_server_stop(srv, 1000);
	__atomic_store_n(&p.done, 1, __ATOMIC_RELEASE);
	if (loop_up) {
		gs_roles_bell_ring(p.link, p.role);
		pthread_join(loop, NULL);
	}
	if (parker_up)
		pthread_join(parker, NULL);
	if (srv)
		gs_rpc_server_destroy(srv);
	gs_service_destroy(p.svc);
	gs_roles_unclaim(p.link, p.role, (int32_t)getpid());
	pthread_rwlock_destroy(&p.gate);
	if (!o->quiet && rc == GS_OK)
		fprintf(stderr, "gsched server: role %s stopped\n", name);
	gs_engine_close(p.eng, false);
	return rc;
}
