/*
 * cli_local.c - `gsched local`: the embedded default.  A server in a thread
 * of this process (gs_server_run, anonymous segment) plus N worker
 * processes (this binary's `worker` subcommand, fork+exec of
 * /proc/self/exe), and optionally the demo: many echo tasks through one
 * SubmitStream with a window of tasks in flight, a few real commands, then
 * throughput, latency percentiles, the spread over workers and the outputs.
 *
 * Owns: the local cluster (local_cluster.c: the server thread and the worker
 * children) and the demo's client.  Exit: 0 when the demo's every task succeeded exactly
 * once (or, without --demo, after a clean stop), 1 otherwise, 2 bad usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "gsched_client.h"
#include "local_cluster.h"

#define DEMO_WINDOW      2000
#define DEMO_MAGIC       "gsdemo!!"
#define DEMO_MAX_WORKERS 256

/* --- the demo ------------------------------------------------------------ */

struct demo_argv {
	const char *label;
	const char *argv[4];
	uint64_t id;
	char *output;
	int state, exit_code;
	char *error;
};

struct demo_worker {
	uint64_t id;
	uint64_t count;
};

struct demo {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t n;          /* echo tasks */
	uint64_t *sent_us; /* per seq */
	uint32_t *lat_us;  /* per echo seq */
	uint8_t *seen;     /* results per echo seq */
	size_t inflight, results, acks, rejected, bad, dup;
	struct demo_worker workers[DEMO_MAX_WORKERS];
	size_t n_workers;
	struct demo_argv *av;
	size_t n_av;
	/* argv results that came before their ack */
	struct {
		uint64_t id;
		char *output, *error;
		int state, exit_code;
	} early[16];
	size_t n_early;
	uint64_t last_result_us;
};

static void demo_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	struct demo *d = ud;
	pthread_mutex_lock(&d->mu);
	d->acks++;
	if (!id) {
		d->rejected++;
		if (d->inflight)
			d->inflight--;
		if (d->rejected <= 3)
			fprintf(stderr, "gsched local: task %" PRIu64 " rejected: code %d: %s\n",
			        seq, code, msg);
		pthread_cond_broadcast(&d->cv);
	} else if (seq >= d->n && seq - d->n < d->n_av) {
		struct demo_argv *a = &d->av[seq - d->n];
		a->id = id;
		for (size_t i = 0; i < d->n_early; i++)
			if (d->early[i].id == id) {
				a->output = d->early[i].output;
				a->error = d->early[i].error;
				a->state = d->early[i].state;
				a->exit_code = d->early[i].exit_code;
				d->early[i] = d->early[--d->n_early];
				break;
			}
	}
	pthread_mutex_unlock(&d->mu);
}

