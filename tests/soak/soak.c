/*
 * soak.c - the soak test (`make soak`, ctest `soak_short`): gsched under a
 * steady load for a long time, with real processes on 127.0.0.1.
 *
 *   gs_soak run --gsched BIN [--seconds S] [--rate R] [--clients C] [--streams N]
 *               [--workers W] [--agents A] [--slots K] [--rss-tolerance PCT]
 *
 * starts one `gsched server`, W worker processes (`gs_soak worker`: A worker
 * agents each, worker_agent.h, every agent its own connection and
 * WorkerService stream) and C client processes (`gs_soak client`: N
 * SubmitStreams each through the C client library, every stream on a client
 * and connection of its own).  The clients submit echo tasks with small
 * payloads at R tasks/s in total (rate-limited, round-robin over their
 * streams) for S seconds, then half-close their streams and wait for the
 * last results.  Meanwhile the server's VmRSS (/proc/PID/status) is sampled.
 *
 * Checks (the verdict; the exit status is 0 only if all hold):
 *   - every submission was acknowledged, and every acknowledged task got
 *     exactly one result, DONE, with its own ID and payload back (none lost,
 *     none twice, none unexpected); every stream ended OK;
 *   - the server's Stats agree (tasks submitted and done);
 *   - the server's VmRSS at the end of the load is within PCT % (default 10)
 *     of its VmRSS after the first minute (after S/10 for runs under 10
 *     minutes).
 * A summary is printed on stdout; process logs go to /tmp/gsched-soak-PID
 * (removed when the run passes).
 *
 * Owns: its child processes (tracked, each also killed by the kernel if this
 * process dies: PR_SET_PDEATHSIG); everything ends on every path, SIGINT and
 * SIGTERM included.  Every wait is bounded.  Process entry point: the only
 * global state is the signal flag and the child table.  Errors: bad options
 * give one line and exit status 2; a failed run exits 1.  Buffers: each
 * stream's bookkeeping arrays are owned by its client process, sized for the
 * run up front (submissions beyond them are not made, and counted).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "gsched_client.h"
#include "worker_agent.h"

#define MAX_PROCS      64
#define MAX_SAMPLES    4096
#define CONNECT_MS     10000
#define DRAIN_MS       120000 /* after the load: bound for the last results */
#define REGISTER_MS    30000
#define STOP_MS        15000
#define SUMMARY_PREFIX "SOAK-CLIENT"
#define PAYLOAD_MAX    48

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int parse_num(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* ======================================================================== */
/* Client processes: N SubmitStreams, rate-limited submissions, bookkeeping  */

struct cstream {
	struct gs_client *c;
	struct gs_client_stream *s;
	unsigned proc, idx;
	size_t cap;        /* slots in the arrays below */
	uint64_t *ack_id;  /* per client_seq: ID acknowledged (0: none) */
	int32_t *ack_code; /* per client_seq: rejection code (0: none) */
	uint64_t *res_id;  /* per client_seq: ID of the first result */
	uint8_t *res_n;    /* per client_seq: results received (saturating) */
	uint64_t next_seq; /* submitter thread only */
	bool dead;         /* submitter thread only: the stream ended early */
	atomic_uint_fast64_t acked, rejected, results, unexpected, failed;
	int end_rc;
	char end_msg[160];
};

static void c_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	(void)msg;
	struct cstream *st = ud;
	if (seq >= st->cap) {
		atomic_fetch_add(&st->unexpected, 1);
		return;
	}
	if (id) {
		if (st->ack_id[seq])
			atomic_fetch_add(&st->unexpected, 1);
		st->ack_id[seq] = id;
		atomic_fetch_add(&st->acked, 1);
	} else {
		st->ack_code[seq] = code ? code : -1;
		atomic_fetch_add(&st->rejected, 1);
	}
}

static void c_result(void *ud, const struct gs_client_result *r)
{
	struct cstream *st = ud;
	char buf[PAYLOAD_MAX + 1];
	size_t n = r->output_len < PAYLOAD_MAX ? r->output_len : PAYLOAD_MAX;
	memcpy(buf, r->output, n);
	buf[n] = 0;
	unsigned p, s;
	uint64_t seq;
	if (r->state != GS_CLIENT_DONE)
		atomic_fetch_add(&st->failed, 1);
	if (sscanf(buf, "p%u.s%u.%" SCNu64, &p, &s, &seq) != 3 || p != st->proc || s != st->idx ||
	    seq >= st->cap) {
		atomic_fetch_add(&st->unexpected, 1);
		return;
	}
	if (st->res_n[seq] == 0)
		st->res_id[seq] = r->id;
	if (st->res_n[seq] < UINT8_MAX)
		st->res_n[seq]++;
	atomic_fetch_add(&st->results, 1);
}

