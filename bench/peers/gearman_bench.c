/*
 * gearman_bench.c - gearmand peer driver (libgearman), one binary, four modes:
 *   --worker                 registers "echo" (returns its 16-byte workload);
 *                            with --counter FILE it also counts executions and
 *                            records submit->execution latency there (for
 *                            background jobs, whose results nobody waits for).
 *   --mode latency           one foreground job in flight (gearman_client_do).
 *   --mode throughput -w W   sliding window of W foreground jobs on one client
 *                            connection (non-blocking add_task/run_tasks: a
 *                            new job is added as soon as one completes).
 *   --mode background -w W   N background jobs submitted with a window of W
 *                            (each waits for JOB_CREATED), timed until the
 *                            workers have executed all N (--counter FILE).
 *   --mode fill              N background jobs, no worker: for the memory test;
 *                            prints the server's queue length ("status").
 * Prints one JSON line (peer_stats.h).  Every loop is bounded by --timeout.
 */
#include <libgearman/gearman.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_stats.h"

#define COUNTER_CAP (1u << 21) /* latency slots in the counter file */

struct counter_file {
	_Atomic uint64_t done;
	uint64_t lat_ns[COUNTER_CAP];
};

struct opts {
	const char *host, *mode, *counter;
	unsigned port, window, timeout_s;
	unsigned long tasks;
	int worker;
};

/* One client run's state, reached from the libgearman callbacks. */
struct run {
	uint64_t *lat;   /* per-task latency, indexed by sequence */
	uint64_t *start; /* per-task submit time */
	uint64_t done, failed;
};

/*
 * A 36-character unique key per job, shaped like the UUID libgearman makes
 * when given none (so the server stores the same bytes per job), but without
 * libuuid's per-job connect() to uuidd, a client-side cost that is not
 * gearmand's.
 */
static const char *unique_key(char *buf, uint64_t seq)
{
	static unsigned pid;
	if (!pid)
		pid = (unsigned)getpid();
	snprintf(buf, 40, "%08x-0000-4000-8000-%012llx", pid,
	         (unsigned long long)(seq & 0xffffffffffffull));
	return buf;
}

