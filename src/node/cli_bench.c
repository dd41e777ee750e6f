/*
 * cli_bench.c - `gsched bench`: the end-to-end load generator.
 *
 * Drives a running server (--server ADDR) or a local cluster of its own (a
 * server thread in this process plus --workers worker processes, as `gsched
 * local` runs them).  Modes:
 *   latency     one task in flight, --tasks round trips, over a SubmitStream
 *               or unary Submit+Wait: --path auto probes both and uses the
 *               one with the lower median;
 *   throughput  a window of --window tasks in flight over one SubmitStream,
 *               or (--batch B) unary Submit of B specs, then Wait, repeated;
 *   streams     --streams C clients (one connection each), each like
 *               throughput, concurrently;
 *   fill        (--server only) unary Submit of --batch specs, repeated until
 *               --tasks are queued, never waiting for a result: with no worker
 *               attached they stay queued (`make bench` measures the server's
 *               memory per queued task this way).
 * --percentiles-out FILE writes the round trip's percentile curve (one
 * "percentile microseconds" line per point) for plotting.
 * Every task is timed end to end (client send -> result at the client) and
 * by hop from the timestamps carried in the result (submitted_us,
 * assigned_us, started_us, finished_us), all CLOCK_REALTIME microseconds so
 * they line up on one machine (a negative hop, from clock skew across
 * machines, counts as 0).  Percentiles come from gs_histogram.
 *
 * Owns: the clients, one driver per stream (a thread each in streams mode)
 * and the local cluster if it started one.  Every wait is bounded: no
 * progress for --timeout-s seconds ends the run.  Exit: 0 if every task
 * (warmup included) succeeded exactly once, 1 if any failed, was rejected,
 * went missing or came back wrong, 2 bad usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gsched_client.h"
#include "histogram.h"
#include "local_cluster.h"

#define MAX_STREAMS   256
#define MAX_PAYLOAD   (1u << 20)
#define MAX_WINDOW    1000000u
#define ERRORS_SHOWN  3
#define POLL_MS       50
#define DEFAULT_PROBE 1000

enum bench_mode { MODE_LATENCY, MODE_THROUGHPUT, MODE_STREAMS, MODE_FILL };
enum bench_path { PATH_AUTO, PATH_STREAM, PATH_UNARY };

/* The histograms: the round trip, the five hops, and the ack as the client
 * saw it (client send -> ack received). */
enum {
	H_RT,
	H_SUBMIT_ACK,
	H_ACK_ASSIGN,
	H_ASSIGN_START,
	H_START_FINISH,
	H_FINISH_DELIV,
	H_ACK_SEEN,
	H_N
};

static const char *const hop_label[H_N] = {
    "round trip",
    "  submit -> ack",
    "  ack -> assigned",
    "  assigned -> started",
    "  started -> finished",
    "  finished -> delivered",
    "ack seen by client",
};
static const char *const hop_key[H_N] = {
    "round_trip",          "submit_to_ack",         "ack_to_assigned", "assigned_to_started",
    "started_to_finished", "finished_to_delivered", "ack_seen",
};

struct bench_cfg {
	const char *server; /* NULL: local cluster */
	int mode, path;
	size_t tasks, warmup, probe;
	unsigned window, batch, streams;
	size_t payload_bytes;
	const char *handler, *queue;
	unsigned workers, slots;
	unsigned busy_poll_us; /* --busy-poll-us: the client, and a local cluster */
	int timeout_s;
	bool json;
	const char *pct_out; /* --percentiles-out FILE, or NULL */
	volatile sig_atomic_t *stop;
};

struct bench_counts {
	size_t ok, failed, rejected, missing, dup, wrong;
	size_t unsent; /* never sent: the run was cut short */
};

struct bench_stats {
	gs_histogram h[H_N];
	struct bench_counts cnt;
	size_t measured;         /* successful measured tasks */
	uint64_t t_begin, t_end; /* monotonic us of the measured phase */
};

/* A task whose ack or result has come, but not both. */
struct pend {
	uint64_t id; /* 0: empty slot */
	uint64_t seq;
	bool has_ack, has_res, state_ok, out_ok;
	uint64_t out_seq, recv_us, t[4];
};

struct idmap {
	struct pend *e;
	size_t mask;
};

/* One client stream (or batch loop) and what it measured. */
struct driver {
	const struct bench_cfg *cfg;
	struct gs_client *client;
	bool own_client;
	bool unary;                 /* Submit+Wait batches instead of a SubmitStream */
	unsigned window;            /* stream: tasks in flight */
	unsigned batch;             /* unary: tasks per Submit */
	size_t n, warm;             /* tasks; the first warm are not measured */
	pthread_barrier_t *barrier; /* between warmup and measuring (streams) */
	uint64_t *send_us;          /* per seq, CLOCK_REALTIME */
	uint64_t *ack_us;
	uint8_t *done; /* per seq: 0 none, 1 result, 2 rejected */
	uint8_t *payload;
	struct idmap map;
	struct gs_client_stream *stream;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t inflight, completed, errors_shown;
	size_t sent;            /* seq [0, sent) were submitted */
	uint64_t last_progress; /* monotonic us */
	bool failed;            /* the run was cut short */
	char err[512];
	struct bench_stats st;
	pthread_t thread;
};

static uint64_t real_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t hop(uint64_t from, uint64_t to)
{
	return to > from ? to - from : 0;
}

/* --- id -> task map ----------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static int idmap_init(struct idmap *m, size_t max_live)
{
	size_t cap = 64;
	while (cap < 4 * max_live)
		cap <<= 1;
	m->e = calloc(cap, sizeof(*m->e));
	m->mask = cap - 1;
	return m->e ? GS_OK : GS_ENOMEM;
}

/* The entry for id, created empty if absent (NULL if the table is full). */
static struct pend *idmap_get(struct idmap *m, uint64_t id)
{
	for (size_t i = mix(id) & m->mask, k = 0; k <= m->mask; i = (i + 1) & m->mask, k++) {
		if (m->e[i].id == id)
			return &m->e[i];
		if (m->e[i].id == 0) {
			memset(&m->e[i], 0, sizeof(m->e[i]));
			m->e[i].id = id;
			return &m->e[i];
		}
	}
	return NULL;
}