struct ctotals {
	uint64_t submitted, acked, rejected, unanswered, results, lost, duplicate, mismatched,
	    unexpected, failed, full, capped;
	unsigned streams, ended_ok;
};

static int run_client(const char *server, unsigned proc, unsigned nstreams, double rate,
                      unsigned seconds)
{
	struct cstream *ss = calloc(nstreams, sizeof(*ss));
	if (!ss) {
		fprintf(stderr, "gs_soak client: out of memory\n");
		return 1;
	}
	/* Each stream's share of the run, with a margin for rounding. */
	size_t cap = (size_t)(rate * seconds / nstreams * 1.05) + 64;
	struct ctotals t = {.streams = nstreams};
	int rc = 0;
	for (unsigned i = 0; i < nstreams && rc == 0; i++) {
		struct cstream *st = &ss[i];
		st->proc = proc;
		st->idx = i;
		st->cap = cap;
		st->ack_id = calloc(cap, sizeof(uint64_t));
		st->ack_code = calloc(cap, sizeof(int32_t));
		st->res_id = calloc(cap, sizeof(uint64_t));
		st->res_n = calloc(cap, 1);
		if (!st->ack_id || !st->ack_code || !st->res_id || !st->res_n) {
			fprintf(stderr, "gs_soak client: out of memory\n");
			rc = 1;
			break;
		}
		char err[256] = "";
		struct gs_client_opts o = {.connect_timeout_ms = CONNECT_MS};
		if (gs_client_connect_err(server, &o, &st->c, err, sizeof(err)) != GS_OK ||
		    gs_client_stream_open(st->c, c_ack, c_result, st, &st->s) != GS_OK) {
			fprintf(stderr, "gs_soak client %u: stream %u: cannot open: %s\n", proc, i,
			        err);
			rc = 1;
		}
	}
	/* The load: due = rate x elapsed, submitted round-robin every 5 ms. */
	uint64_t t0 = mono_ms(), end = t0 + (uint64_t)seconds * 1000;
	unsigned rr = 0;
	while (rc == 0 && !g_stop) {
		uint64_t now = mono_ms();
		if (now >= end)
			break;
		uint64_t due = (uint64_t)(rate * (double)(now - t0) / 1000.0);
		unsigned skipped = 0;
		while (t.submitted < due && skipped < nstreams) {
			struct cstream *st = &ss[rr];
			rr = (rr + 1) % nstreams;
			if (st->dead || st->next_seq >= st->cap) {
				if (!st->dead)
					t.capped++;
				skipped++;
				continue;
			}
			char pay[PAYLOAD_MAX];
			int len = snprintf(pay, sizeof(pay), "p%u.s%u.%" PRIu64, proc, st->idx,
			                   st->next_seq);
			struct gs_client_spec sp = {
			    .handler = "echo", .payload = pay, .payload_len = (size_t)len};
			int src = gs_client_stream_submit(st->s, &sp, st->next_seq);
			if (src == GS_OK) {
				st->next_seq++;
				t.submitted++;
				skipped = 0;
			} else if (src == GS_EFULL) {
				t.full++; /* the send queue is full: the next turn */
				break;
			} else {
				st->dead = true;
				fprintf(stderr, "gs_soak client %u: stream %u ended early: %s\n",
				        proc, st->idx, gs_client_stream_error(st->s));
				skipped++;
			}
		}
		sleep_ms(5);
	}
	/* The end: half-close every stream, wait for the last results. */
	for (unsigned i = 0; i < nstreams; i++)
		if (ss[i].s)
			gs_client_stream_close(ss[i].s);
	uint64_t drain_end = mono_ms() + DRAIN_MS;
	for (unsigned i = 0; i < nstreams; i++) {
		struct cstream *st = &ss[i];
		if (!st->s)
			continue;
		uint64_t now = mono_ms();
		int left = now < drain_end ? (int)(drain_end - now) : 0;
		st->end_rc = gs_client_stream_wait(st->s, left);
		snprintf(st->end_msg, sizeof(st->end_msg), "%s",
		         st->end_rc == GS_OK ? "" : gs_client_stream_error(st->s));
		if (st->end_rc == GS_OK)
			t.ended_ok++;
		else
			fprintf(stderr, "gs_soak client %u: stream %u ended: rc %d (%s)\n", proc, i,
			        st->end_rc, st->end_msg);
		gs_client_stream_destroy(st->s); /* joins its thread: arrays are ours */
		st->s = NULL;
	}
	/* Exactly one result per acknowledged task, none for the others. */
	for (unsigned i = 0; i < nstreams; i++) {
		struct cstream *st = &ss[i];
		for (uint64_t q = 0; q < st->next_seq; q++) {
			if (st->ack_id[q]) {
				if (st->res_n[q] == 0)
					t.lost++;
				else if (st->res_n[q] > 1)
					t.duplicate += st->res_n[q] - 1u;
				else if (st->res_id[q] != st->ack_id[q])
					t.mismatched++;
			} else {
				if (st->res_n[q])
					t.unexpected += st->res_n[q];
				if (st->ack_code[q] == 0)
					t.unanswered++;
			}
		}
		t.acked += atomic_load(&st->acked);
		t.rejected += atomic_load(&st->rejected);
		t.results += atomic_load(&st->results);
		t.unexpected += atomic_load(&st->unexpected);
		t.failed += atomic_load(&st->failed);
		gs_client_close(st->c);
		free(st->ack_id);
		free(st->ack_code);
		free(st->res_id);
		free(st->res_n);
	}
	free(ss);
	printf(SUMMARY_PREFIX " submitted=%" PRIu64 " acked=%" PRIu64 " rejected=%" PRIu64
	                      " unanswered=%" PRIu64 " results=%" PRIu64 " lost=%" PRIu64
	                      " duplicate=%" PRIu64 " mismatched=%" PRIu64 " unexpected=%" PRIu64
	                      " failed=%" PRIu64 " full=%" PRIu64 " capped=%" PRIu64
	                      " streams=%u ended_ok=%u\n",
	       t.submitted, t.acked, t.rejected, t.unanswered, t.results, t.lost, t.duplicate,
	       t.mismatched, t.unexpected, t.failed, t.full, t.capped, t.streams, t.ended_ok);
	fflush(stdout);
	bool ok = rc == 0 && t.lost == 0 && t.duplicate == 0 && t.mismatched == 0 &&
	          t.unexpected == 0 && t.failed == 0 && t.unanswered == 0 && t.rejected == 0 &&
	          t.ended_ok == t.streams;
	return ok ? 0 : 1;
}

