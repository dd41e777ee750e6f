/*
 * fuzz_worker.c - the worker's side of the protocol: WorkerDown bytes as
 * the worker agent receives them (src/node/worker_agent.c, compiled into this
 * file to reach its static functions) and everything they drive: the
 * inline answer of instant handlers, the inbox, on_down (Registered,
 * assignments -> task_from -> the local FIFO, cancels, acks, drain), starting
 * tasks on a real gs_runner, results, heartbeats and resends; plus
 * utf8_clean on raw bytes, whose output must be valid UTF-8.
 *
 * Nothing arbitrary is ever executed: every argv task is rewritten to run
 * /bin/true with the fuzzed arguments (at most two processes per input; more
 * become the `noop` handler).  The stream is a fake that keeps what the agent
 * sends; it must decode as WorkerUp.
 */
#include "fuzz_common.h"
#include "rpc_client.h"
#include "task_runner.h"

/* The agent's transport and runner calls, redirected (calls only: the
 * headers above are already included, their include guards keep them). */
struct fz_stream {
	uint8_t *out;
	size_t len, cap;
	bool cancelled;
	int spawns;
};
static int fz_stream_send(struct gs_rpc_stream *s, const void *bytes, size_t len);
static int fz_stream_cancel(struct gs_rpc_stream *s);
static int fz_runner_start(struct gs_runner *r, const struct gs_runner_task *t);
#define gs_rpc_stream_send   fz_stream_send
#define gs_rpc_stream_cancel fz_stream_cancel
#define gs_runner_start      fz_runner_start

#include "../../src/node/worker_agent.c"

#undef gs_rpc_stream_send
#undef gs_rpc_stream_cancel
#undef gs_runner_start

static struct fz_stream the_stream;

static int fz_stream_send(struct gs_rpc_stream *s, const void *bytes, size_t len)
{
	struct fz_stream *f = (struct fz_stream *)s;
	FZ_CHECK(f == &the_stream, "send on an unknown stream");
	if (f->cancelled)
		return GS_EUNAVAIL;
	if (f->len + len > (8u << 20))
		return GS_EFULL;
	if (f->len + len > f->cap) {
		size_t cap = f->cap ? f->cap : 1024;
		while (cap < f->len + len)
			cap *= 2;
		uint8_t *d = realloc(f->out, cap);
		if (!d)
			return GS_ENOMEM;
		f->out = d;
		f->cap = cap;
	}
	memcpy(f->out + f->len, bytes, len);
	f->len += len;
	return GS_OK;
}

static int fz_stream_cancel(struct gs_rpc_stream *s)
{
	((struct fz_stream *)s)->cancelled = true;
	return GS_OK;
}

static int fz_runner_start(struct gs_runner *r, const struct gs_runner_task *t)
{
	if (!t->argv || !t->argv[0] || !t->argv[0][0])
		return gs_runner_start(r, t); /* handlers, and argv the runner refuses */
	struct gs_runner_task safe = *t;
	const char *argv[8] = {"/bin/true"};
	size_t n = 1;
	for (; n < 7 && t->argv[n]; n++)
		argv[n] = t->argv[n];
	argv[n] = NULL;
	if (the_stream.spawns < 2) {
		the_stream.spawns++;
		safe.argv = argv;
	} else {
		safe.argv = NULL;
		safe.handler = "noop";
		safe.payload = NULL;
		safe.payload_len = 0;
	}
	return gs_runner_start(r, &safe);
}

/* What the agent sent must decode as WorkerUp. */
static void check_sent(struct agent *a)
{
	(void)a;
	if (!the_stream.len)
		return;
	Gsched__V1__WorkerUp *up =
	    gsched__v1__worker_up__unpack(NULL, the_stream.len, the_stream.out);
	FZ_CHECK(up != NULL, "the worker sent %zu bytes that do not decode", the_stream.len);
	for (size_t i = 0; i < up->n_results; i++) {
		Gsched__V1__TaskState st = up->results[i]->state;
		FZ_CHECK(st == GSCHED__V1__TASK_STATE__TASK_STATE_DONE ||
		             st == GSCHED__V1__TASK_STATE__TASK_STATE_FAILED ||
		             st == GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED,
		         "a result in state %d", st);
	}
	gsched__v1__worker_up__free_unpacked(up, NULL);
	the_stream.len = 0;
}