static void count_worker(struct demo *d, uint64_t wid)
{
	for (size_t i = 0; i < d->n_workers; i++)
		if (d->workers[i].id == wid) {
			d->workers[i].count++;
			return;
		}
	if (d->n_workers < DEMO_MAX_WORKERS)
		d->workers[d->n_workers++] = (struct demo_worker){wid, 1};
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		if (n)
			memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static void demo_result(void *ud, const struct gs_client_result *r)
{
	struct demo *d = ud;
	uint64_t t = gs_cli_mono_us();
	pthread_mutex_lock(&d->mu);
	d->results++;
	d->last_result_us = t;
	if (d->inflight)
		d->inflight--;
	count_worker(d, r->worker_id);
	uint64_t seq;
	if (r->output_len == 16 && memcmp(r->output + 8, DEMO_MAGIC, 8) == 0) {
		memcpy(&seq, r->output, 8);
		if (seq < d->n) {
			if (d->seen[seq]++)
				d->dup++;
			d->lat_us[seq] = (uint32_t)(t - d->sent_us[seq]);
		}
		if (seq >= d->n || r->state != GS_CLIENT_DONE || r->exit_code != 0)
			d->bad++;
	} else {
		bool matched = false;
		for (size_t i = 0; i < d->n_av && !matched; i++) {
			struct demo_argv *a = &d->av[i];
			if (a->id == r->id) {
				a->output = dup_bytes(r->output, r->output_len);
				a->error = strdup(r->error ? r->error : "");
				a->state = r->state;
				a->exit_code = r->exit_code;
				matched = true;
			}
		}
		if (!matched && d->n_early < sizeof(d->early) / sizeof(d->early[0])) {
			d->early[d->n_early].id = r->id;
			d->early[d->n_early].output = dup_bytes(r->output, r->output_len);
			d->early[d->n_early].error = strdup(r->error ? r->error : "");
			d->early[d->n_early].state = r->state;
			d->early[d->n_early].exit_code = r->exit_code;
			d->n_early++;
		} else if (!matched) {
			d->bad++; /* neither an echo nor a known argv task */
		}
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int run_demo(const char *addr, size_t n, volatile sig_atomic_t *stop)
{
	static const struct demo_argv av_init[] = {
	    {.label = "sh -c 'echo hello from $(uname -n)'",
	     .argv = {"sh", "-c", "echo hello from $(uname -n)", NULL}},
	    {.label = "uname -a", .argv = {"uname", "-a", NULL, NULL}},
	    {.label = "sh -c 'echo $((6 * 7))'", .argv = {"sh", "-c", "echo $((6 * 7))", NULL}},
	    {.label = "date -u", .argv = {"date", "-u", NULL, NULL}},
	};
	struct demo d = {.n = n, .n_av = sizeof(av_init) / sizeof(av_init[0])};
	struct demo_argv av[sizeof(av_init) / sizeof(av_init[0])];
	memcpy(av, av_init, sizeof(av));
	d.av = av;
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	d.sent_us = calloc(n + d.n_av, sizeof(*d.sent_us));
	d.lat_us = calloc(n ? n : 1, sizeof(*d.lat_us));
	d.seen = calloc(n ? n : 1, 1);
	int status = 1;
	struct gs_client *c = NULL;
	struct gs_client_stream *s = NULL;
	char err[512];
	if (!d.sent_us || !d.lat_us || !d.seen) {
		fprintf(stderr, "gsched local: out of memory for %zu tasks\n", n);
		goto out;
	}
	if (gs_client_connect_err(addr, NULL, &c, err, sizeof(err)) != GS_OK) {
		fprintf(stderr, "gsched: cannot reach the server at %s: %s\n", addr, err);
		goto out;
	}
	if (gs_client_stream_open(c, demo_ack, demo_result, &d, &s) != GS_OK) {
		fprintf(stderr, "gsched local: %s\n", gs_client_error(c));
		goto out;
	}
	fprintf(stderr,
	        "gsched local: demo: %zu echo tasks (16-byte payloads, window %d) and %zu "
	        "commands through one SubmitStream\n",
	        n, DEMO_WINDOW, d.n_av);
	uint64_t t0 = gs_cli_mono_us();
	size_t seq = 0, total = n + d.n_av;
	bool failed = false;
	while (seq < total && !*stop && !failed) {
		pthread_mutex_lock(&d.mu);
		while (d.inflight >= DEMO_WINDOW && !*stop) {
			gs_cli_cond_wait_ms(&d.cv, &d.mu, 50);
			if (gs_client_stream_wait(s, 0) != GS_ETIMEOUT)
				break; /* the stream ended */
		}
		size_t room = d.inflight < DEMO_WINDOW ? DEMO_WINDOW - d.inflight : 0;
		d.inflight += room < total - seq ? room : total - seq;
		pthread_mutex_unlock(&d.mu);
		if (room == 0) {
			failed = gs_client_stream_wait(s, 0) != GS_ETIMEOUT;
			continue;
		}
		for (size_t k = 0; k < room && seq < total; k++, seq++) {
			uint8_t payload[16];
			struct gs_client_spec spec = {0};
			if (seq < n) {
				uint64_t sq = seq;
				memcpy(payload, &sq, 8);
				memcpy(payload + 8, DEMO_MAGIC, 8);
				spec.handler = "echo";
				spec.payload = payload;
				spec.payload_len = 16;
			} else {
				const struct demo_argv *a = &av[seq - n];
				spec.argv = a->argv;
				spec.argc = a->argv[3] ? 4 : a->argv[2] ? 3 : 2;
			}
			d.sent_us[seq] = gs_cli_mono_us();
			int rc;
			while ((rc = gs_client_stream_submit(s, &spec, seq)) == GS_EFULL && !*stop)
				gs_cli_sleep_ms(1);
			if (rc != GS_OK) {
				fprintf(stderr, "gsched local: submit: %s\n", gs_strerror(rc));
				failed = true;
				break;
			}
		}
	}
	gs_client_stream_close(s);
	/* Every result comes before the stream's OK; bound the wait. */
	int rc = GS_ETIMEOUT;
	while (!*stop && (rc = gs_client_stream_wait(s, 200)) == GS_ETIMEOUT)
		;
	uint64_t t1 = d.last_result_us ? d.last_result_us : gs_cli_mono_us();
	if (rc != GS_OK)
		fprintf(stderr, "gsched local: %s\n",
		        *stop ? "interrupted" : gs_client_stream_error(s));
	gs_client_stream_destroy(s);
	s = NULL;

	pthread_mutex_lock(&d.mu);
	size_t missing = 0;
	for (size_t i = 0; i < n; i++)
		missing += d.seen[i] == 0;
	double secs = (double)(t1 - t0) / 1e6;
	printf("\n== gsched local demo ==\n");
	printf("tasks:      %zu echo + %zu commands, %zu results, %zu rejected, %zu missing, "
	       "%zu duplicated, %zu wrong\n",
	       n, d.n_av, d.results, d.rejected, missing, d.dup, d.bad);
	printf("throughput: %.0f tasks/s (%zu tasks in %.3f s, submit -> last result)\n",
	       secs > 0 ? (double)d.results / secs : 0.0, d.results, secs);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (d.seen[i])
			d.lat_us[m++] = d.lat_us[i];
	if (m) {
		qsort(d.lat_us, m, sizeof(*d.lat_us), cmp_u32);
#define PCT(p) ((double)d.lat_us[(size_t)((double)(m - 1) * (p))] / 1000.0)
		printf(
		    "latency:    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms "
		    "(submit -> result, at the client)\n",
		    PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999), PCT(1.0));
#undef PCT
	}
	printf("workers:   ");
	for (size_t i = 0; i < d.n_workers; i++)
		printf(" %016" PRIx64 ": %" PRIu64 "%s", d.workers[i].id, d.workers[i].count,
		       i + 1 < d.n_workers ? "," : "");
	printf("\n");
	bool av_ok = true;
	for (size_t i = 0; i < d.n_av; i++) {
		struct demo_argv *a = &av[i];
		bool ok = a->output && a->state == GS_CLIENT_DONE && a->exit_code == 0;
		av_ok &= ok;
		printf("$ %s\n", a->label);
		if (ok)
			printf("%s%s", a->output,
			       a->output[0] && a->output[strlen(a->output) - 1] != '\n' ? "\n"
			                                                                : "");
		else
			printf("  (%s, exit %d: %s)\n",
			       a->output ? gs_client_state_name(a->state) : "no result",
			       a->exit_code, a->error ? a->error : "");
		free(a->output);
		free(a->error);
	}
	for (size_t i = 0; i < d.n_early; i++) {
		free(d.early[i].output);
		free(d.early[i].error);
	}
	bool all_ok = rc == GS_OK && !failed && missing == 0 && d.dup == 0 && d.bad == 0 &&
	              d.rejected == 0 && av_ok && d.results == total;
	printf("result:     %s\n", all_ok ? "every task succeeded exactly once"
	                                  : "FAILED: not every task succeeded exactly once");
	fflush(stdout);
	pthread_mutex_unlock(&d.mu);
	status = all_ok ? 0 : 1;
out:
	if (s)
		gs_client_stream_destroy(s);
	gs_client_close(c);
	free(d.sent_us);
	free(d.lat_us);
	free(d.seen);
	pthread_mutex_destroy(&d.mu);
	pthread_cond_destroy(&d.cv);
	return status;
}

/* --- gsched local ------------------------------------------------------ */

static void local_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: gsched local [--workers N] [--slots K] [--listen ADDR] [--demo] [--tasks N]\n"
	    "\n"
	    "Runs a server (listening on 127.0.0.1 on a free port unless --listen) and N\n"
	    "worker processes of K slots each (default 2 x 4).  With --demo, runs N echo\n"
	    "tasks (default 100000) and a few commands through it and prints throughput,\n"
	    "latency percentiles and the spread over workers; otherwise serves until\n"
	    "SIGINT/SIGTERM.\n");
}