/* ======================================================================== */
/* Worker processes: A worker agents, one thread and connection each         */

struct wagent {
	pthread_t thr;
	struct gs_worker_opts o;
	char name[64];
	int rc;
};

static void *agent_main(void *arg)
{
	struct wagent *w = arg;
	w->rc = gs_worker_agent_run(&w->o);
	return NULL;
}

static int run_worker(const char *server, unsigned proc, unsigned agents, unsigned slots)
{
	/* SIGTERM/SIGINT are taken by sigwait below, in this thread only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	volatile int stop = 0;
	struct wagent *ws = calloc(agents, sizeof(*ws));
	if (!ws)
		return 1;
	unsigned started = 0;
	for (; started < agents; started++) {
		struct wagent *w = &ws[started];
		snprintf(w->name, sizeof(w->name), "soak-w%u.%u", proc, started);
		w->o = (struct gs_worker_opts){.server = server,
		                               .name = w->name,
		                               .slots = slots,
		                               .stop = &stop,
		                               .grace_ms = 2000,
		                               .quiet = 1};
		if (pthread_create(&w->thr, NULL, agent_main, w) != 0)
			break;
	}
	int sig = 0;
	if (started == agents)
		sigwait(&set, &sig);
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	int bad = started == agents ? 0 : 1;
	for (unsigned i = 0; i < started; i++) {
		pthread_join(ws[i].thr, NULL);
		if (ws[i].rc != GS_OK) {
			fprintf(stderr, "gs_soak worker %u: agent %u: %s\n", proc, i,
			        gs_strerror(ws[i].rc));
			bad = 1;
		}
	}
	free(ws);
	return bad;
}

/* ======================================================================== */
/* The orchestrator                                                          */

struct child {
	pid_t pid;
	int out_fd; /* clients: the read end of their stdout (-1: none) */
	char name[32];
};

static struct child g_kids[MAX_PROCS];
static int g_nkids;

/* Starts argv with stderr (and stdout unless out_fd) in DIR/name.log. */
static pid_t spawn(const char *dir, const char *name, char *const argv[], int *out_fd)
{
	if (g_nkids == MAX_PROCS)
		return -1;
	int pfd[2] = {-1, -1};
	if (out_fd && pipe(pfd) != 0)
		return -1;
	char log[512];
	snprintf(log, sizeof(log), "%s/%s.log", dir, name);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		if (out_fd) {
			close(pfd[0]);
			close(pfd[1]);
		}
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			if (!out_fd)
				dup2(fd, 1);
			close(fd);
		}
		if (out_fd) {
			dup2(pfd[1], 1);
			close(pfd[0]);
			close(pfd[1]);
		}
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execv(argv[0], argv);
		fprintf(stderr, "gs_soak: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out_fd) {
		close(pfd[1]);
		*out_fd = pfd[0];
	}
	struct child *k = &g_kids[g_nkids++];
	k->pid = pid;
	k->out_fd = out_fd ? *out_fd : -1;
	snprintf(k->name, sizeof(k->name), "%s", name);
	return pid;
}