/* Strict UTF-8 with no C0 controls or DEL. */
static bool utf8_ok(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t len = c < 0x80         ? 1
		             : (c >> 5) == 6  ? 2
		             : (c >> 4) == 14 ? 3
		             : (c >> 3) == 30 ? 4
		                              : 0;
		if (!len || i + len > n)
			return false;
		if (len == 1 && (c < 0x20 || c == 0x7F))
			return false;
		uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

/* --- generated WorkerDown ----------------------------------------------------- */

static const char *const hnames[] = {"noop", "echo", "sleep", "nope", ""};

struct gen {
	void *p[128];
	size_t n;
};

static void *g_alloc(struct gen *g, size_t n)
{
	if (g->n == sizeof(g->p) / sizeof(g->p[0]))
		return NULL;
	void *p = calloc(1, n ? n : 1);
	FZ_CHECK(p != NULL, "out of memory");
	return g->p[g->n++] = p;
}

static char *g_str(struct gen *g, struct fz_in *in, size_t max)
{
	size_t len;
	const uint8_t *b = fz_bytes(in, max, &len);
	char *s = g_alloc(g, len + 1);
	if (!s)
		return (char *)"";
	memcpy(s, b, len);
	return s;
}

static uint64_t small_id(struct fz_in *in)
{
	uint8_t b = fz_u8(in);
	return b < 240 ? 0x100000000ull + b % 8 : fz_u64(in);
}

static Gsched__V1__Assignment *g_assignment(struct gen *g, struct fz_in *in)
{
	Gsched__V1__Assignment *as = g_alloc(g, sizeof(*as));
	Gsched__V1__TaskSpec *sp = g_alloc(g, sizeof(*sp));
	if (!as || !sp)
		return NULL;
	gsched__v1__assignment__init(as);
	gsched__v1__task_spec__init(sp);
	uint8_t f = fz_u8(in);
	as->id = small_id(in);
	as->attempt = fz_u8(in) % 3;
	as->spec = f & 0x80 ? NULL : sp;
	sp->timeout_ms = f & 0x40 ? fz_u32(in) : 0;
	if ((f & 3) == 0) {
		Gsched__V1__Argv *av = g_alloc(g, sizeof(*av));
		if (!av)
			return as;
		gsched__v1__argv__init(av);
		av->n_args = fz_u8(in) % 4;
		av->args = g_alloc(g, (av->n_args + 1) * sizeof(char *));
		if (!av->args)
			return as;
		for (size_t i = 0; i < av->n_args; i++)
			av->args[i] = g_str(g, in, 16);
		if (f & 0x20) {
			size_t len;
			av->stdin.data = (uint8_t *)fz_bytes(in, 8, &len);
			av->stdin.len = len;
		}
		sp->argv = av;
		sp->body_case = GSCHED__V1__TASK_SPEC__BODY_ARGV;
	} else if ((f & 3) != 3) {
		Gsched__V1__HandlerCall *hc = g_alloc(g, sizeof(*hc));
		if (!hc)
			return as;
		gsched__v1__handler_call__init(hc);
		uint8_t k = fz_u8(in) % 6;
		hc->name = k < 5 ? (char *)hnames[k] : g_str(g, in, 16);
		size_t len;
		hc->payload.data = (uint8_t *)fz_bytes(in, f & 0x10 ? 6000 : 16, &len);
		hc->payload.len = len;
		sp->handler = hc;
		sp->body_case = GSCHED__V1__TASK_SPEC__BODY_HANDLER;
	}
	return as;
}

static uint8_t *g_down(struct gen *g, struct fz_in *in, size_t *len)
{
	Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
	uint8_t f = fz_u8(in);
	Gsched__V1__Registered reg = GSCHED__V1__REGISTERED__INIT, *regp = &reg;
	if (f & 1) {
		reg.worker_id = fz_u64(in);
		reg.heartbeat_ms = fz_u32(in);
		reg.dead_after_ms = fz_u16(in);
		d.n_registered = 1;
		d.registered = &regp;
	}
	d.n_assignments = (f >> 1) % 4;
	d.assignments = g_alloc(g, (d.n_assignments + 1) * sizeof(*d.assignments));
	d.n_cancels = (f >> 3) % 3;
	d.cancels = g_alloc(g, (d.n_cancels + 1) * sizeof(*d.cancels));
	d.n_result_acks = fz_u8(in) % 3;
	d.result_acks = g_alloc(g, (d.n_result_acks + 1) * sizeof(*d.result_acks));
	if (!d.assignments || !d.cancels || !d.result_acks)
		return NULL;
	for (size_t i = 0; i < d.n_assignments; i++)
		if (!(d.assignments[i] = g_assignment(g, in)))
			return NULL;
	for (size_t i = 0; i < d.n_cancels + d.n_result_acks; i++) {
		Gsched__V1__TaskRef *r = g_alloc(g, sizeof(*r));
		if (!r)
			return NULL;
		gsched__v1__task_ref__init(r);
		r->id = small_id(in);
		r->attempt = fz_u8(in) % 3;
		if (i < d.n_cancels)
			d.cancels[i] = r;
		else
			d.result_acks[i - d.n_cancels] = r;
	}
	Gsched__V1__Drain dr = GSCHED__V1__DRAIN__INIT, *drp = &dr;
	if (f & 0x80) {
		dr.reason = g_str(g, in, 40);
		d.n_drain = 1;
		d.drain = &drp;
	}
	*len = gsched__v1__worker_down__get_packed_size(&d);
	uint8_t *b = g_alloc(g, *len);
	if (b)
		gsched__v1__worker_down__pack(&d, b);
	return b;
}

static void g_free(struct gen *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->p[i]);
	g->n = 0;
}

