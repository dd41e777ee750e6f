/* server.c - the server process: engine, services, role threads, shutdown. */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"
#include "rpc_server.h"
#include "service.h"

struct roles {
	gs_service *svc;
	uint32_t tick_ms;
	volatile sig_atomic_t *stop;
	volatile int done; /* set by the main thread to end the role threads */
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

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
		int wait_ms = 100;
		if (next_due) {
			uint64_t d = next_due > now ? (next_due - now + 999) / 1000 : 0;
			wait_ms = d < 100 ? (int)d : 100;
		}
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
		sleep_ms(r->tick_ms);
	}
	gs_service_thread_offline(r->svc);
	return NULL;
}

/* The RPC polling threads read the worker table: register them with RCU. */
static void rpc_thread_start(void *svc)
{
	gs_service_thread_online(svc);
}

static void rpc_thread_stop(void *svc)
{
	gs_service_thread_offline(svc);
}

static int open_engine(const gs_server_opts *o, gs_engine **eng, int quiet)
{
	gs_engine_opts eo = {.segment_name = o->segment, .geom = o->geom, .replace = false};
	if (o->segment) {
		bool owner_dead = false;
		int rc = gs_engine_attach(o->segment, eng, &owner_dead);
		if (rc == GS_OK && !owner_dead) {
			fprintf(stderr, "gsched server: segment %s is served by a live process\n",
			        o->segment);
			gs_engine_close(*eng, false);
			return GS_EBUSY;
		}
		if (rc == GS_OK) {
			gs_recovery_report rep;
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
	return gs_engine_create(&eo, eng);
}

int gs_server_run(const gs_server_opts *o)
{
	const char *listen = o->listen ? o->listen : "127.0.0.1:7070";
	gs_engine *eng = NULL;
	int rc = open_engine(o, &eng, o->quiet);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched server: cannot open the engine: %s\n", gs_strerror(rc));
		return rc;
	}
	gs_service_opts so = {
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
	                                .on_thread_start = rpc_thread_start,
	                                .on_thread_stop = rpc_thread_stop};
	if (rc == GS_OK) {
		ro.thread_arg = svc;
		rc = gs_rpc_server_create(&ro, &srv);
	}
	if (rc == GS_OK)
		rc = gs_service_register(svc, srv);
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
		gs_engine_close(eng, false);
		return rc;
	}
	struct roles roles = {.svc = svc, .stop = o->stop};
	uint32_t hb = so.heartbeat_ms ? so.heartbeat_ms : 500;
	roles.tick_ms = hb / 4 < 5 ? 5 : (hb / 4 > 50 ? 50 : hb / 4);
	pthread_t sched, reg;
	pthread_create(&sched, NULL, scheduler_main, &roles);
	pthread_create(&reg, NULL, register_main, &roles);
	if (!o->quiet)
		fprintf(
		    stderr,
		    "gsched server: listening on %s (port %d), %u task slots; %s, client API %s, "
		    "workers %s\n",
		    listen, port, gs_engine_geom(eng)->max_tasks, o->tls ? "TLS" : "plaintext",
		    o->client_token ? "token required" : "open",
		    o->worker_token ? "token required" : "open");
	if (o->on_ready)
		o->on_ready(port, o->arg);

	while (!*o->stop)
		sleep_ms(20);

	/* Shutdown: refuse new work, let running tasks finish within grace. */
	gs_service_begin_shutdown(svc);
	int grace = o->grace_ms > 0 ? o->grace_ms : 10000;
	for (int waited = 0; waited < grace; waited += 20) {
		gs_service_counters c;
		gs_service_counters_get(svc, &c);
		if (c.in_flight == 0)
			break;
		sleep_ms(20);
	}
	gs_rpc_server_stop(srv, 1000);
	__atomic_store_n(&roles.done, 1, __ATOMIC_RELEASE);
	gs_service_wake(svc);
	pthread_join(sched, NULL);
	pthread_join(reg, NULL);
	gs_rpc_server_destroy(srv);
	gs_service_destroy(svc);
	if (!o->quiet)
		fprintf(stderr, "gsched server: stopped\n");
	gs_engine_close(eng, false);
	return GS_OK;
}