int gs_cli_local(int argc, char **argv, volatile sig_atomic_t *stop)
{
	static const struct option opts[] = {
	    {"workers", required_argument, NULL, 'w'},
	    {"slots", required_argument, NULL, 'k'},
	    {"listen", required_argument, NULL, 'l'},
	    {"demo", no_argument, NULL, 'd'},
	    {"tasks", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	unsigned long workers = 2, slots = 4, tasks = 100000, v;
	const char *listen = "127.0.0.1:0";
	bool demo = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'd':
			demo = true;
			break;
		case 'h':
			local_usage(stdout);
			return 0;
		case 'w':
		case 'k':
		case 'n':
			if (gs_cli_parse_num(optarg,
			                     c == 'n'   ? 100000000ul
			                     : c == 'w' ? 64
			                                : 1024,
			                     &v) != 0 ||
			    (v == 0 && c != 'n')) {
				fprintf(stderr, "gsched local: bad value '%s' for --%s\n", optarg,
				        c == 'w'   ? "workers"
				        : c == 'k' ? "slots"
				                   : "tasks");
				return 2;
			}
			if (c == 'w')
				workers = v;
			else if (c == 'k')
				slots = v;
			else
				tasks = v;
			break;
		default:
			fprintf(stderr, "gsched local: bad option '%s'\n", argv[optind - 1]);
			local_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gsched local: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	gs_local_cluster *lc = NULL;
	gs_local_cluster_opts lo = {.listen = listen,
	                            .workers = (unsigned)workers,
	                            .slots = (unsigned)slots,
	                            .prefix = "gsched local",
	                            .stop = stop};
	if (gs_local_cluster_start(&lo, &lc) != GS_OK)
		return 1;
	const char *addr = gs_local_cluster_addr(lc);
	int status = 0;
	if (demo) {
		status = run_demo(addr, tasks, stop);
	} else {
		fprintf(stderr,
		        "gsched local: serving; use GSCHED_SERVER=%s gsched submit ...; "
		        "Ctrl-C stops\n",
		        addr);
		while (!*stop) {
			gs_local_cluster_restart_dead(lc);
			gs_cli_sleep_ms(100);
		}
	}
	if (gs_local_cluster_stop(lc) != GS_OK)
		status = 1;
	return status;
}