/* --- the target ------------------------------------------------------------- */

static struct gs_worker_opts opts = {.server = "fuzz", .slots = 4, .quiet = 1};

/* Delivers one WorkerDown as the stream thread would, then as the agent
 * thread takes it. */
static void down(struct agent *a, const uint8_t *b, size_t len, bool idle)
{
	bool is_idle = idle && a->st == S_READY && a->n_running == 0 && a->fifo_head == NULL;
	atomic_store_explicit(&a->idle_ready, is_idle, memory_order_release);
	st_on_message((struct gs_rpc_stream *)&the_stream, a, b, len);
	atomic_store_explicit(&a->idle_ready, false, memory_order_release);
	if (a->in_bad) {
		/* The real agent ends the session: start a fresh one. */
		inbox_clear(a);
		a->local_reason[0] = 0;
		the_stream.cancelled = false;
		a->st = S_REGISTERING;
		return;
	}
	inbox_process(a);
	if (the_stream.cancelled) { /* session_abort */
		a->local_reason[0] = 0;
		the_stream.cancelled = false;
		a->st = S_REGISTERING;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size, 0};
	struct agent *a = calloc(1, sizeof(*a));
	FZ_CHECK(a != NULL, "out of memory");
	the_stream.len = 0;
	the_stream.cancelled = false;
	the_stream.spawns = 0;
	a->o = &opts;
	a->slots = 1 + fz_u8(&in) % 4;
	a->max_output = 1 + fz_u16(&in) % 8192;
	a->run = calloc(a->slots, sizeof(*a->run));
	FZ_CHECK(a->run != NULL, "out of memory");
	pthread_mutex_init(&a->in_mu, NULL);
	struct gs_runner_config rc = {
	    .slots = a->slots, .max_output = a->max_output, .on_result = on_result, .arg = a};
	FZ_CHECK(gs_runner_create(&rc, &a->runner) == GS_OK, "runner create");
	a->stream = (struct gs_rpc_stream *)&the_stream;
	a->st = S_REGISTERING;
	a->hb_ms = 500;
	struct gen g = {.n = 0};
	for (int steps = 0; fz_more(&in) && steps < 48; steps++) {
		uint8_t op = fz_u8(&in);
		switch (op % 9) {
		case 0: { /* raw bytes from the server */
			size_t len;
			const uint8_t *b = fz_bytes(&in, 4096, &len);
			down(a, b, len, op & 0x10);
			break;
		}
		case 1:
		case 2: {
			size_t len = 0;
			uint8_t *b = g_down(&g, &in, &len);
			if (b)
				down(a, b, len, op & 0x10);
			break;
		}
		case 3:
			if (a->st == S_READY)
				fifo_start(a);
			break;
		case 4:
			FZ_CHECK(gs_runner_poll(a->runner, (op & 0x10) ? 5 : 0) >= 0,
			         "runner poll");
			break;
		case 5:
			flush_unsent(a);
			resend_due(a, mono_ms() + fz_u16(&in) * 10);
			break;
		case 6:
			if (a->st == S_READY)
				send_heartbeat(a);
			break;
		case 7:
			kill_all(a);
			break;
		case 8: { /* utf8_clean on raw bytes */
			size_t len;
			const uint8_t *b = fz_bytes(&in, 512, &len);
			size_t cap = 4 + fz_u8(&in);
			char *dst = malloc(cap);
			FZ_CHECK(dst != NULL, "out of memory");
			bool cut = false;
			size_t n = utf8_clean(dst, cap, b, len, &cut);
			FZ_CHECK(n < cap && dst[n] == 0 && strlen(dst) == n, "utf8_clean length");
			FZ_CHECK(utf8_ok(dst, n), "utf8_clean produced invalid UTF-8");
			FZ_CHECK(cut || n >= len, "utf8_clean dropped input without saying so");
			free(dst);
			break;
		}
		}
		FZ_CHECK(a->n_running <= a->slots, "%u running on %u slots", a->n_running,
		         a->slots);
		check_sent(a);
		g_free(&g);
	}
	kill_all(a);
	wait_idle(a, KILL_WAIT_MS);
	FZ_CHECK(a->n_running == 0, "%u tasks still running after kill_all", a->n_running);
	flush_unsent(a);
	check_sent(a);
	gs_runner_destroy(a->runner);
	inbox_clear(a);
	fifo_clear(a);
	plist_clear(&a->unsent);
	plist_clear(&a->sent);
	free(a->run);
	free(a->started);
	pthread_mutex_destroy(&a->in_mu);
	free(a);
	return 0;
}