static struct child *find_kid(pid_t pid)
{
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i].pid == pid)
			return &g_kids[i];
	return NULL;
}

/* Waits up to ms for pid; returns its wait status, or -1 (still running). */
static int wait_exit(pid_t pid, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			struct child *k = find_kid(pid);
			if (k)
				k->pid = 0;
			return st;
		}
		if (r < 0 || mono_ms() >= end)
			return -1;
		sleep_ms(10);
	}
}

/* SIGTERM, then SIGKILL after STOP_MS. */
static int stop_child(pid_t pid)
{
	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	int st = wait_exit(pid, STOP_MS);
	if (st == -1) {
		kill(pid, SIGKILL);
		st = wait_exit(pid, 2000);
	}
	return st;
}

static void stop_all(void)
{
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i].pid > 0)
			kill(g_kids[i].pid, SIGTERM);
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i].pid > 0)
			stop_child(g_kids[i].pid);
}

static uint64_t rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	uint64_t kib = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* A port on 127.0.0.1 that was free a moment ago (bound to 0, then closed). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int port = -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

struct stats_now {
	uint64_t submitted, done, failed;
	uint32_t workers;
	bool ok;
};

static struct stats_now server_stats(struct gs_client *c)
{
	struct stats_now s = {0};
	struct gs_client_stats st;
	if (gs_client_stats(c, &st) != GS_OK)
		return s;
	for (size_t i = 0; i < st.n_queues; i++) {
		s.submitted += st.queues[i].submitted_total;
		s.done += st.queues[i].done_total;
		s.failed += st.queues[i].failed_total;
	}
	s.workers = st.workers_alive;
	s.ok = true;
	gs_client_stats_free(&st);
	return s;
}

struct sample {
	uint64_t t_ms, kib;
};

struct run_cfg {
	const char *gsched;
	unsigned seconds, clients, streams, workers, agents, slots, tolerance;
	double rate;
};