/* Removes p (linear probing: shift the following run back). */
static void idmap_del(struct idmap *m, struct pend *p)
{
	size_t i = (size_t)(p - m->e);
	for (size_t j = (i + 1) & m->mask; m->e[j].id; j = (j + 1) & m->mask) {
		size_t home = mix(m->e[j].id) & m->mask;
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->e[i] = m->e[j];
			i = j;
		}
	}
	m->e[i].id = 0;
}

/* --- payloads ------------------------------------------------------------ */

/* A recognisable payload: the seq in the first 8 bytes (if they fit), then
 * a fixed pattern. */
static void fill_payload(uint8_t *p, size_t n, uint64_t seq)
{
	if (n >= 8)
		memcpy(p, &seq, 8);
	else
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)(i * 31u + 7u);
}

static void init_payload(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31u + 7u);
}

/* Checks an echo's output against the pattern; *seq gets its embedded seq. */
static bool check_output(const struct driver *d, const uint8_t *out, size_t len, uint64_t *seq)
{
	size_t n = d->cfg->payload_bytes;
	*seq = UINT64_MAX;
	if (strcmp(d->cfg->handler, "echo") != 0)
		return true;
	if (len != n)
		return false;
	for (size_t i = n >= 8 ? 8 : 0; i < n; i++)
		if (out[i] != (uint8_t)(i * 31u + 7u))
			return false;
	if (n >= 8)
		memcpy(seq, out, 8);
	return true;
}

/* --- recording (under d->mu) ------------------------------------------- */

static void note_failure(struct driver *d, uint64_t seq, const char *what, const char *why)
{
	if (d->errors_shown++ < ERRORS_SHOWN)
		fprintf(stderr, "gsched bench: task %" PRIu64 ": %s%s%s\n", seq, what,
		        why && why[0] ? ": " : "", why ? why : "");
}

/* Both the ack and the result of seq are in p: count and time it. */
static void complete(struct driver *d, const struct pend *p)
{
	uint64_t seq = p->seq;
	d->last_progress = gs_cli_mono_us();
	if (seq >= d->n) {
		d->st.cnt.wrong++;
		note_failure(d, seq, "result for a task never sent", NULL);
		return;
	}
	if (d->done[seq]) {
		d->st.cnt.dup++;
		note_failure(d, seq, "duplicate result", NULL);
		return;
	}
	d->done[seq] = 1;
	d->completed++;
	if (d->inflight)
		d->inflight--;
	if (!p->state_ok) {
		d->st.cnt.failed++;
		return;
	}
	if (!p->out_ok || (p->out_seq != UINT64_MAX && p->out_seq != seq)) {
		d->st.cnt.wrong++;
		note_failure(d, seq, "wrong output", NULL);
		return;
	}
	d->st.cnt.ok++;
	if (seq < d->warm)
		return;
	uint64_t send = d->send_us[seq];
	const uint64_t *t = p->t; /* submitted, assigned, started, finished */
	gs_histogram *h = d->st.h;
	gs_histogram_record(&h[H_RT], hop(send, p->recv_us));
	if (t[0])
		gs_histogram_record(&h[H_SUBMIT_ACK], hop(send, t[0]));
	if (t[0] && t[1])
		gs_histogram_record(&h[H_ACK_ASSIGN], hop(t[0], t[1]));
	if (t[1] && t[2])
		gs_histogram_record(&h[H_ASSIGN_START], hop(t[1], t[2]));
	if (t[2] && t[3])
		gs_histogram_record(&h[H_START_FINISH], hop(t[2], t[3]));
	if (t[3])
		gs_histogram_record(&h[H_FINISH_DELIV], hop(t[3], p->recv_us));
	if (d->ack_us[seq])
		gs_histogram_record(&h[H_ACK_SEEN], hop(send, d->ack_us[seq]));
	d->st.measured++;
	d->st.t_end = d->last_progress;
}

/* Fills p's result part from r (received at recv). */
static void take_result(struct driver *d, struct pend *p, const struct gs_client_result *r,
                        uint64_t recv)
{
	p->has_res = true;
	p->recv_us = recv;
	p->t[0] = r->submitted_us;
	p->t[1] = r->assigned_us;
	p->t[2] = r->started_us;
	p->t[3] = r->finished_us;
	p->state_ok = r->state == GS_CLIENT_DONE && r->exit_code == 0;
	p->out_ok = check_output(d, r->output, r->output_len, &p->out_seq);
	if (!p->state_ok)
		note_failure(d, p->has_ack ? p->seq : p->out_seq, gs_client_state_name(r->state),
		             r->error && r->error[0] ? r->error : "non-zero exit");
}

/* --- stream callbacks --------------------------------------------------- */