static struct counter_file *counter_map(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, sizeof(struct counter_file)) != 0) {
		perror(path);
		exit(1);
	}
	void *p =
	    mmap(NULL, sizeof(struct counter_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/*
 * The classic (v1) worker callback: its result goes back in the single
 * WORK_COMPLETE packet (v2's gearman_job_send_data would add a WORK_DATA
 * packet per job).  libgearman frees the returned copy.
 */
static void *echo_fn(gearman_job_st *job, void *ctx, size_t *size, gearman_return_t *ret)
{
	struct counter_file *cf = ctx;
	const void *w = gearman_job_workload(job);
	size_t n = gearman_job_workload_size(job);
	if (cf && n == PEER_PAYLOAD) {
		uint64_t t, seq;
		peer_payload_read(w, &t, &seq);
		/* relaxed: the client only polls the count; the slot is advisory */
		uint64_t i = atomic_fetch_add_explicit(&cf->done, 1, memory_order_relaxed);
		if (i < COUNTER_CAP)
			cf->lat_ns[i] = peer_now_ns() - t;
	}
	void *out = malloc(n ? n : 1);
	if (!out) {
		*ret = GEARMAN_WORK_FAIL;
		return NULL;
	}
	memcpy(out, w, n);
	*size = n;
	*ret = GEARMAN_SUCCESS;
	return out;
}

static int run_worker(const struct opts *o)
{
	struct counter_file *cf = o->counter ? counter_map(o->counter) : NULL;
	gearman_worker_st *w = gearman_worker_create(NULL);
	if (!w || gearman_worker_add_server(w, o->host, (in_port_t)o->port) != GEARMAN_SUCCESS) {
		fprintf(stderr, "worker: cannot create/add server\n");
		return 1;
	}
	if (gearman_worker_add_function(w, "echo", 0, echo_fn, cf) != GEARMAN_SUCCESS) {
		fprintf(stderr, "worker: %s\n", gearman_worker_error(w));
		return 1;
	}
	gearman_worker_set_timeout(w, 1000);
	uint64_t deadline = peer_now_ns() + (uint64_t)o->timeout_s * 1000000000u;
	while (peer_now_ns() < deadline) {
		gearman_return_t rc = gearman_worker_work(w);
		if (rc != GEARMAN_SUCCESS && rc != GEARMAN_TIMEOUT && rc != GEARMAN_IO_WAIT &&
		    rc != GEARMAN_NO_JOBS) {
			fprintf(stderr, "worker: %s\n", gearman_worker_error(w));
			break;
		}
	}
	gearman_worker_free(w);
	return 0;
}

static gearman_client_st *client_new(const struct opts *o)
{
	gearman_client_st *c = gearman_client_create(NULL);
	if (!c || gearman_client_add_server(c, o->host, (in_port_t)o->port) != GEARMAN_SUCCESS) {
		fprintf(stderr, "client: cannot create/add server\n");
		exit(1);
	}
	gearman_client_set_timeout(c, (int)o->timeout_s * 1000);
	return c;
}

static int run_latency(const struct opts *o, struct run *r)
{
	gearman_client_st *c = client_new(o);
	unsigned char buf[PEER_PAYLOAD];
	char uniq[40];
	uint64_t t0 = peer_now_ns(), deadline = t0 + (uint64_t)o->timeout_s * 1000000000u;
	for (uint64_t i = 0; i < o->tasks && peer_now_ns() < deadline; i++) {
		uint64_t s = peer_now_ns();
		peer_payload(buf, s, i);
		size_t n = 0;
		gearman_return_t rc;
		void *res =
		    gearman_client_do(c, "echo", unique_key(uniq, i), buf, sizeof(buf), &n, &rc);
		uint64_t e = peer_now_ns();
		if (rc != GEARMAN_SUCCESS || n != PEER_PAYLOAD || memcmp(res, buf, n) != 0) {
			fprintf(stderr, "do: %s\n", gearman_client_error(c));
			free(res);
			return 1;
		}
		free(res);
		r->lat[r->done++] = e - s;
	}
	double el = (double)(peer_now_ns() - t0) / 1e9;
	peer_report("gearmand", "latency", "round_trip", r->done, 1, el, r->lat, r->done);
	gearman_client_free(c);
	return r->done == o->tasks ? 0 : 1;
}

static gearman_return_t on_complete(gearman_task_st *t)
{
	struct run *r = gearman_task_context(t);
	uint64_t seq, s;
	if (gearman_task_data_size(t) != PEER_PAYLOAD) {
		r->failed++;
		return GEARMAN_SUCCESS;
	}
	peer_payload_read(gearman_task_data(t), &s, &seq);
	r->lat[r->done++] = peer_now_ns() - r->start[seq];
	return GEARMAN_SUCCESS;
}

static gearman_return_t on_created(gearman_task_st *t)
{
	struct run *r = gearman_task_context(t);
	r->done++;
	return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *t)
{
	struct run *r = gearman_task_context(t);
	r->failed++;
	return GEARMAN_SUCCESS;
}

/*
 * Keeps `window` tasks in flight: adds tasks while fewer are outstanding, then
 * lets run_tasks (non-blocking) make progress; completions come through the
 * callbacks, which count r->done.  bg: background tasks (done = JOB_CREATED).
 */
static int pump(const struct opts *o, struct run *r, gearman_client_st *c, int bg,
                uint64_t deadline)
{
	unsigned char buf[PEER_PAYLOAD];
	char uniq[40];
	uint64_t sent = 0;
	while ((r->done + r->failed) < o->tasks && peer_now_ns() < deadline) {
		while (sent < o->tasks && sent - r->done - r->failed < o->window) {
			gearman_return_t rc;
			r->start[sent] = peer_now_ns();
			peer_payload(buf, r->start[sent], sent);
			gearman_task_st *t =
			    bg ? gearman_client_add_task_background(c, NULL, r, "echo",
			                                            unique_key(uniq, sent), buf,
			                                            sizeof(buf), &rc)
			       : gearman_client_add_task(c, NULL, r, "echo", unique_key(uniq, sent),
			                                 buf, sizeof(buf), &rc);
			if (!t || rc != GEARMAN_SUCCESS) {
				fprintf(stderr, "add_task: %s\n", gearman_client_error(c));
				return 1;
			}
			sent++;
		}
		gearman_return_t rc = gearman_client_run_tasks(c);
		if (rc == GEARMAN_IO_WAIT) {
			rc = gearman_client_wait(c);
			if (rc != GEARMAN_SUCCESS && rc != GEARMAN_IO_WAIT) {
				fprintf(stderr, "wait: %s\n", gearman_client_error(c));
				return 1;
			}
		} else if (rc != GEARMAN_SUCCESS) {
			fprintf(stderr, "run_tasks: %s\n", gearman_client_error(c));
			return 1;
		}
	}
	return r->failed == 0 && r->done == o->tasks ? 0 : 1;
}

static int run_window(const struct opts *o, struct run *r, int bg)
{
	gearman_client_st *c = client_new(o);
	gearman_client_add_options(c, GEARMAN_CLIENT_NON_BLOCKING | GEARMAN_CLIENT_FREE_TASKS);
	gearman_client_set_fail_fn(c, on_fail);
	if (bg)
		gearman_client_set_created_fn(c, on_created);
	else
		gearman_client_set_complete_fn(c, on_complete);
	struct counter_file *cf = o->counter ? counter_map(o->counter) : NULL;
	if (bg && !cf && strcmp(o->mode, "fill") != 0) {
		fprintf(stderr, "--mode background needs --counter FILE (shared with workers)\n");
		return 2;
	}
	if (cf)
		atomic_store(&cf->done, 0);
	uint64_t t0 = peer_now_ns(), deadline = t0 + (uint64_t)o->timeout_s * 1000000000u;
	int err = pump(o, r, c, bg, deadline);
	uint64_t executed = r->done;
	if (!err && bg && cf) {
		/* bounded poll until the workers have executed every job */
		while (atomic_load(&cf->done) < o->tasks && peer_now_ns() < deadline)
			usleep(100);
		executed = atomic_load(&cf->done);
		err = executed < o->tasks;
	}
	double el = (double)(peer_now_ns() - t0) / 1e9;
	if (bg && cf) {
		size_t n = executed < COUNTER_CAP ? executed : COUNTER_CAP;
		peer_report("gearmand", "background", "submit_to_worker", executed, o->window, el,
		            cf->lat_ns, n);
	} else if (!bg) {
		peer_report("gearmand", "throughput", "round_trip", r->done, o->window, el, r->lat,
		            r->done);
	}
	gearman_client_free(c);
	return err;
}

/* Queue length of function "echo" from the admin "status" command. */
static long server_queued(const struct opts *o)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	inet_pton(AF_INET, o->host, &a.sin_addr);
	char buf[4096];
	long q = -1;
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    write(fd, "status\n", 7) == 7) {
		size_t have = 0;
		for (int i = 0; i < 100 && have < sizeof(buf) - 1; i++) {
			ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
			if (n <= 0)
				break;
			have += (size_t)n;
			buf[have] = '\0';
			if (strstr(buf, "\n.\n") || strncmp(buf, ".\n", 2) == 0)
				break;
		}
		buf[have] = '\0';
		char *p = strstr(buf, "echo\t");
		if (p)
			q = strtol(p + 5, NULL, 10);
	}
	if (fd >= 0)
		close(fd);
	return q;
}