static void check(bool ok, int *failed, const char *what)
{
	printf("  %-4s %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		*failed = 1;
}

static int run_soak(const struct run_cfg *cfg)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/gsched-soak-%d", (int)getpid());
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	char self[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		perror("/proc/self/exe");
		return 1;
	}
	self[sl] = 0;
	int port = free_port();
	if (port < 0) {
		fprintf(stderr, "gs_soak: no free port\n");
		return 1;
	}
	char addr[32], sec[16], rate_s[32], streams_s[16], agents_s[16], slots_s[16], idx[16];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(sec, sizeof(sec), "%u", cfg->seconds);
	snprintf(rate_s, sizeof(rate_s), "%.3f", cfg->rate / cfg->clients);
	snprintf(streams_s, sizeof(streams_s), "%u", cfg->streams);
	snprintf(agents_s, sizeof(agents_s), "%u", cfg->agents);
	snprintf(slots_s, sizeof(slots_s), "%u", cfg->slots);
	printf("gsched soak: %u s at %.0f tasks/s (echo, payloads <= %d B); 1 server on %s,\n"
	       "  %u client processes x %u SubmitStreams, %u worker processes x %u agents x %u "
	       "slots;\n"
	       "  logs in %s\n",
	       cfg->seconds, cfg->rate, PAYLOAD_MAX, addr, cfg->clients, cfg->streams, cfg->workers,
	       cfg->agents, cfg->slots, dir);
	fflush(stdout);

	int failed = 0;
	struct gs_client *admin = NULL;
	static struct sample samples[MAX_SAMPLES];
	size_t ns = 0;
	struct ctotals tot = {0};
	unsigned clients_ok = 0, clients_done = 0;
	uint64_t rss_idle = 0, rss_drained = 0, t_load = 0;
	struct stats_now fin = {0};
	pid_t clients[MAX_PROCS] = {0}, workers[MAX_PROCS] = {0};
	int out_fds[MAX_PROCS];
	/* Every 5 s, or 20 samples in a short run (at least every 0.5 s). */
	uint64_t sample_ms = cfg->seconds >= 100 ? 5000 : (uint64_t)cfg->seconds * 50;
	if (sample_ms < 500)
		sample_ms = 500;

	char *sargv[] = {(char *)cfg->gsched, "server", "--listen", addr, NULL};
	pid_t server = spawn(dir, "server", sargv, NULL);
	if (server < 0) {
		fprintf(stderr, "gs_soak: cannot start the server\n");
		return 1;
	}
	uint64_t until = mono_ms() + CONNECT_MS;
	while (!g_stop && mono_ms() < until && wait_exit(server, 0) == -1) {
		struct gs_client_opts o = {.connect_timeout_ms = 500};
		if (gs_client_connect(addr, &o, &admin) == GS_OK)
			break;
		sleep_ms(50);
	}
	if (!admin) {
		fprintf(stderr, "gs_soak: the server did not come up (see %s/server.log)\n", dir);
		failed = 1;
		goto out;
	}
	for (unsigned i = 0; i < cfg->workers; i++) {
		char name[32];
		snprintf(name, sizeof(name), "worker-%u", i);
		snprintf(idx, sizeof(idx), "%u", i);
		char *wargv[] = {self,       "worker", "--server", addr,    "--index", idx,
		                 "--agents", agents_s, "--slots",  slots_s, NULL};
		workers[i] = spawn(dir, name, wargv, NULL);
		if (workers[i] < 0) {
			fprintf(stderr, "gs_soak: cannot start %s\n", name);
			failed = 1;
			goto out;
		}
	}
	unsigned want = cfg->workers * cfg->agents;
	until = mono_ms() + REGISTER_MS;
	struct stats_now sn = {0};
	while (!g_stop && mono_ms() < until) {
		sn = server_stats(admin);
		if (sn.ok && sn.workers >= want)
			break;
		sleep_ms(100);
	}
	if (sn.workers < want) {
		fprintf(stderr, "gs_soak: %u of %u worker agents registered in %d ms\n", sn.workers,
		        want, REGISTER_MS);
		failed = 1;
		goto out;
	}
	rss_idle = rss_kib(server);

	for (unsigned i = 0; i < cfg->clients; i++) {
		char name[32];
		snprintf(name, sizeof(name), "client-%u", i);
		snprintf(idx, sizeof(idx), "%u", i);
		char *cargv[] = {self,        "client",    "--server", addr,     "--index",
		                 idx,         "--streams", streams_s,  "--rate", rate_s,
		                 "--seconds", sec,         NULL};
		out_fds[i] = -1;
		clients[i] = spawn(dir, name, cargv, &out_fds[i]);
		if (clients[i] < 0) {
			fprintf(stderr, "gs_soak: cannot start %s\n", name);
			failed = 1;
			goto out;
		}
	}

	/* Sample while the load runs and drains. */
	uint64_t t0 = mono_ms();
	uint64_t report_ms = cfg->seconds >= 300 ? 60000 : (uint64_t)cfg->seconds * 200;
	uint64_t next_sample = t0, next_report = t0 + report_ms;
	uint64_t hard_end = t0 + (uint64_t)cfg->seconds * 1000 + DRAIN_MS + 60000;
	bool clients_left = true;
	while (clients_left && !g_stop) {
		uint64_t now = mono_ms();
		if (now >= hard_end) {
			fprintf(stderr, "gs_soak: clients still running after the drain bound\n");
			failed = 1;
			break;
		}
		if (wait_exit(server, 0) != -1) {
			fprintf(stderr, "gs_soak: the server exited (see %s/server.log)\n", dir);
			server = 0;
			failed = 1;
			break;
		}
		if (now >= next_sample && ns < MAX_SAMPLES) {
			samples[ns].t_ms = now - t0;
			samples[ns].kib = rss_kib(server);
			ns++;
			next_sample += sample_ms;
		}
		if (now >= next_report) {
			struct stats_now s = server_stats(admin);
			printf("  t=%4" PRIu64 " s  server VmRSS %" PRIu64
			       " KiB  submitted %" PRIu64 "  done %" PRIu64 "\n",
			       (now - t0) / 1000, rss_kib(server), s.submitted, s.done);
			fflush(stdout);
			next_report += report_ms;
		}
		clients_left = false;
		for (unsigned i = 0; i < cfg->clients; i++) {
			if (clients[i] <= 0)
				continue;
			int st = wait_exit(clients[i], 0);
			if (st == -1) {
				clients_left = true;
				continue;
			}
			clients[i] = 0;
			clients_done++;
			if (clients_done == 1)
				t_load = now - t0;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
				clients_ok++;
			char buf[1024];
			ssize_t n = read(out_fds[i], buf, sizeof(buf) - 1);
			close(out_fds[i]);
			out_fds[i] = -1;
			struct ctotals c = {0};
			if (n > 0) {
				buf[n] = 0;
				char *p = strstr(buf, SUMMARY_PREFIX);
				if (p && sscanf(p,
				                SUMMARY_PREFIX
				                " submitted=%" SCNu64 " acked=%" SCNu64
				                " rejected=%" SCNu64 " unanswered=%" SCNu64
				                " results=%" SCNu64 " lost=%" SCNu64
				                " duplicate=%" SCNu64 " mismatched=%" SCNu64
				                " unexpected=%" SCNu64 " failed=%" SCNu64
				                " full=%" SCNu64 " capped=%" SCNu64
				                " streams=%u ended_ok=%u",
				                &c.submitted, &c.acked, &c.rejected, &c.unanswered,
				                &c.results, &c.lost, &c.duplicate, &c.mismatched,
				                &c.unexpected, &c.failed, &c.full, &c.capped,
				                &c.streams, &c.ended_ok) != 14)
					n = 0;
			}
			if (n <= 0) {
				fprintf(
				    stderr,
				    "gs_soak: client %u gave no summary (see %s/client-%u.log)\n",
				    i, dir, i);
				failed = 1;
			}
			tot.submitted += c.submitted;
			tot.acked += c.acked;
			tot.rejected += c.rejected;
			tot.unanswered += c.unanswered;
			tot.results += c.results;
			tot.lost += c.lost;
			tot.duplicate += c.duplicate;
			tot.mismatched += c.mismatched;
			tot.unexpected += c.unexpected;
			tot.failed += c.failed;
			tot.full += c.full;
			tot.capped += c.capped;
			tot.streams += c.streams;
			tot.ended_ok += c.ended_ok;
		}
		if (clients_left)
			sleep_ms(20);
	}
	if (server > 0) {
		rss_drained = rss_kib(server);
		fin = server_stats(admin);
	}

out:
	gs_client_close(admin);
	admin = NULL;
	for (unsigned i = 0; i < cfg->clients; i++)
		if (clients[i] > 0)
			stop_child(clients[i]);
	for (unsigned i = 0; i < cfg->workers; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
	unsigned workers_ok = 0;
	for (unsigned i = 0; i < cfg->workers; i++) {
		if (workers[i] <= 0)
			continue;
		int st = stop_child(workers[i]);
		if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			workers_ok++;
	}
	int server_st = server > 0 ? stop_child(server) : -1;
	stop_all();
	if (g_stop) {
		fprintf(stderr, "gs_soak: interrupted\n");
		return 1;
	}
	if (failed && ns == 0)
		return 1;

	/* The baseline: the first sample at or after the first minute (S/10
	 * for shorter runs); the end: the last sample within the load. */
	uint64_t base_at = cfg->seconds >= 600 ? 60000 : (uint64_t)cfg->seconds * 100;
	uint64_t load_ms = (uint64_t)cfg->seconds * 1000;
	struct sample base = {0}, last = {0};
	uint64_t kmin = UINT64_MAX, kmax = 0;
	for (size_t i = 0; i < ns; i++) {
		if (samples[i].kib == 0)
			continue;
		if (!base.kib && samples[i].t_ms >= base_at)
			base = samples[i];
		if (samples[i].t_ms <= load_ms)
			last = samples[i];
		kmin = samples[i].kib < kmin ? samples[i].kib : kmin;
		kmax = samples[i].kib > kmax ? samples[i].kib : kmax;
	}
	double drift =
	    base.kib ? 100.0 * ((double)last.kib - (double)base.kib) / (double)base.kib : 100.0;
	double secs = t_load ? (double)t_load / 1000.0 : (double)cfg->seconds;

	printf("\ngsched soak summary (%u s, %u client streams, %u worker agents)\n", cfg->seconds,
	       cfg->clients * cfg->streams, cfg->workers * cfg->agents);
	printf("  tasks: submitted %" PRIu64 ", acknowledged %" PRIu64 ", rejected %" PRIu64
	       ", unanswered %" PRIu64 "\n",
	       tot.submitted, tot.acked, tot.rejected, tot.unanswered);
	printf("  results: %" PRIu64 " (lost %" PRIu64 ", duplicate %" PRIu64 ", wrong ID %" PRIu64
	       ", unexpected %" PRIu64 ", not DONE %" PRIu64 ")\n",
	       tot.results, tot.lost, tot.duplicate, tot.mismatched, tot.unexpected, tot.failed);
	printf(
	    "  rate: %.1f tasks/s acknowledged over %.1f s (target %.0f; send queue full %" PRIu64
	    " times, per-stream cap hit %" PRIu64 ")\n",
	    (double)tot.acked / secs, secs, cfg->rate, tot.full, tot.capped);
	printf("  server Stats: submitted %" PRIu64 ", done %" PRIu64 ", failed %" PRIu64 "\n",
	       fin.submitted, fin.done, fin.failed);
	printf("  server VmRSS (KiB, %zu samples every %.1f s): idle %" PRIu64 ", min %" PRIu64
	       ", at %.0f s %" PRIu64 ", max %" PRIu64 ", end of load (%.0f s) %" PRIu64
	       " (%+.1f%%), drained %" PRIu64 "\n",
	       ns, (double)sample_ms / 1000.0, rss_idle, kmin == UINT64_MAX ? 0 : kmin,
	       (double)base.t_ms / 1000.0, base.kib, kmax, (double)last.t_ms / 1000.0, last.kib,
	       drift, rss_drained);
	printf("  streams: %u of %u ended OK; client processes %u of %u OK; worker processes %u "
	       "of %u stopped cleanly; server exit status %d\n",
	       tot.ended_ok, tot.streams, clients_ok, cfg->clients, workers_ok, cfg->workers,
	       server_st != -1 && WIFEXITED(server_st) ? WEXITSTATUS(server_st) : -1);
	printf("checks:\n");
	check(!failed, &failed, "every process started, ran and reported");
	check(tot.submitted > 0 && tot.acked == tot.submitted && tot.rejected == 0 &&
	          tot.unanswered == 0,
	      &failed, "every submission acknowledged");
	check(tot.lost == 0 && tot.duplicate == 0 && tot.mismatched == 0 && tot.unexpected == 0 &&
	          tot.results == tot.acked,
	      &failed, "every acknowledged task got exactly one result (none lost, none twice)");
	check(tot.failed == 0, &failed, "every result DONE with its own payload");
	check(tot.streams == cfg->clients * cfg->streams && tot.ended_ok == tot.streams &&
	          clients_ok == cfg->clients,
	      &failed, "every client stream ended OK");
	check(fin.submitted == tot.acked && fin.done == tot.results, &failed,
	      "the server's Stats agree (submitted, done)");
	char what[160];
	snprintf(what, sizeof(what), "server VmRSS at the end within %u%% of VmRSS at %.0f s",
	         cfg->tolerance, (double)base_at / 1000.0);
	check(base.kib && last.kib && last.t_ms > base.t_ms &&
	          (drift < 0 ? -drift : drift) <= (double)cfg->tolerance,
	      &failed, what);
	printf("verdict: %s\n", failed ? "FAIL" : "PASS");
	fflush(stdout);
	if (!failed) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "gs_soak: could not remove %s\n", dir);
	}
	return failed ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: gs_soak run --gsched BIN [--seconds S (600)] [--rate R (2000)]\n"
	        "                  [--clients C (4)] [--streams N (50)] [--workers W (5)]\n"
	        "                  [--agents A (10)] [--slots K (16)] [--rss-tolerance PCT (10)]\n"
	        "       gs_soak client --server ADDR --index I --streams N --rate R --seconds S\n"
	        "       gs_soak worker --server ADDR --index I --agents A --slots K\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *mode = argv[1];
	static const struct option opts[] = {
	    {"gsched", required_argument, NULL, 'g'},
	    {"seconds", required_argument, NULL, 's'},
	    {"rate", required_argument, NULL, 'r'},
	    {"clients", required_argument, NULL, 'c'},
	    {"streams", required_argument, NULL, 'n'},
	    {"workers", required_argument, NULL, 'w'},
	    {"agents", required_argument, NULL, 'a'},
	    {"slots", required_argument, NULL, 'k'},
	    {"server", required_argument, NULL, 'S'},
	    {"index", required_argument, NULL, 'i'},
	    {"rss-tolerance", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	struct run_cfg cfg = {.seconds = 600,
	                      .rate = 2000,
	                      .clients = 4,
	                      .streams = 50,
	                      .workers = 5,
	                      .agents = 10,
	                      .slots = 16,
	                      .tolerance = 10};
	const char *server = NULL;
	unsigned index = 0;
	int c, li = -1;
	optind = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
		unsigned long v = 0;
		double d = 0;
		char *end = NULL;
		switch (c) {
		case 'g':
			cfg.gsched = optarg;
			continue;
		case 'S':
			server = optarg;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		case 'r':
			d = strtod(optarg, &end);
			if (!*optarg || *end || !(d >= 1 && d <= 1e6)) {
				fprintf(stderr, "gs_soak: --rate is 1..1000000 tasks/s\n");
				return 2;
			}
			cfg.rate = d;
			continue;
		case '?':
			fprintf(stderr, "gs_soak: bad option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		default:
			break;
		}
		unsigned long hi = c == 's' ? 86400 : c == 't' ? 100 : c == 'i' ? 1000 : 1024;
		unsigned long lo = c == 'i' || c == 't' ? 0 : 1;
		if (parse_num(optarg, lo, hi, &v) != 0) {
			fprintf(stderr, "gs_soak: --%s is %lu..%lu\n",
			        li >= 0 ? opts[li].name : "?", lo, hi);
			return 2;
		}
		if (c == 's')
			cfg.seconds = (unsigned)v;
		else if (c == 'c')
			cfg.clients = (unsigned)v;
		else if (c == 'n')
			cfg.streams = (unsigned)v;
		else if (c == 'w')
			cfg.workers = (unsigned)v;
		else if (c == 'a')
			cfg.agents = (unsigned)v;
		else if (c == 'k')
			cfg.slots = (unsigned)v;
		else if (c == 'i')
			index = (unsigned)v;
		else if (c == 't')
			cfg.tolerance = (unsigned)v;
	}
	if (optind != argc) {
		fprintf(stderr, "gs_soak: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(mode, "client") == 0) {
		if (!server) {
			fprintf(stderr, "gs_soak client: --server is required\n");
			return 2;
		}
		return run_client(server, index, cfg.streams, cfg.rate, cfg.seconds);
	}
	if (strcmp(mode, "worker") == 0) {
		if (!server) {
			fprintf(stderr, "gs_soak worker: --server is required\n");
			return 2;
		}
		return run_worker(server, index, cfg.agents, cfg.slots);
	}
	if (strcmp(mode, "run") != 0) {
		fprintf(stderr, "gs_soak: unknown mode '%s'\n", mode);
		usage(stderr);
		return 2;
	}
	if (!cfg.gsched || access(cfg.gsched, X_OK) != 0) {
		fprintf(stderr, "gs_soak: --gsched must name the gsched binary\n");
		return 2;
	}
	if (cfg.clients > MAX_PROCS / 2 || cfg.workers > MAX_PROCS / 2 - 1) {
		fprintf(stderr, "gs_soak: at most %d client and %d worker processes\n",
		        MAX_PROCS / 2, MAX_PROCS / 2 - 1);
		return 2;
	}
	return run_soak(&cfg);
}