static void on_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	struct driver *d = ud;
	uint64_t now = real_us();
	pthread_mutex_lock(&d->mu);
	if (seq < d->n)
		d->ack_us[seq] = now;
	if (!id) {
		d->last_progress = gs_cli_mono_us();
		d->st.cnt.rejected++;
		if (seq < d->n && !d->done[seq]) {
			d->done[seq] = 2;
			d->completed++;
			if (d->inflight)
				d->inflight--;
		}
		char why[320];
		snprintf(why, sizeof(why), "code %d: %s", code, msg ? msg : "");
		note_failure(d, seq, "rejected", why);
	} else {
		struct pend *p = idmap_get(&d->map, id);
		if (!p) {
			d->failed = true;
			snprintf(d->err, sizeof(d->err), "too many tasks awaiting their ack");
		} else {
			p->has_ack = true;
			p->seq = seq;
			if (p->has_res) {
				if (p->out_seq != UINT64_MAX && p->out_seq != seq)
					p->out_ok = false;
				complete(d, p);
				idmap_del(&d->map, p);
			}
		}
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void on_result(void *ud, const struct gs_client_result *r)
{
	struct driver *d = ud;
	uint64_t now = real_us();
	pthread_mutex_lock(&d->mu);
	struct pend *p = idmap_get(&d->map, r->id);
	if (!p) {
		d->failed = true;
		snprintf(d->err, sizeof(d->err), "too many results awaiting their ack");
	} else {
		take_result(d, p, r, now);
		if (p->has_ack) {
			complete(d, p);
			idmap_del(&d->map, p);
		}
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* --- drivers ------------------------------------------------------------- */

static int driver_init(struct driver *d, const struct bench_cfg *cfg, struct gs_client *c, size_t n,
                       size_t warm, bool unary, unsigned window, unsigned batch)
{
	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	d->client = c;
	d->n = n;
	d->warm = warm;
	d->unary = unary;
	d->window = window ? window : 1;
	d->batch = batch ? batch : 1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	for (int i = 0; i < H_N; i++)
		gs_histogram_init(&d->st.h[i]);
	size_t per = unary ? d->batch : 1;
	d->send_us = calloc(n ? n : 1, sizeof(*d->send_us));
	d->ack_us = calloc(n ? n : 1, sizeof(*d->ack_us));
	d->done = calloc(n ? n : 1, 1);
	d->payload = malloc((cfg->payload_bytes ? cfg->payload_bytes : 1) * per);
	if (!d->send_us || !d->ack_us || !d->done || !d->payload ||
	    idmap_init(&d->map, unary ? 1 : d->window) != GS_OK)
		return GS_ENOMEM;
	for (size_t i = 0; i < per; i++)
		init_payload(d->payload + i * cfg->payload_bytes, cfg->payload_bytes);
	return GS_OK;
}

static void driver_fini(struct driver *d)
{
	if (d->stream)
		gs_client_stream_destroy(d->stream);
	if (d->own_client)
		gs_client_close(d->client);
	free(d->send_us);
	free(d->ack_us);
	free(d->done);
	free(d->payload);
	free(d->map.e);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
}

static struct gs_client_spec make_spec(const struct driver *d, const uint8_t *payload)
{
	struct gs_client_spec s = {0};
	s.queue = d->cfg->queue;
	s.handler = d->cfg->handler;
	s.payload = payload;
	s.payload_len = d->cfg->payload_bytes;
	return s;
}

/* d->failed, which the stream's callbacks may set. */
static bool is_failed(struct driver *d)
{
	pthread_mutex_lock(&d->mu);
	bool f = d->failed;
	pthread_mutex_unlock(&d->mu);
	return f;
}

static bool stalled(struct driver *d)
{
	return gs_cli_mono_us() - d->last_progress > (uint64_t)d->cfg->timeout_s * 1000000u;
}

/* Stream: sends seq [from, to) with at most d->window in flight and waits
 * until every one has its result (or the run stops). */
static void stream_phase(struct driver *d, size_t from, size_t to)
{
	const struct bench_cfg *cfg = d->cfg;
	size_t seq = from;
	pthread_mutex_lock(&d->mu);
	d->last_progress = gs_cli_mono_us();
	pthread_mutex_unlock(&d->mu);
	for (;;) {
		pthread_mutex_lock(&d->mu);
		while (d->inflight >= d->window || (seq == to && d->completed < to)) {
			if (d->failed || *cfg->stop)
				break;
			if (stalled(d)) {
				d->failed = true;
				snprintf(d->err, sizeof(d->err),
				         "no progress for %d s (%zu of %zu tasks in flight)",
				         cfg->timeout_s, d->inflight, to - from);
				break;
			}
			gs_cli_cond_wait_ms(&d->cv, &d->mu, POLL_MS);
			if (gs_client_stream_wait(d->stream, 0) != GS_ETIMEOUT) {
				d->failed = true;
				snprintf(d->err, sizeof(d->err), "the stream ended: %s",
				         gs_client_stream_error(d->stream));
				break;
			}
		}
		bool stop = d->failed || *cfg->stop || (seq == to && d->completed >= to);
		size_t room = d->inflight < d->window ? d->window - d->inflight : 0;
		if (room > to - seq)
			room = to - seq;
		d->inflight += stop ? 0 : room;
		pthread_mutex_unlock(&d->mu);
		if (stop)
			break;
		for (size_t k = 0; k < room; k++, seq++) {
			fill_payload(d->payload, cfg->payload_bytes, seq);
			struct gs_client_spec spec = make_spec(d, d->payload);
			d->send_us[seq] = real_us();
			d->sent = seq + 1;
			int rc;
			uint64_t t0 = gs_cli_mono_us();
			while ((rc = gs_client_stream_submit(d->stream, &spec, seq)) == GS_EFULL &&
			       !*cfg->stop &&
			       gs_cli_mono_us() - t0 < (uint64_t)cfg->timeout_s * 1000000u)
				gs_cli_sleep_ms(1);
			if (rc != GS_OK) {
				pthread_mutex_lock(&d->mu);
				d->failed = true;
				d->inflight -= room - k;
				snprintf(d->err, sizeof(d->err), "submit: %s", gs_strerror(rc));
				pthread_mutex_unlock(&d->mu);
				return;
			}
		}
	}
}

/* Unary: Submit of up to d->batch specs, then Wait for them, for seq
 * [from, to). */
static void unary_phase(struct driver *d, size_t from, size_t to)
{
	const struct bench_cfg *cfg = d->cfg;
	size_t b = d->batch;
	struct gs_client_spec *specs = calloc(b, sizeof(*specs));
	uint64_t *ids = calloc(b, sizeof(*ids));
	struct gs_client_result *res = calloc(b, sizeof(*res));
	if (!specs || !ids || !res) {
		d->failed = true;
		snprintf(d->err, sizeof(d->err), "out of memory");
		goto out;
	}
	for (size_t seq = from; seq < to && !d->failed && !*cfg->stop;) {
		size_t k = to - seq < b ? to - seq : b;
		for (size_t i = 0; i < k; i++) {
			uint8_t *p = d->payload + i * cfg->payload_bytes;
			fill_payload(p, cfg->payload_bytes, seq + i);
			specs[i] = make_spec(d, p);
		}
		uint64_t t_send = real_us();
		int rc = gs_client_submit(d->client, specs, k, ids);
		uint64_t t_ack = real_us();
		pthread_mutex_lock(&d->mu);
		d->sent = seq + k;
		for (size_t i = 0; i < k; i++) {
			d->send_us[seq + i] = t_send;
			d->ack_us[seq + i] = rc == GS_OK ? t_ack : 0;
		}
		if (rc != GS_OK) {
			d->st.cnt.rejected += k;
			for (size_t i = 0; i < k; i++)
				d->done[seq + i] = 2;
			note_failure(d, seq, "Submit failed", gs_client_error(d->client));
			if (rc == GS_EUNAVAIL || rc == GS_ETIMEOUT) {
				d->failed = true;
				snprintf(d->err, sizeof(d->err), "Submit: %s",
				         gs_client_error(d->client));
			}
			pthread_mutex_unlock(&d->mu);
			seq += k;
			continue;
		}
		pthread_mutex_unlock(&d->mu);
		rc = gs_client_wait(d->client, ids, k, cfg->timeout_s * 1000, res);
		uint64_t t_recv = real_us();
		pthread_mutex_lock(&d->mu);
		for (size_t i = 0; i < k; i++) {
			if (!gs_client_state_final(res[i].state))
				continue; /* counted as missing at the end */
			struct pend p = {.id = ids[i], .seq = seq + i, .has_ack = true};
			take_result(d, &p, &res[i], t_recv);
			complete(d, &p);
		}
		if (rc != GS_OK) {
			d->failed = true;
			snprintf(d->err, sizeof(d->err), "Wait: %s",
			         rc == GS_ETIMEOUT ? "timed out" : gs_client_error(d->client));
		}
		pthread_mutex_unlock(&d->mu);
		gs_client_results_free(res, k);
		memset(res, 0, b * sizeof(*res));
		seq += k;
	}
out:
	free(specs);
	free(ids);
	free(res);
}

static void run_phase(struct driver *d, size_t from, size_t to)
{
	if (d->unary)
		unary_phase(d, from, to);
	else
		stream_phase(d, from, to);
}

/* Runs the warmup, then (after the barrier, if any) the measured tasks. */
static void *driver_main(void *arg)
{
	struct driver *d = arg;
	const struct bench_cfg *cfg = d->cfg;
	if (!d->client) {
		struct gs_client_opts o = {.call_timeout_ms = cfg->timeout_s * 1000,
		                           .busy_poll_us = cfg->busy_poll_us};
		char err[256];
		if (gs_client_connect_err(cfg->server, &o, &d->client, err, sizeof(err)) != GS_OK) {
			d->failed = true;
			snprintf(d->err, sizeof(d->err), "connect: %s", err);
		}
		d->own_client = d->client != NULL;
	}
	if (!d->failed && !d->unary &&
	    gs_client_stream_open(d->client, on_ack, on_result, d, &d->stream) != GS_OK) {
		d->failed = true;
		snprintf(d->err, sizeof(d->err), "SubmitStream: %s", gs_client_error(d->client));
	}
	if (!is_failed(d))
		run_phase(d, 0, d->warm);
	if (d->barrier)
		pthread_barrier_wait(d->barrier);
	d->st.t_begin = d->st.t_end = gs_cli_mono_us();
	if (!is_failed(d))
		run_phase(d, d->warm, d->n);
	if (d->stream) {
		/* Every result comes before the stream's OK: bound the wait. */
		gs_client_stream_close(d->stream);
		int rc = GS_ETIMEOUT;
		bool failed = is_failed(d);
		for (int waited = 0; waited < cfg->timeout_s * 1000 && !*cfg->stop && !failed;
		     waited += 200)
			if ((rc = gs_client_stream_wait(d->stream, 200)) != GS_ETIMEOUT)
				break;
		char why[256];
		snprintf(why, sizeof(why), "%s",
		         rc == GS_ETIMEOUT ? "timed out" : gs_client_stream_error(d->stream));
		gs_client_stream_destroy(d->stream); /* no callbacks after this */
		d->stream = NULL;
		if (rc != GS_OK && !d->failed && !*cfg->stop) {
			d->failed = true;
			snprintf(d->err, sizeof(d->err), "stream end: %s", why);
		}
	}
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < d->sent; i++)
		d->st.cnt.missing += d->done[i] == 0;
	d->st.cnt.unsent += d->n - d->sent;
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static void counts_add(struct bench_counts *dst, const struct bench_counts *src)
{
	dst->ok += src->ok;
	dst->failed += src->failed;
	dst->rejected += src->rejected;
	dst->missing += src->missing;
	dst->dup += src->dup;
	dst->wrong += src->wrong;
	dst->unsent += src->unsent;
}

/* Adds src's figures to dst. */
static void stats_merge(struct bench_stats *dst, const struct bench_stats *src)
{
	for (int i = 0; i < H_N; i++)
		gs_histogram_merge(&dst->h[i], &src->h[i]);
	counts_add(&dst->cnt, &src->cnt);
	dst->measured += src->measured;
	if (!src->measured)
		return;
	if (!dst->t_begin || src->t_begin < dst->t_begin)
		dst->t_begin = src->t_begin;
	if (src->t_end > dst->t_end)
		dst->t_end = src->t_end;
}

static bool counts_clean(const struct bench_counts *c)
{
	return c->failed + c->rejected + c->missing + c->dup + c->wrong + c->unsent == 0;
}

/* Runs `streams` drivers concurrently (one thread and connection each, or
 * the caller's thread and client c when there is one driver), adding their
 * figures to out.  Returns false if any was cut short. */
static bool run_drivers(const struct bench_cfg *cfg, struct gs_client *c, unsigned streams,
                        size_t tasks, size_t warmup, bool unary, unsigned window, unsigned batch,
                        struct bench_stats *out)
{
	struct driver *d = calloc(streams, sizeof(*d));
	pthread_barrier_t barrier;
	bool ok = d != NULL;
	if (!d) {
		fprintf(stderr, "gsched bench: out of memory\n");
		return false;
	}
	if (streams > 1)
		pthread_barrier_init(&barrier, NULL, streams);
	unsigned started = 0, inited = 0;
	for (; inited < streams && ok; inited++) {
		unsigned i = inited;
		size_t n = tasks / streams + (i < tasks % streams);
		size_t w = warmup / streams + (i < warmup % streams);
		if (driver_init(&d[i], cfg, streams > 1 ? NULL : c, n + w, w, unary, window,
		                batch) != GS_OK) {
			fprintf(stderr, "gsched bench: out of memory for %zu tasks\n", n + w);
			ok = false;
		}
		d[i].barrier = streams > 1 ? &barrier : NULL;
	}
	if (!ok) {
		for (unsigned i = 0; i < inited; i++)
			driver_fini(&d[i]);
		if (streams > 1)
			pthread_barrier_destroy(&barrier);
		free(d);
		return false;
	}
	if (streams == 1) {
		driver_main(&d[0]);
		started = 1;
	} else {
		for (; started < streams; started++)
			if (pthread_create(&d[started].thread, NULL, driver_main, &d[started]) != 0)
				break;
		if (started < streams) {
			/* The barrier would never open: cannot recover safely. */
			fprintf(stderr, "gsched bench: cannot start %u threads\n", streams);
			exit(1);
		}
		for (unsigned i = 0; i < streams; i++)
			pthread_join(d[i].thread, NULL);
	}
	for (unsigned i = 0; i < streams; i++) {
		if (d[i].failed) {
			ok = false;
			fprintf(stderr, "gsched bench: stream %u: %s\n", i, d[i].err);
		}
		stats_merge(out, &d[i].st);
		driver_fini(&d[i]);
	}
	if (streams > 1)
		pthread_barrier_destroy(&barrier);
	free(d);
	return ok;
}

/* --- output -------------------------------------------------------------- */

struct bench_report {
	const struct bench_cfg *cfg;
	const char *addr;
	const char *path; /* "stream" or "unary" */
	bool probed;
	uint64_t probe_p50[2];   /* stream, unary */
	struct bench_stats *st;  /* measured run */
	struct bench_counts all; /* every task of every run (warmup, probes) */
	size_t sent;
	bool ok;
};

static const char *mode_name(int m)
{
	return m == MODE_LATENCY      ? "latency"
	       : m == MODE_THROUGHPUT ? "throughput"
	       : m == MODE_FILL       ? "fill"
	                              : "streams";
}

static double tasks_per_s(const struct bench_stats *st)
{
	double secs = (double)(st->t_end - st->t_begin) / 1e6;
	return secs > 0 ? (double)st->measured / secs : 0.0;
}

static void print_table(const struct bench_report *r)
{
	const struct bench_cfg *cfg = r->cfg;
	const struct bench_stats *st = r->st;
	printf("== gsched bench: mode %s ==\n", mode_name(cfg->mode));
	printf("server:     %s%s", cfg->server ? "" : "local ", r->addr);
	if (!cfg->server)
		printf(" (%u workers x %u slots)", cfg->workers, cfg->slots);
	printf("\nworkload:   %s handler, %zu-byte payload, ", cfg->handler, cfg->payload_bytes);
	if (strcmp(r->path, "unary") == 0)
		printf("unary Submit of %u + Wait", cfg->mode == MODE_LATENCY ? 1 : cfg->batch);
	else
		printf("SubmitStream, window %u", cfg->mode == MODE_LATENCY ? 1 : cfg->window);
	if (cfg->mode == MODE_STREAMS)
		printf(", %u streams (each its own connection)", cfg->streams);
	printf("\n");
	if (r->probed)
		printf("path:       %s (probe of %zu: p50 stream %" PRIu64 " us, unary %" PRIu64
		       " us)\n",
		       r->path, cfg->probe, r->probe_p50[0], r->probe_p50[1]);
	printf("tasks:      %zu measured + %zu warmup%s; all runs: %zu tasks, %zu ok, %zu failed, "
	       "%zu rejected, %zu missing, %zu duplicate, %zu wrong, %zu not sent\n",
	       cfg->tasks, cfg->warmup, r->probed ? " (+ probes)" : "", r->sent, r->all.ok,
	       r->all.failed, r->all.rejected, r->all.missing, r->all.dup, r->all.wrong,
	       r->all.unsent);
	printf("throughput: %.0f tasks/s (%zu tasks in %.3f s)\n", tasks_per_s(st), st->measured,
	       (double)(st->t_end - st->t_begin) / 1e6);
	printf("\n%-24s %9s %9s %9s %9s %9s %9s\n", "latency (us)", "p50", "p90", "p99", "p99.9",
	       "max", "mean");
	for (int i = 0; i < H_N; i++) {
		const gs_histogram *h = &st->h[i];
		if (i == H_ACK_SEEN)
			printf("\n");
		printf("%-24s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
		       " %9.1f\n",
		       hop_label[i], gs_histogram_value_at(h, 50), gs_histogram_value_at(h, 90),
		       gs_histogram_value_at(h, 99), gs_histogram_value_at(h, 99.9),
		       gs_histogram_value_at(h, 100), gs_histogram_mean(h));
	}
	printf("(hops from the timestamps in each result; their means add up to the round "
	       "trip's)\n");
	printf("result:     %s\n", r->ok ? "every task succeeded exactly once"
	                                 : "FAILED: not every task succeeded exactly once");
}

static void print_pcts(const gs_histogram *h)
{
	printf("\"count\":%" PRIu64 ",\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64
	       ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64
	       ",\"mean_us\":%.1f",
	       h->count, gs_histogram_value_at(h, 50), gs_histogram_value_at(h, 90),
	       gs_histogram_value_at(h, 99), gs_histogram_value_at(h, 99.9),
	       gs_histogram_value_at(h, 100), gs_histogram_mean(h));
}

static void print_json(const struct bench_report *r)
{
	const struct bench_cfg *cfg = r->cfg;
	const struct bench_stats *st = r->st;
	printf("{\"mode\":\"%s\",\"path\":\"%s\",\"server\":\"%s\",\"local\":%s",
	       mode_name(cfg->mode), r->path, r->addr, cfg->server ? "false" : "true");
	if (!cfg->server)
		printf(",\"workers\":%u,\"slots\":%u", cfg->workers, cfg->slots);
	printf(",\"handler\":\"%s\",\"payload_bytes\":%zu,\"tasks\":%zu,\"warmup\":%zu",
	       cfg->handler, cfg->payload_bytes, cfg->tasks, cfg->warmup);
	bool unary = strcmp(r->path, "unary") == 0, lat = cfg->mode == MODE_LATENCY;
	printf(",\"window\":%u,\"batch\":%u,\"streams\":%u",
	       unary ? 0u
	       : lat ? 1u
	             : cfg->window,
	       !unary ? 0u
	       : lat  ? 1u
	              : cfg->batch,
	       cfg->mode == MODE_STREAMS ? cfg->streams : 1u);
	printf(",\"elapsed_s\":%.6f,\"tasks_per_s\":%.1f,", (double)(st->t_end - st->t_begin) / 1e6,
	       tasks_per_s(st));
	print_pcts(&st->h[H_RT]);
	printf(",\"hops\":{");
	for (int i = 1; i < H_N; i++) {
		printf("%s\"%s\":{", i > 1 ? "," : "", hop_key[i]);
		print_pcts(&st->h[i]);
		printf("}");
	}
	printf("}");
	if (r->probed)
		printf(",\"probe\":{\"tasks\":%zu,\"stream_p50_us\":%" PRIu64
		       ",\"unary_p50_us\":%" PRIu64 "}",
		       cfg->probe, r->probe_p50[0], r->probe_p50[1]);
	printf(",\"counts\":{\"tasks\":%zu,\"ok\":%zu,\"failed\":%zu,\"rejected\":%zu,"
	       "\"missing\":%zu,\"duplicate\":%zu,\"wrong\":%zu,\"unsent\":%zu},\"ok\":%s}\n",
	       r->sent, r->all.ok, r->all.failed, r->all.rejected, r->all.missing, r->all.dup,
	       r->all.wrong, r->all.unsent, r->ok ? "true" : "false");
}

/* --- percentile curve and fill mode --------------------------------------- */

/* Writes h's percentile curve to path: "percentile microseconds" per line,
 * from p1 to p99.99 (denser in the tail) and max as 100. */
static int write_percentiles(const char *path, const gs_histogram *h)
{
	static const double pts[] = {1,  5,    10,   20,   30,   40,    50,    60,
	                             70, 75,   80,   85,   90,   95,    97,    98,
	                             99, 99.5, 99.7, 99.8, 99.9, 99.95, 99.97, 99.99};
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return -1;
	}
	fprintf(f, "# round trip: percentile microseconds (%" PRIu64 " tasks)\n", h->count);
	for (size_t i = 0; i < sizeof(pts) / sizeof(pts[0]); i++)
		fprintf(f, "%g %" PRIu64 "\n", pts[i], gs_histogram_value_at(h, pts[i]));
	fprintf(f, "100 %" PRIu64 "\n", gs_histogram_value_at(h, 100));
	return fclose(f) == 0 ? 0 : -1;
}

/* Fill: Submit of cfg->batch specs (default 1000) until cfg->tasks are
 * accepted; results are never waited for.  One JSON line (or text) with the
 * rate.  Returns the exit status. */
static int run_fill(const struct bench_cfg *cfg)
{
	struct gs_client *c = NULL;
	struct gs_client_opts co = {.call_timeout_ms = cfg->timeout_s * 1000,
	                            .busy_poll_us = cfg->busy_poll_us};
	char err[256];
	if (gs_client_connect_err(cfg->server, &co, &c, err, sizeof(err)) != GS_OK) {
		fprintf(stderr, "gsched bench: cannot reach the server at %s: %s\n", cfg->server,
		        err);
		return 1;
	}
	size_t b = cfg->batch ? cfg->batch : 1000, sent = 0;
	struct gs_client_spec *specs = calloc(b, sizeof(*specs));
	uint64_t *ids = calloc(b, sizeof(*ids));
	uint8_t *payload = malloc(b * (cfg->payload_bytes ? cfg->payload_bytes : 1));
	int status = 1;
	if (!specs || !ids || !payload) {
		fprintf(stderr, "gsched bench: out of memory\n");
		goto out;
	}
	struct driver shape = {.cfg = cfg}; /* make_spec reads only d->cfg */
	for (size_t i = 0; i < b; i++) {
		uint8_t *p = payload + i * cfg->payload_bytes;
		init_payload(p, cfg->payload_bytes);
		fill_payload(p, cfg->payload_bytes, i);
		specs[i] = make_spec(&shape, p);
	}
	uint64_t t0 = gs_cli_mono_us();
	/* Bounded: every Submit has a deadline, and the loop ends at --tasks. */
	while (sent < cfg->tasks && !*cfg->stop) {
		size_t k = cfg->tasks - sent < b ? cfg->tasks - sent : b;
		if (gs_client_submit(c, specs, k, ids) != GS_OK) {
			fprintf(stderr, "gsched bench: Submit after %zu tasks: %s\n", sent,
			        gs_client_error(c));
			break;
		}
		sent += k;
	}
	double secs = (double)(gs_cli_mono_us() - t0) / 1e6;
	double rate = secs > 0 ? (double)sent / secs : 0.0;
	bool ok = sent == cfg->tasks;
	if (cfg->json)
		printf(
		    "{\"mode\":\"fill\",\"server\":\"%s\",\"handler\":\"%s\",\"payload_bytes\":%zu,"
		    "\"tasks\":%zu,\"batch\":%zu,\"queued\":%zu,\"elapsed_s\":%.6f,"
		    "\"tasks_per_s\":%.1f,\"ok\":%s}\n",
		    cfg->server, cfg->handler, cfg->payload_bytes, cfg->tasks, b, sent, secs, rate,
		    ok ? "true" : "false");
	else
		printf("fill: %zu of %zu tasks queued on %s in %.3f s (%.0f tasks/s, Submit of "
		       "%zu)\n",
		       sent, cfg->tasks, cfg->server, secs, rate, b);
	fflush(stdout);
	status = ok ? 0 : 1;
out:
	free(specs);
	free(ids);
	free(payload);
	gs_client_close(c);
	return status;
}

/* --- the command ----------------------------------------------------------- */

static void bench_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: gsched bench [--mode latency|throughput|streams|fill] [--tasks N] [--warmup "
	    "N]\n"
	    "                    [--window W | --batch B] [--streams C] [--path "
	    "auto|stream|unary]\n"
	    "                    [--probe N] [--payload-bytes N] [--handler NAME] [--queue Q]\n"
	    "                    [--server ADDR | --workers N --slots K] [--busy-poll-us N] "
	    "[--timeout-s S] [--json]\n"
	    "                    [--percentiles-out FILE]\n"
	    "\n"
	    "Load generator.  Without --server it starts a local cluster (a server in this\n"
	    "process, N worker processes of K slots; default 2 x 4).\n"
	    "  latency     one task in flight, N round trips (default 10000); --path auto\n"
	    "              probes a SubmitStream and unary Submit+Wait with --probe tasks\n"
	    "              each (default %d) and measures with the faster one\n"
	    "  throughput  W tasks in flight over one SubmitStream (default 1000), or with\n"
	    "              --batch B unary Submit of B tasks then Wait, repeated\n"
	    "  streams     C concurrent clients (default 4), each its own connection and\n"
	    "              like throughput; --tasks and --warmup are split between them\n"
	    "  fill        --server only: unary Submit of B tasks (--batch, default 1000)\n"
	    "              until --tasks (default 1000000) are queued, never waiting for\n"
	    "              results; prints the submit rate\n"
	    "Workload: the echo handler with a 16-byte payload; the first --warmup tasks\n"
	    "(default 1000) are not measured.  Prints the round trip (client send ->\n"
	    "result at the client) and each hop: submit -> ack (accepted by the server),\n"
	    "ack -> assigned, assigned -> started, started -> finished, finished ->\n"
	    "delivered; p50, p90, p99, p99.9, max and mean; --json prints one JSON object;\n"
	    "--percentiles-out FILE writes the round trip's percentile curve (p1..p99.99, max).\n"
	    "No progress for --timeout-s (default 60) ends the run.  Exit 0 if every task\n"
	    "succeeded exactly once, 1 otherwise, 2 bad usage.\n",
	    DEFAULT_PROBE);
}

/* Parses argv into cfg; returns -1 (bad usage, reported), 1 (--help), 0. */
static int parse_args(int argc, char **argv, struct bench_cfg *cfg)
{
	static const struct option opts[] = {
	    {"mode", required_argument, NULL, 'm'},
	    {"tasks", required_argument, NULL, 'n'},
	    {"warmup", required_argument, NULL, 'u'},
	    {"window", required_argument, NULL, 'W'},
	    {"batch", required_argument, NULL, 'b'},
	    {"streams", required_argument, NULL, 'c'},
	    {"path", required_argument, NULL, 'p'},
	    {"probe", required_argument, NULL, 'P'},
	    {"payload-bytes", required_argument, NULL, 'B'},
	    {"handler", required_argument, NULL, 'H'},
	    {"queue", required_argument, NULL, 'q'},
	    {"server", required_argument, NULL, 's'},
	    {"workers", required_argument, NULL, 'w'},
	    {"slots", required_argument, NULL, 'k'},
	    {"busy-poll-us", required_argument, NULL, 'Y'},
	    {"timeout-s", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"percentiles-out", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	bool tasks_set = false, window_set = false;
	unsigned long v;
	int c, idx;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, &idx)) != -1) {
		unsigned long max = 0, min = 1;
		switch (c) {
		case 'm':
			if (strcmp(optarg, "latency") == 0)
				cfg->mode = MODE_LATENCY;
			else if (strcmp(optarg, "throughput") == 0)
				cfg->mode = MODE_THROUGHPUT;
			else if (strcmp(optarg, "streams") == 0)
				cfg->mode = MODE_STREAMS;
			else if (strcmp(optarg, "fill") == 0)
				cfg->mode = MODE_FILL;
			else {
				fprintf(stderr, "gsched bench: unknown mode '%s'\n", optarg);
				return -1;
			}
			continue;
		case 'p':
			if (strcmp(optarg, "auto") == 0)
				cfg->path = PATH_AUTO;
			else if (strcmp(optarg, "stream") == 0)
				cfg->path = PATH_STREAM;
			else if (strcmp(optarg, "unary") == 0)
				cfg->path = PATH_UNARY;
			else {
				fprintf(stderr, "gsched bench: unknown path '%s'\n", optarg);
				return -1;
			}
			continue;
		case 'H':
			cfg->handler = optarg;
			continue;
		case 'q':
			cfg->queue = optarg;
			continue;
		case 's':
			cfg->server = optarg;
			continue;
		case 'j':
			cfg->json = true;
			continue;
		case 'o':
			cfg->pct_out = optarg;
			continue;
		case 'h':
			bench_usage(stdout);
			return 1;
		case 'n':
			max = 1000000000ul;
			break;
		case 'u':
		case 'P':
			max = 100000000ul, min = 0;
			break;
		case 'W':
			max = MAX_WINDOW;
			break;
		case 'b':
			max = 100000;
			break;
		case 'c':
			max = MAX_STREAMS;
			break;
		case 'B':
			max = MAX_PAYLOAD, min = 0;
			break;
		case 'w':
			max = GS_LOCAL_MAX_WORKERS;
			break;
		case 'k':
			max = 1024;
			break;
		case 'Y':
			max = 100000, min = 0;
			break;
		case 't':
			max = 86400;
			break;
		default:
			fprintf(stderr, "gsched bench: bad option '%s'\n", argv[optind - 1]);
			bench_usage(stderr);
			return -1;
		}
		if (gs_cli_parse_num(optarg, max, &v) != 0 || v < min) {
			fprintf(stderr, "gsched bench: bad value '%s' for --%s (%lu..%lu)\n",
			        optarg, opts[idx].name, min, max);
			return -1;
		}
		switch (c) {
		case 'n':
			cfg->tasks = v, tasks_set = true;
			break;
		case 'u':
			cfg->warmup = v;
			break;
		case 'P':
			cfg->probe = v;
			break;
		case 'W':
			cfg->window = (unsigned)v, window_set = true;
			break;
		case 'b':
			cfg->batch = (unsigned)v;
			break;
		case 'c':
			cfg->streams = (unsigned)v;
			break;
		case 'B':
			cfg->payload_bytes = v;
			break;
		case 'w':
			cfg->workers = (unsigned)v;
			break;
		case 'k':
			cfg->slots = (unsigned)v;
			break;
		case 'Y':
			cfg->busy_poll_us = (unsigned)v;
			break;
		case 't':
			cfg->timeout_s = (int)v;
			break;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gsched bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!tasks_set)
		cfg->tasks = cfg->mode == MODE_LATENCY ? 10000
		             : cfg->mode == MODE_FILL  ? 1000000
		                                       : 200000;
	if (cfg->mode == MODE_FILL && (!cfg->server || window_set || cfg->pct_out)) {
		fprintf(stderr, "gsched bench: fill mode needs --server and takes --batch, not "
		                "--window or --percentiles-out\n");
		return -1;
	}
	if (cfg->batch && window_set) {
		fprintf(stderr, "gsched bench: --window and --batch exclude each other\n");
		return -1;
	}
	if (cfg->mode == MODE_LATENCY && (cfg->batch || window_set)) {
		fprintf(stderr, "gsched bench: latency mode keeps one task in flight: no --window "
		                "or --batch\n");
		return -1;
	}
	if (cfg->mode != MODE_STREAMS)
		cfg->streams = 1;
	if (cfg->mode != MODE_LATENCY && cfg->path != PATH_AUTO) {
		fprintf(stderr, "gsched bench: --path is for latency mode\n");
		return -1;
	}
	if (cfg->tasks < cfg->streams) {
		fprintf(stderr, "gsched bench: fewer tasks than streams\n");
		return -1;
	}
	return 0;
}

int gs_cli_bench(int argc, char **argv, volatile sig_atomic_t *stop)
{
	struct bench_cfg cfg = {
	    .mode = MODE_LATENCY,
	    .path = PATH_AUTO,
	    .warmup = 1000,
	    .probe = DEFAULT_PROBE,
	    .window = 1000,
	    .streams = 4,
	    .payload_bytes = 16,
	    .handler = "echo",
	    .workers = 2,
	    .slots = 4,
	    .timeout_s = 60,
	    .stop = stop,
	};
	int pr = parse_args(argc, argv, &cfg);
	if (pr != 0)
		return pr > 0 ? 0 : 2;
	if (cfg.mode == MODE_FILL)
		return run_fill(&cfg);

	gs_local_cluster *lc = NULL;
	if (!cfg.server) {
		gs_local_cluster_opts lo = {.workers = cfg.workers,
		                            .slots = cfg.slots,
		                            .busy_poll_us = cfg.busy_poll_us,
		                            .prefix = "gsched bench",
		                            .stop = stop};
		if (gs_local_cluster_start(&lo, &lc) != GS_OK)
			return 1;
		fprintf(stderr, "gsched bench: server pid %d (this process), worker pids",
		        (int)getpid());
		for (unsigned i = 0; i < cfg.workers; i++)
			fprintf(stderr, " %d", (int)gs_local_cluster_worker_pid(lc, i));
		fprintf(stderr, "\n");
	}
	const char *addr = cfg.server ? cfg.server : gs_local_cluster_addr(lc);
	struct bench_cfg run = cfg;
	run.server = addr; /* drivers connect here */

	struct gs_client *client = NULL;
	struct gs_client_opts co = {.call_timeout_ms = cfg.timeout_s * 1000,
	                            .busy_poll_us = cfg.busy_poll_us};
	char err[256];
	struct bench_stats *st = calloc(1, sizeof(*st));
	struct bench_report rep = {.cfg = &cfg, .addr = addr, .st = st, .path = "stream"};
	int status = 1;
	if (!st) {
		fprintf(stderr, "gsched bench: out of memory\n");
		goto out;
	}
	for (int i = 0; i < H_N; i++)
		gs_histogram_init(&st->h[i]);
	if (gs_client_connect_err(addr, &co, &client, err, sizeof(err)) != GS_OK) {
		fprintf(stderr, "gsched bench: cannot reach the server at %s: %s\n", addr, err);
		goto out;
	}
	bool ok = true;
	if (cfg.mode == MODE_LATENCY) {
		bool unary = cfg.path == PATH_UNARY;
		if (cfg.path == PATH_AUTO) {
			/* Probe both paths, one task in flight, and keep the faster. */
			struct bench_stats *pst = malloc(sizeof(*pst));
			if (!pst) {
				fprintf(stderr, "gsched bench: out of memory\n");
				goto out;
			}
			for (int k = 0; k < 2 && ok && !*stop; k++) {
				memset(pst, 0, sizeof(*pst));
				for (int i = 0; i < H_N; i++)
					gs_histogram_init(&pst->h[i]);
				ok = run_drivers(&run, client, 1, cfg.probe, cfg.warmup, k == 1, 1,
				                 1, pst);
				rep.probe_p50[k] = gs_histogram_value_at(&pst->h[H_RT], 50);
				rep.sent += cfg.probe + cfg.warmup;
				counts_add(&rep.all, &pst->cnt);
			}
			free(pst);
			rep.probed = true;
			unary = rep.probe_p50[1] < rep.probe_p50[0];
		}
		rep.path = unary ? "unary" : "stream";
		if (ok && !*stop)
			ok = run_drivers(&run, client, 1, cfg.tasks, rep.probed ? 0 : cfg.warmup,
			                 unary, 1, 1, st);
	} else {
		bool unary = cfg.batch > 0;
		rep.path = unary ? "unary" : "stream";
		ok = run_drivers(&run, client, cfg.streams, cfg.tasks, cfg.warmup, unary,
		                 cfg.window, cfg.batch, st);
	}
	rep.sent += cfg.tasks + (rep.probed ? 0 : cfg.warmup);
	counts_add(&rep.all, &st->cnt);
	rep.ok = ok && !*stop && counts_clean(&rep.all) && rep.all.ok == rep.sent;
	if (*stop)
		fprintf(stderr, "gsched bench: interrupted\n");
	if (cfg.json)
		print_json(&rep);
	else
		print_table(&rep);
	fflush(stdout);
	status = rep.ok ? 0 : 1;
	if (cfg.pct_out && write_percentiles(cfg.pct_out, &st->h[H_RT]) != 0)
		status = 1;
out:
	gs_client_close(client);
	free(st);
	if (lc && gs_local_cluster_stop(lc) != GS_OK)
		status = 1;
	return status;
}