static int run_fill(const struct opts *o, struct run *r)
{
	gearman_client_st *c = client_new(o);
	gearman_client_add_options(c, GEARMAN_CLIENT_NON_BLOCKING | GEARMAN_CLIENT_FREE_TASKS);
	gearman_client_set_fail_fn(c, on_fail);
	gearman_client_set_created_fn(c, on_created);
	uint64_t t0 = peer_now_ns();
	int err = pump(o, r, c, 1, t0 + (uint64_t)o->timeout_s * 1000000000u);
	double el = (double)(peer_now_ns() - t0) / 1e9;
	printf("{\"peer\":\"gearmand\",\"mode\":\"fill\",\"tasks\":%llu,\"queued\":%ld,"
	       "\"tasks_per_s\":%.0f}\n",
	       (unsigned long long)r->done, server_queued(o), (double)r->done / el);
	gearman_client_free(c);
	return err;
}

static void usage(void)
{
	fprintf(stderr, "usage: gearman_bench --port P [--host H] (--worker [--counter F] | "
	                "--mode latency|throughput|background|fill --tasks N [--window W] "
	                "[--counter F]) [--timeout S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = {
	    .host = "127.0.0.1", .mode = "latency", .window = 1, .timeout_s = 300, .tasks = 10000};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--worker")) {
			o.worker = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--host"))
			o.host = v;
		else if (!strcmp(a, "--port"))
			o.port = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--mode"))
			o.mode = v;
		else if (!strcmp(a, "--tasks"))
			o.tasks = peer_parse_ulong(a, v);
		else if (!strcmp(a, "--window"))
			o.window = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--timeout"))
			o.timeout_s = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--counter"))
			o.counter = v;
		else
			usage();
	}
	if (o.port == 0 || o.port > 65535)
		usage();
	if (o.worker)
		return run_worker(&o);
	struct run r = {.lat = calloc(o.tasks, sizeof(uint64_t)),
	                .start = calloc(o.tasks, sizeof(uint64_t))};
	if (!r.lat || !r.start) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	int rc;
	if (!strcmp(o.mode, "latency"))
		rc = run_latency(&o, &r);
	else if (!strcmp(o.mode, "throughput"))
		rc = run_window(&o, &r, 0);
	else if (!strcmp(o.mode, "background"))
		rc = run_window(&o, &r, 1);
	else if (!strcmp(o.mode, "fill"))
		rc = run_fill(&o, &r);
	else
		usage();
	free(r.lat);
	free(r.start);
	return rc;
}
