/*
 * local_cluster.c - a server in a thread of this process plus N worker
 * processes (see local_cluster.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gsched_client.h"
#include "local_cluster.h"
#include "server.h"

#define STOP_WAIT_MS 5000

struct gs_local_cluster {
	pthread_t thread;
	gs_server_opts so;
	volatile sig_atomic_t stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int port;   /* > 0 once listening */
	bool ended; /* gs_server_run returned */
	int rc;
	char addr[64];
	const char *prefix;
	unsigned workers, slots, busy_poll_us;
	pid_t pids[GS_LOCAL_MAX_WORKERS];
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void on_ready(int port, void *arg)
{
	gs_local_cluster *c = arg;
	pthread_mutex_lock(&c->mu);
	c->port = port;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void *server_main(void *arg)
{
	gs_local_cluster *c = arg;
	int rc = gs_server_run(&c->so);
	pthread_mutex_lock(&c->mu);
	c->rc = rc;
	c->ended = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Starts one worker process; returns its pid or -1. */
static pid_t start_worker(const char *addr, unsigned slots, unsigned busy_poll_us, unsigned index)
{
	char slots_s[16], name[64], busy_s[16];
	snprintf(slots_s, sizeof(slots_s), "%u", slots);
	snprintf(busy_s, sizeof(busy_s), "%u", busy_poll_us);
	snprintf(name, sizeof(name), "local-%u", index);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(1); /* the parent is already gone */
	char *args[] = {"gsched", "worker", "--server", (char *)addr,     "--slots", slots_s,
	                "--name", name,     "--quiet",  "--busy-poll-us", busy_s,    NULL};
	execv("/proc/self/exe", args);
	fprintf(stderr, "gsched: cannot run /proc/self/exe: %s\n", strerror(errno));
	_exit(127);
}

/* SIGTERM, wait up to STOP_WAIT_MS, then SIGKILL what is left. */
static void stop_workers(gs_local_cluster *c)
{
	pid_t *pids = c->pids;
	unsigned n = c->workers;
	for (unsigned i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	unsigned left = n;
	for (int waited = 0; left > 0; waited += 10) {
		left = 0;
		for (unsigned i = 0; i < n; i++) {
			if (pids[i] <= 0)
				continue;
			if (waitpid(pids[i], NULL, WNOHANG) == pids[i])
				pids[i] = 0;
			else
				left++;
		}
		if (left == 0)
			break;
		if (waited >= STOP_WAIT_MS) {
			for (unsigned i = 0; i < n; i++)
				if (pids[i] > 0) {
					kill(pids[i], SIGKILL);
					waitpid(pids[i], NULL, 0);
					pids[i] = 0;
				}
			fprintf(stderr, "%s: %u worker(s) killed after %d ms\n", c->prefix, left,
			        STOP_WAIT_MS);
			break;
		}
		sleep_ms(10);
	}
}

/* Stops the server thread and frees c; returns the server's status. */
static int stop_server(gs_local_cluster *c)
{
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	pthread_join(c->thread, NULL);
	int rc = c->rc;
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	return rc;
}

int gs_local_cluster_start(const gs_local_cluster_opts *o, gs_local_cluster **out)
{
	if (!o || !out || o->workers > GS_LOCAL_MAX_WORKERS)
		return GS_EINVAL;
	*out = NULL;
	gs_local_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return GS_ENOMEM;
	c->prefix = o->prefix ? o->prefix : "gsched";
	c->workers = o->workers;
	c->slots = o->slots ? o->slots : 4;
	c->busy_poll_us = o->busy_poll_us;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->so = (gs_server_opts){.listen = o->listen ? o->listen : "127.0.0.1:0",
	                         .grace_ms = 2000,
	                         .busy_poll_us = o->busy_poll_us,
	                         .stop = &c->stop,
	                         .on_ready = on_ready,
	                         .arg = c,
	                         .quiet = 1};
	if (pthread_create(&c->thread, NULL, server_main, c) != 0) {
		fprintf(stderr, "%s: cannot start the server thread\n", c->prefix);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		free(c);
		return GS_EIO;
	}
	pthread_mutex_lock(&c->mu);
	while (!c->port && !c->ended)
		pthread_cond_wait(&c->cv, &c->mu);
	int port = c->port;
	pthread_mutex_unlock(&c->mu);
	if (!port) {
		fprintf(stderr, "%s: the server did not start (%s)\n", c->prefix,
		        gs_strerror(c->rc));
		stop_server(c);
		return GS_EIO;
	}
	snprintf(c->addr, sizeof(c->addr), "127.0.0.1:%d", port);
	fprintf(stderr, "%s: server on %s, %u workers x %u slots\n", c->prefix, c->addr, c->workers,
	        c->slots);

	for (unsigned i = 0; i < c->workers; i++) {
		c->pids[i] = start_worker(c->addr, c->slots, c->busy_poll_us, i);
		if (c->pids[i] < 0) {
			fprintf(stderr, "%s: fork: %s\n", c->prefix, strerror(errno));
			c->pids[i] = 0;
			stop_workers(c);
			stop_server(c);
			return GS_EIO;
		}
	}
	/* Wait (bounded) for every worker to register, so work spreads. */
	struct gs_client *cl = NULL;
	char err[256];
	int limit = o->register_wait_ms > 0 ? o->register_wait_ms : 10000;
	if (c->workers && gs_client_connect_err(c->addr, NULL, &cl, err, sizeof(err)) == GS_OK) {
		size_t nw = 0;
		for (int waited = 0; waited < limit && !(o->stop && *o->stop); waited += 20) {
			struct gs_client_worker *w = NULL;
			nw = 0;
			if (gs_client_list_workers(cl, false, &w, &nw) == GS_OK)
				gs_client_workers_free(w, nw);
			if (nw >= c->workers)
				break;
			sleep_ms(20);
		}
		if (nw < c->workers)
			fprintf(stderr, "%s: only %zu of %u workers registered within %d ms\n",
			        c->prefix, nw, c->workers, limit);
		gs_client_close(cl);
	}
	*out = c;
	return GS_OK;
}

const char *gs_local_cluster_addr(const gs_local_cluster *c)
{
	return c ? c->addr : "";
}

pid_t gs_local_cluster_worker_pid(const gs_local_cluster *c, unsigned i)
{
	return c && i < c->workers ? c->pids[i] : 0;
}

unsigned gs_local_cluster_restart_dead(gs_local_cluster *c)
{
	unsigned n = 0;
	for (unsigned i = 0; c && i < c->workers; i++) {
		int st;
		if (c->pids[i] > 0 && waitpid(c->pids[i], &st, WNOHANG) == c->pids[i]) {
			fprintf(stderr, "%s: worker %u exited (%d); restarting\n", c->prefix, i,
			        WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
			c->pids[i] = start_worker(c->addr, c->slots, c->busy_poll_us, i);
			if (c->pids[i] < 0)
				c->pids[i] = 0;
			n++;
		}
	}
	return n;
}

int gs_local_cluster_stop(gs_local_cluster *c)
{
	if (!c)
		return GS_EINVAL;
	stop_workers(c);
	return stop_server(c);
}
