/*
 * test_auth.c - security end to end: real `gsched server` and `gsched worker`
 * processes on 127.0.0.1 with bearer tokens and TLS.
 *
 * main() makes its own certificates with Debian's openssl (a CA, a server
 * certificate with SAN IP:127.0.0.1, a client certificate, and an unrelated
 * CA) and token files (mode 0600) in a temporary directory.  Each test starts
 * its own server (--client-token-file, --worker-token-file, --tls-cert,
 * --tls-key; --tls-client-ca for mutual TLS) and checks:
 *   - every client method (Submit, SubmitStream, Wait, Get, Cancel, Watch,
 *     ListWorkers, Stats, Drain) is refused with no token, a wrong or
 *     malformed one (UNAUTHENTICATED) and with the worker token
 *     (PERMISSION_DENIED), and the refused calls changed nothing;
 *   - a worker with the client token, or none, is refused and exits 1;
 *   - a plaintext client, or one trusting another CA, cannot talk to the TLS
 *     port; with --tls-client-ca a client without a certificate cannot;
 *   - with the right tokens over TLS a worker registers and tasks run end to
 *     end (library, raw Watch, the CLI with --token-file and with
 *     GSCHED_TOKEN_FILE), Health stays open without a token;
 *   - bad token or TLS files stop the server with one clear line;
 *   - no process log contains a token.
 * Every wait is bounded; every process started is killed in the teardown
 * (SIGKILL after a SIGTERM grace) and by an atexit handler.
 *
 * argv[1] (or GSCHED_BIN): the gsched binary.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gsched.pb-c.h"
#include "e2e_util.h"
#include "gsched_client.h"
#include "rpc_client.h"
#include "rpc_tls.h"

#define CLIENT_TOK  "client-secret-7f3a9c1e5b"
#define WORKER_TOK  "worker-secret-2d8e4b6a0f"
#define HEALTH_PATH "/grpc.health.v1.Health/Check"

struct env {
	int port;
	char addr[64];
	pid_t server;
	struct gs_client *c; /* right token, TLS */
};

/* ---- files --------------------------------------------------------------- */

static const char *path_of(const char *name)
{
	static char buf[8][512];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, 512, "%s/%s", gs_e2e_dir(), name);
	return p;
}

/* The whole content of a file ("" if missing); caller frees. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *buf = NULL;
	size_t cap = 0, len = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	if (!buf)
		return strdup("");
	buf[len] = 0;
	return buf;
}

static bool file_has(const char *name, const char *needle)
{
	char *s = slurp(path_of(name));
	bool found = strstr(s, needle) != NULL;
	free(s);
	return found;
}

/* CA, server (SAN IP:127.0.0.1), client certificates; another CA. */
static int make_certs(void)
{
	char cmd[4096];
	snprintf(
	    cmd, sizeof(cmd),
	    "cd '%s' && set -e; "
	    "EC='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
	    "openssl req -x509 $EC -keyout ca.key -out ca.pem -days 2 -subj /CN=gsched-test-ca; "
	    "openssl req -x509 $EC -keyout other-ca.key -out other-ca.pem -days 2 "
	    "  -subj /CN=gsched-other-ca; "
	    "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
	    "extendedKeyUsage=serverAuth\\n' > server.ext; "
	    "openssl req $EC -keyout server.key -out server.csr -subj /CN=127.0.0.1; "
	    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "  -out server.pem -days 2 -extfile server.ext; "
	    "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext; "
	    "openssl req $EC -keyout client.key -out client.csr -subj /CN=gsched-client; "
	    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "  -out client.pem -days 2 -extfile client.ext; "
	    "chmod 600 *.key",
	    gs_e2e_dir());
	char full[4096 + 512];
	snprintf(full, sizeof(full), "(%s) > '%s/openssl.out' 2>&1", cmd, gs_e2e_dir());
	return system(full);
}

/* ---- processes ----------------------------------------------------------- */

/* The exit status of a process expected to end within ms (fails otherwise). */
static int exit_status(pid_t pid, int ms)
{
	int st = gs_e2e_wait_exit(pid, ms);
	if (st == -1)
		fail_msg("process %d did not exit within %d ms", (int)pid, ms);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* ---- clients -------------------------------------------------------------- */

/* A raw client over TLS trusting ca (a file name in the test directory), with the client
 * certificate if with_cert; ca NULL: plaintext. */
static struct gs_rpc_client *raw_client(const char *addr, const char *ca, bool with_cert)
{
	char ca_p[512], cert_p[512], key_p[512];
	struct gs_rpc_tls tls = {0};
	struct gs_rpc_client_opts o = {.reconnect_max_ms = 500};
	if (ca) {
		snprintf(ca_p, sizeof(ca_p), "%s", path_of(ca));
		tls.ca_file = ca_p;
		if (with_cert) {
			snprintf(cert_p, sizeof(cert_p), "%s", path_of("client.pem"));
			snprintf(key_p, sizeof(key_p), "%s", path_of("client.key"));
			tls.cert_file = cert_p;
			tls.key_file = key_p;
		}
		o.tls = &tls;
	}
	struct gs_rpc_client *c = NULL;
	assert_int_equal(gs_rpc_client_create(addr, &o, &c), GS_OK);
	return c;
}

/* The library client: token (may be NULL) over TLS with ca.pem. */
static int lib_connect(const char *addr, const char *token, bool with_cert, struct gs_client **out,
                       char *err, size_t err_len)
{
	char ca_p[512], cert_p[512], key_p[512];
	snprintf(ca_p, sizeof(ca_p), "%s", path_of("ca.pem"));
	snprintf(cert_p, sizeof(cert_p), "%s", path_of("client.pem"));
	snprintf(key_p, sizeof(key_p), "%s", path_of("client.key"));
	struct gs_client_opts o = {.connect_timeout_ms = 3000,
	                           .token = token,
	                           .tls_ca_file = ca_p,
	                           .tls_cert_file = with_cert ? cert_p : NULL,
	                           .tls_key_file = with_cert ? key_p : NULL};
	return gs_client_connect_err(addr, &o, out, err, err_len);
}

/* ---- servers and workers -------------------------------------------------- */

static struct env *start_server(bool mtls)
{
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	e->port = gs_e2e_free_port();
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", e->port);
	char ctok[512], wtok[512], cert[512], key[512], ca[512];
	snprintf(ctok, sizeof(ctok), "%s", path_of("client.token"));
	snprintf(wtok, sizeof(wtok), "%s", path_of("worker.token"));
	snprintf(cert, sizeof(cert), "%s", path_of("server.pem"));
	snprintf(key, sizeof(key), "%s", path_of("server.key"));
	snprintf(ca, sizeof(ca), "%s", path_of("ca.pem"));
	const char *args[24] = {
	    "server", "--listen",   e->addr, "--heartbeat-ms",      "100", "--worker-timeout-ms",
	    "1000",   "--grace-ms", "2000",  "--client-token-file", ctok,  "--worker-token-file",
	    wtok,     "--tls-cert", cert,    "--tls-key",           key};
	int n = 17;
	if (mtls) {
		args[n++] = "--tls-client-ca";
		args[n++] = ca;
	}
	args[n] = NULL;
	char name[32];
	snprintf(name, sizeof(name), "server-%d", e->port);
	e->server = gs_e2e_spawn_clean(name, args, NULL);
	uint64_t end = gs_e2e_mono_ms() + 10000;
	char err[512];
	while (lib_connect(e->addr, CLIENT_TOK, mtls, &e->c, err, sizeof(err)) != GS_OK &&
	       gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(30);
	if (!e->c)
		fail_msg("server did not come up: %s", err);
	return e;
}

static int setup_tls(void **state)
{
	*state = start_server(false);
	return 0;
}

static int setup_mtls(void **state)
{
	*state = start_server(true);
	return 0;
}

static int teardown_env(void **state)
{
	struct env *e = *state;
	if (e)
		gs_client_close(e->c);
	free(e);
	*state = NULL;
	gs_e2e_kill_all();
	return 0;
}

/* `gsched worker` over TLS; token_file: a file name in the test directory or NULL. */
static pid_t start_worker(struct env *e, const char *name, const char *token_file, bool with_cert)
{
	static char tok[8][512], ca[8][512], cert[8][512], key[8][512];
	static int k;
	int i = k++ % 8;
	snprintf(ca[i], 512, "%s", path_of("ca.pem"));
	snprintf(cert[i], 512, "%s", path_of("client.pem"));
	snprintf(key[i], 512, "%s", path_of("client.key"));
	const char *args[24] = {"worker", "--server",   e->addr, "--slots",  "2",  "--name",
	                        name,     "--grace-ms", "500",   "--tls-ca", ca[i]};
	int n = 11;
	if (token_file) {
		snprintf(tok[i], 512, "%s", path_of(token_file));
		args[n++] = "--token-file";
		args[n++] = tok[i];
	}
	if (with_cert) {
		args[n++] = "--tls-cert";
		args[n++] = cert[i];
		args[n++] = "--tls-key";
		args[n++] = key[i];
	}
	args[n] = NULL;
	return gs_e2e_spawn_clean(name, args, NULL);
}

/* The state of the worker named name (0: not listed). */
static int worker_state(struct env *e, const char *name, uint64_t *id)
{
	struct gs_client_worker *w = NULL;
	size_t n = 0;
	int st = 0;
	if (gs_client_list_workers(e->c, false, &w, &n) != GS_OK)
		fail_msg("ListWorkers: %s", gs_client_error(e->c));
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i].name, name) == 0) {
			st = w[i].state;
			if (id)
				*id = w[i].id;
		}
	gs_client_workers_free(w, n);
	return st;
}

static uint64_t wait_worker(struct env *e, const char *name)
{
	uint64_t end = gs_e2e_mono_ms() + 10000, id = 0;
	while (worker_state(e, name, &id) != 1 && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(20);
	if (worker_state(e, name, &id) != 1)
		fail_msg("worker %s did not register", name);
	return id;
}

/* ---- raw calls ------------------------------------------------------------ */

struct method {
	const char *path;
	enum gs_rpc_kind kind;
};

static const struct method client_methods[] = {
    {"/gsched.v1.TaskService/Submit", GS_RPC_UNARY},
    {"/gsched.v1.TaskService/SubmitStream", GS_RPC_BIDI},
    {"/gsched.v1.TaskService/Wait", GS_RPC_UNARY},
    {"/gsched.v1.TaskService/Get", GS_RPC_UNARY},
    {"/gsched.v1.TaskService/Cancel", GS_RPC_UNARY},
    {"/gsched.v1.TaskService/Watch", GS_RPC_SERVER_STREAM},
    {"/gsched.v1.AdminService/ListWorkers", GS_RPC_UNARY},
    {"/gsched.v1.AdminService/Stats", GS_RPC_UNARY},
    {"/gsched.v1.AdminService/Drain", GS_RPC_UNARY},
};
#define N_CLIENT_METHODS (sizeof(client_methods) / sizeof(client_methods[0]))

struct stream_rec {
	int messages;
	char details[256];
};

static void rec_message(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	(void)s;
	(void)b;
	(void)n;
	((struct stream_rec *)ud)->messages++;
}

static void rec_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	(void)s;
	(void)code;
	struct stream_rec *r = ud;
	snprintf(r->details, sizeof(r->details), "%s", details ? details : "");
}

/* One call of m with an optional authorization value; returns the final
 * gRPC code.  Bidi streams send req then half-close.  Bounded by 10 s. */
static int call_code(struct gs_rpc_client *c, const struct method *m, const void *req, size_t len,
                     const char *auth, char *details, size_t details_len)
{
	struct gs_rpc_md md = {"authorization", auth};
	size_t n_md = auth ? 1 : 0;
	if (details && details_len)
		details[0] = 0;
	if (m->kind == GS_RPC_UNARY) {
		struct gs_rpc_reply rep;
		gs_rpc_client_unary(c, m->path, req, len, &md, n_md, 10000, &rep);
		int code = rep.code;
		if (details)
			snprintf(details, details_len, "%s", rep.details ? rep.details : "");
		gs_rpc_reply_free(&rep);
		return code;
	}
	static const struct gs_rpc_stream_ops ops = {rec_message, rec_close};
	struct stream_rec rec = {0};
	struct gs_rpc_stream *s = NULL;
	int rc =
	    gs_rpc_stream_open(c, m->path, m->kind, req, len, &md, n_md, 10000, &ops, &rec, &s);
	assert_int_equal(rc, GS_OK);
	if (m->kind == GS_RPC_BIDI) {
		gs_rpc_stream_send(s, req, len); /* may fail once refused */
		gs_rpc_stream_close_send(s);
	}
	int code = -1;
	if (gs_rpc_stream_wait(s, 10000, &code) != GS_OK)
		fail_msg("%s: the stream did not end within 10 s", m->path);
	gs_rpc_stream_destroy(s);
	if (details)
		snprintf(details, details_len, "%s", rec.details);
	return code;
}

/* Encoded requests that would change something if they got through. */
struct requests {
	uint8_t *submit, *stream_in, *drain, *ids;
	size_t submit_len, stream_len, drain_len, ids_len;
};

static void build_requests(struct requests *r, uint64_t worker_id, uint64_t task_id)
{
	char *args[] = {"true"};
	Gsched__V1__Argv argv = GSCHED__V1__ARGV__INIT;
	argv.n_args = 1;
	argv.args = args;
	Gsched__V1__TaskSpec spec = GSCHED__V1__TASK_SPEC__INIT;
	spec.body_case = GSCHED__V1__TASK_SPEC__BODY_ARGV;
	spec.argv = &argv;
	Gsched__V1__TaskSpec *specs[] = {&spec};
	Gsched__V1__SubmitRequest sr = GSCHED__V1__SUBMIT_REQUEST__INIT;
	sr.n_tasks = 1;
	sr.tasks = specs;
	r->submit_len = gsched__v1__submit_request__get_packed_size(&sr);
	r->submit = malloc(r->submit_len + 1);
	gsched__v1__submit_request__pack(&sr, r->submit);

	Gsched__V1__SubmitItem item = GSCHED__V1__SUBMIT_ITEM__INIT;
	item.client_seq = 1;
	item.task = &spec;
	Gsched__V1__SubmitItem *items[] = {&item};
	Gsched__V1__SubmitStreamIn si = GSCHED__V1__SUBMIT_STREAM_IN__INIT;
	si.n_submits = 1;
	si.submits = items;
	r->stream_len = gsched__v1__submit_stream_in__get_packed_size(&si);
	r->stream_in = malloc(r->stream_len + 1);
	gsched__v1__submit_stream_in__pack(&si, r->stream_in);

	Gsched__V1__DrainRequest dr = GSCHED__V1__DRAIN_REQUEST__INIT;
	dr.worker_id = worker_id;
	dr.reason = "should never happen";
	r->drain_len = gsched__v1__drain_request__get_packed_size(&dr);
	r->drain = malloc(r->drain_len + 1);
	gsched__v1__drain_request__pack(&dr, r->drain);

	/* Wait/Get/Cancel/Watch all have "repeated fixed64 ids = 1". */
	Gsched__V1__CancelRequest cr = GSCHED__V1__CANCEL_REQUEST__INIT;
	cr.n_ids = 1;
	cr.ids = &task_id;
	r->ids_len = gsched__v1__cancel_request__get_packed_size(&cr);
	r->ids = malloc(r->ids_len + 1);
	gsched__v1__cancel_request__pack(&cr, r->ids);
	assert_true(r->submit && r->stream_in && r->drain && r->ids);
}

static void free_requests(struct requests *r)
{
	free(r->submit);
	free(r->stream_in);
	free(r->drain);
	free(r->ids);
}

static void request_for(const struct requests *r, size_t i, const void **req, size_t *len)
{
	const char *p = client_methods[i].path;
	if (strstr(p, "/Submit") && !strstr(p, "Stream")) {
		*req = r->submit;
		*len = r->submit_len;
	} else if (strstr(p, "SubmitStream")) {
		*req = r->stream_in;
		*len = r->stream_len;
	} else if (strstr(p, "/Drain")) {
		*req = r->drain;
		*len = r->drain_len;
	} else if (strstr(p, "ListWorkers") || strstr(p, "Stats")) {
		*req = "";
		*len = 0;
	} else {
		*req = r->ids;
		*len = r->ids_len;
	}
}

static uint64_t submitted_total(struct env *e, uint64_t *in_use)
{
	struct gs_client_stats s;
	if (gs_client_stats(e->c, &s) != GS_OK)
		fail_msg("Stats: %s", gs_client_error(e->c));
	uint64_t n = 0;
	for (size_t i = 0; i < s.n_queues; i++)
		n += s.queues[i].submitted_total;
	if (in_use)
		*in_use = s.tasks_in_use;
	gs_client_stats_free(&s);
	return n;
}

/* ---- tests ---------------------------------------------------------------- */

/* No token, a wrong or malformed one, the worker's: every client method is
 * refused, and nothing changed. */
static void test_client_methods_refused(void **state)
{
	struct env *e = *state;
	start_worker(e, "w-ok", "worker.token", false);
	uint64_t wid = wait_worker(e, "w-ok");
	/* A real queued task for Wait/Get/Cancel/Watch to aim at. */
	const char *sl[] = {"sleep", "30"};
	struct gs_client_spec sp = {.argv = sl, .argc = 2, .queue = "nobody-serves-this"};
	uint64_t tid = 0;
	assert_int_equal(gs_client_submit(e->c, &sp, 1, &tid), GS_OK);
	uint64_t in_use0 = 0, sub0 = submitted_total(e, &in_use0);
	struct requests rq;
	build_requests(&rq, wid, tid);

	static const struct {
		const char *what;
		const char *auth; /* NULL: no header */
		int want;
	} creds[] = {
	    {"no token", NULL, GS_RPC_UNAUTHENTICATED},
	    {"wrong token", "Bearer not-the-token", GS_RPC_UNAUTHENTICATED},
	    {"token plus a byte", "Bearer " CLIENT_TOK "x", GS_RPC_UNAUTHENTICATED},
	    {"token minus a byte", "Bearer client-secret-7f3a9c1e5", GS_RPC_UNAUTHENTICATED},
	    {"no scheme", CLIENT_TOK, GS_RPC_UNAUTHENTICATED},
	    {"basic scheme", "Basic " CLIENT_TOK, GS_RPC_UNAUTHENTICATED},
	    {"empty bearer", "Bearer ", GS_RPC_UNAUTHENTICATED},
	    {"worker token", "Bearer " WORKER_TOK, GS_RPC_PERMISSION_DENIED},
	};
	struct gs_rpc_client *raw = raw_client(e->addr, "ca.pem", false);
	for (size_t c = 0; c < sizeof(creds) / sizeof(creds[0]); c++) {
		for (size_t i = 0; i < N_CLIENT_METHODS; i++) {
			const void *req;
			size_t len;
			request_for(&rq, i, &req, &len);
			char details[256];
			int code = call_code(raw, &client_methods[i], req, len, creds[c].auth,
			                     details, sizeof(details));
			if (code != creds[c].want)
				fail_msg("%s with %s: got %s (%s), want %s", client_methods[i].path,
				         creds[c].what, gs_rpc_code_name(code), details,
				         gs_rpc_code_name(creds[c].want));
			/* The refusal never echoes a token. */
			assert_null(strstr(details, CLIENT_TOK));
			assert_null(strstr(details, WORKER_TOK));
		}
	}
	/* Control: the same raw client with the right token gets through
	 * (methods that would not act or block; Cancel last: it ends the task). */
	static const char *const control[] = {
	    "/gsched.v1.TaskService/Get", "/gsched.v1.AdminService/ListWorkers",
	    "/gsched.v1.AdminService/Stats", "/gsched.v1.TaskService/Cancel"};
	for (size_t k = 0; k < sizeof(control) / sizeof(control[0]); k++) {
		size_t i = 0;
		while (strcmp(client_methods[i].path, control[k]) != 0)
			i++;
		const void *req;
		size_t len;
		request_for(&rq, i, &req, &len);
		int code =
		    call_code(raw, &client_methods[i], req, len, "Bearer " CLIENT_TOK, NULL, 0);
		if (code != GS_RPC_OK)
			fail_msg("%s with the client token: %s", control[k],
			         gs_rpc_code_name(code));
	}
	gs_rpc_client_destroy(raw);

	/* The refused Submit/SubmitStream queued nothing, the refused Drain did
	 * not drain the worker. */
	uint64_t in_use;
	assert_int_equal(submitted_total(e, &in_use), sub0);
	assert_true(in_use <= in_use0);
	assert_int_equal(worker_state(e, "w-ok", NULL), 1);

	/* The library reports the refusal as GS_EAUTH with the gRPC code. */
	struct gs_client *bad = NULL;
	char err[512];
	assert_int_equal(lib_connect(e->addr, WORKER_TOK, false, &bad, err, sizeof(err)), GS_OK);
	struct gs_client_stats st;
	assert_int_equal(gs_client_stats(bad, &st), GS_EAUTH);
	assert_non_null(strstr(gs_client_error(bad), "PERMISSION_DENIED"));
	assert_null(strstr(gs_client_error(bad), WORKER_TOK));
	gs_client_close(bad);
	free_requests(&rq);
}

/* A worker with the client token, a wrong one or none is refused and exits. */
static void test_worker_refused(void **state)
{
	struct env *e = *state;
	struct gs_rpc_client *raw = raw_client(e->addr, "ca.pem", false);
	const struct method connect = {"/gsched.v1.WorkerService/Connect", GS_RPC_BIDI};
	static const uint8_t reg[] = {0x0a, 0x04, 0x10, 0x01, 0x28, 0x01}; /* Register{slots 1} */
	char details[256];
	assert_int_equal(call_code(raw, &connect, reg, sizeof(reg), NULL, details, sizeof(details)),
	                 GS_RPC_UNAUTHENTICATED);
	assert_int_equal(call_code(raw, &connect, reg, sizeof(reg), "Bearer wrong", NULL, 0),
	                 GS_RPC_UNAUTHENTICATED);
	assert_int_equal(call_code(raw, &connect, reg, sizeof(reg), "Bearer " CLIENT_TOK, details,
	                           sizeof(details)),
	                 GS_RPC_PERMISSION_DENIED);
	assert_non_null(strstr(details, "client token"));
	gs_rpc_client_destroy(raw);

	pid_t w1 = start_worker(e, "w-client-token", "client.token", false);
	pid_t w2 = start_worker(e, "w-no-token", NULL, false);
	pid_t w3 = start_worker(e, "w-wrong-token", "wrong.token", false);
	assert_int_equal(exit_status(w1, 10000), 1);
	assert_int_equal(exit_status(w2, 10000), 1);
	assert_int_equal(exit_status(w3, 10000), 1);
	assert_true(file_has("w-client-token.log", "PERMISSION_DENIED"));
	assert_true(file_has("w-no-token.log", "UNAUTHENTICATED"));
	assert_true(file_has("w-wrong-token.log", "UNAUTHENTICATED"));
	assert_int_equal(worker_state(e, "w-client-token", NULL), 0);
	assert_int_equal(worker_state(e, "w-no-token", NULL), 0);
	assert_int_equal(worker_state(e, "w-wrong-token", NULL), 0);
}

/* Plaintext, or TLS trusting another CA: no conversation with the server. */
static void test_transport_refused(void **state)
{
	struct env *e = *state;
	struct gs_client *c = NULL;
	char err[512];
	struct gs_client_opts plain = {.connect_timeout_ms = 3000, .token = CLIENT_TOK};
	uint64_t t0 = gs_e2e_mono_ms();
	assert_int_equal(gs_client_connect_err(e->addr, &plain, &c, err, sizeof(err)), GS_EUNAVAIL);
	assert_null(c);
	assert_true(gs_e2e_mono_ms() - t0 < 4000);

	struct gs_rpc_client *raw = raw_client(e->addr, NULL, false);
	const struct method stats = {"/gsched.v1.AdminService/Stats", GS_RPC_UNARY};
	assert_int_equal(call_code(raw, &stats, "", 0, "Bearer " CLIENT_TOK, NULL, 0),
	                 GS_RPC_UNAVAILABLE);
	gs_rpc_client_destroy(raw);

	raw = raw_client(e->addr, "other-ca.pem", false);
	assert_int_equal(call_code(raw, &stats, "", 0, "Bearer " CLIENT_TOK, NULL, 0),
	                 GS_RPC_UNAVAILABLE);
	gs_rpc_client_destroy(raw);

	/* A plaintext worker never registers (it keeps retrying: not an auth
	 * refusal, the server may be switched to TLS later). */
	const char *args[] = {"worker",
	                      "--server",
	                      e->addr,
	                      "--name",
	                      "w-plain",
	                      "--token-file",
	                      path_of("worker.token"),
	                      NULL};
	gs_e2e_spawn_clean("w-plain", args, NULL);
	gs_e2e_sleep_ms(1000);
	assert_int_equal(worker_state(e, "w-plain", NULL), 0);
}

/* The right tokens over TLS: everything works. */
static void test_end_to_end(void **state)
{
	struct env *e = *state;
	/* Health is open: standard probes carry no token. */
	struct gs_rpc_client *raw = raw_client(e->addr, "ca.pem", false);
	struct gs_rpc_reply rep;
	assert_int_equal(gs_rpc_client_unary(raw, HEALTH_PATH, "", 0, NULL, 0, 5000, &rep), GS_OK);
	assert_true(rep.len == 2 && rep.data[0] == 0x08 && rep.data[1] == 1);
	gs_rpc_reply_free(&rep);

	/* A worker taking its token from GSCHED_TOKEN_FILE. */
	const char *wargs[] = {"worker", "--server", e->addr,           "--slots",
	                       "4",      "--name",   "w-env",           "--grace-ms",
	                       "500",    "--tls-ca", path_of("ca.pem"), NULL};
	pid_t w = gs_e2e_spawn_clean("w-env", wargs, path_of("worker.token"));
	uint64_t wid = wait_worker(e, "w-env");

	/* Submit + Wait. */
	const char *echo[] = {"sh", "-c", "echo over-tls"};
	struct gs_client_spec sp = {.argv = echo, .argc = 3};
	uint64_t id = 0;
	assert_int_equal(gs_client_submit(e->c, &sp, 1, &id), GS_OK);
	struct gs_client_result r;
	assert_int_equal(gs_client_wait(e->c, &id, 1, 10000, &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_DONE);
	assert_string_equal((char *)r.output, "over-tls\n");
	assert_int_equal(r.worker_id, wid);
	gs_client_result_free(&r);

	/* Get and Cancel on a running task; Watch sees it end. */
	const char *sl[] = {"sleep", "30"};
	struct gs_client_spec slow = {.argv = sl, .argc = 2};
	assert_int_equal(gs_client_submit(e->c, &slow, 1, &id), GS_OK);
	uint64_t end = gs_e2e_mono_ms() + 10000;
	do {
		assert_int_equal(gs_client_get(e->c, &id, 1, false, &r), GS_OK);
		int s = r.state;
		gs_client_result_free(&r);
		if (s == GS_CLIENT_RUNNING || s == GS_CLIENT_ASSIGNED)
			break;
		gs_e2e_sleep_ms(20);
	} while (gs_e2e_mono_ms() < end);
	Gsched__V1__WatchRequest wr = GSCHED__V1__WATCH_REQUEST__INIT;
	wr.n_ids = 1;
	wr.ids = &id;
	uint8_t wbuf[64];
	size_t wlen = gsched__v1__watch_request__pack(&wr, wbuf);
	static const struct gs_rpc_stream_ops ops = {rec_message, rec_close};
	struct stream_rec rec = {0};
	struct gs_rpc_stream *ws = NULL;
	struct gs_rpc_md md = {"authorization", "Bearer " CLIENT_TOK};
	assert_int_equal(gs_rpc_stream_open(raw, "/gsched.v1.TaskService/Watch",
	                                    GS_RPC_SERVER_STREAM, wbuf, wlen, &md, 1, 15000, &ops,
	                                    &rec, &ws),
	                 GS_OK);
	gs_e2e_sleep_ms(100);
	int outcome = 0;
	assert_int_equal(gs_client_cancel(e->c, &id, 1, &outcome, NULL), GS_OK);
	assert_true(outcome == GS_CLIENT_CANCEL_CANCELLED || outcome == GS_CLIENT_CANCEL_REQUESTED);
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(ws, 10000, &code), GS_OK);
	assert_int_equal(code, GS_RPC_OK);
	assert_true(rec.messages >= 1);
	gs_rpc_stream_destroy(ws);
	gs_rpc_client_destroy(raw);

	/* SubmitStream: acks and results through the token-carrying stream. */
	struct gs_client_stream *s = NULL;
	assert_int_equal(gs_client_stream_open(e->c, NULL, NULL, NULL, &s), GS_OK);
	struct gs_client_spec h = {.handler = "echo", .payload = "x", .payload_len = 1};
	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(gs_client_stream_submit(s, &h, i), GS_OK);
	assert_int_equal(gs_client_stream_close(s), GS_OK);
	if (gs_client_stream_wait(s, 15000) != GS_OK)
		fail_msg("SubmitStream: %s", gs_client_stream_error(s));
	gs_client_stream_destroy(s);

	/* The CLI with --token-file and --tls-ca. */
	const char *sub[] = {"submit",
	                     "--server",
	                     e->addr,
	                     "--token-file",
	                     path_of("client.token"),
	                     "--tls-ca",
	                     path_of("ca.pem"),
	                     "--wait",
	                     "--",
	                     "echo",
	                     "cli-over-tls",
	                     NULL};
	assert_int_equal(exit_status(gs_e2e_spawn_clean("cli-submit", sub, NULL), 15000), 0);
	assert_true(file_has("cli-submit.log", "cli-over-tls"));
	/* ... and refused without the token (exit 1, the code on stderr). */
	const char *sub_bad[] = {"submit",          "--server", e->addr, "--tls-ca",
	                         path_of("ca.pem"), "--",       "true",  NULL};
	assert_int_equal(exit_status(gs_e2e_spawn_clean("cli-submit-bad", sub_bad, NULL), 15000),
	                 1);
	assert_true(file_has("cli-submit-bad.log", "UNAUTHENTICATED"));

	/* Stats, ListWorkers, then Drain: the worker finishes and leaves (0). */
	uint64_t in_use;
	assert_true(submitted_total(e, &in_use) >= 22);
	assert_int_equal(worker_state(e, "w-env", NULL), 1);
	struct gs_rpc_client *raw2 = raw_client(e->addr, "ca.pem", false);
	Gsched__V1__DrainRequest dr = GSCHED__V1__DRAIN_REQUEST__INIT;
	dr.worker_id = wid;
	dr.reason = "test over";
	uint8_t dbuf[128];
	size_t dlen = gsched__v1__drain_request__pack(&dr, dbuf);
	const struct method drain = {"/gsched.v1.AdminService/Drain", GS_RPC_UNARY};
	assert_int_equal(call_code(raw2, &drain, dbuf, dlen, "Bearer " CLIENT_TOK, NULL, 0),
	                 GS_RPC_OK);
	gs_rpc_client_destroy(raw2);
	assert_int_equal(exit_status(w, 10000), 0);
}

/* --tls-client-ca: a client without a certificate cannot connect. */
static void test_client_cert_required(void **state)
{
	struct env *e = *state; /* connected with the client certificate */
	struct gs_client_stats st;
	assert_int_equal(gs_client_stats(e->c, &st), GS_OK);
	gs_client_stats_free(&st);

	struct gs_client *c = NULL;
	char err[512];
	assert_int_equal(lib_connect(e->addr, CLIENT_TOK, false, &c, err, sizeof(err)),
	                 GS_EUNAVAIL);
	assert_null(c);

	/* A worker with its certificate and token works; without the
	 * certificate it never registers. */
	start_worker(e, "w-cert", "worker.token", true);
	wait_worker(e, "w-cert");
	start_worker(e, "w-nocert", "worker.token", false);
	gs_e2e_sleep_ms(1000);
	assert_int_equal(worker_state(e, "w-nocert", NULL), 0);
	const char *h[] = {"sh", "-c", "echo mtls"};
	struct gs_client_spec sp = {.argv = h, .argc = 3};
	uint64_t id;
	assert_int_equal(gs_client_submit(e->c, &sp, 1, &id), GS_OK);
	struct gs_client_result r;
	assert_int_equal(gs_client_wait(e->c, &id, 1, 10000, &r), GS_OK);
	assert_string_equal((char *)r.output, "mtls\n");
	gs_client_result_free(&r);
}

/* Bad token or TLS files: the server says which, exits 1, starts nothing. */
static void test_bad_config(void **state)
{
	(void)state;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", gs_e2e_free_port());
	static const struct {
		const char *name, *flag, *file, *expect;
	} cases[] = {
	    {"cfg-empty", "--client-token-file", "empty.token", "empty token"},
	    {"cfg-missing", "--worker-token-file", "no-such.token", "No such file"},
	    {"cfg-same", "--worker-token-file", "client.token", "must differ"},
	    {"cfg-nokey", "--tls-cert", "server.pem", "needs its key"},
	    {"cfg-notpem", "--tls-cert", "client.token", "not a PEM file"},
	    {"cfg-badkey", "--tls-cert", "server.pem", "cannot listen"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[16] = {"server", "--listen", addr, cases[i].flag,
		                        path_of(cases[i].file)};
		int n = 5;
		if (strcmp(cases[i].name, "cfg-same") == 0) {
			args[n++] = "--client-token-file";
			args[n++] = path_of("client.token");
		} else if (strcmp(cases[i].name, "cfg-notpem") == 0) {
			args[n++] = "--tls-key";
			args[n++] = path_of("server.key");
		} else if (strcmp(cases[i].name, "cfg-badkey") == 0) {
			args[n++] = "--tls-key";
			args[n++] = path_of("client.key"); /* not the certificate's key */
		}
		args[n] = NULL;
		int st = exit_status(gs_e2e_spawn_clean(cases[i].name, args, NULL), 10000);
		char log[64];
		snprintf(log, sizeof(log), "%s.log", cases[i].name);
		/* Exit 1; a ThreadSanitizer tree may exit 66 instead when liburcu's
		 * teardown (after a failed listen) trips its known report. */
		if (st == 0 || (st != 1 && !file_has(log, "ThreadSanitizer")))
			fail_msg("%s: exit status %d", cases[i].name, st);
		if (!file_has(log, cases[i].expect))
			fail_msg("%s: the log lacks '%s'", cases[i].name, cases[i].expect);
		assert_false(file_has(log, CLIENT_TOK));
		assert_false(file_has(log, "PRIVATE KEY"));
	}
}

/* The helpers under the checks: comparison, header parsing, token files,
 * the TLS pre-flight check. */
static void test_token_helpers(void **state)
{
	(void)state;
	assert_true(gs_rpc_token_equal("abc", 3, "abc", 3));
	assert_false(gs_rpc_token_equal("abd", 3, "abc", 3));
	assert_false(gs_rpc_token_equal("ab", 2, "abc", 3));
	assert_false(gs_rpc_token_equal("abcd", 4, "abc", 3));
	assert_false(gs_rpc_token_equal("", 0, "abc", 3));

	const char *t = NULL;
	assert_int_equal(gs_rpc_bearer_parse("Bearer xyz", 10, &t), 3);
	assert_memory_equal(t, "xyz", 3);
	assert_int_equal(gs_rpc_bearer_parse("bearer  xyz", 11, &t), 3);
	assert_int_equal(gs_rpc_bearer_parse("Bearer ", 7, &t), 0);
	assert_int_equal(gs_rpc_bearer_parse("Bearer   ", 9, &t), 0);
	assert_int_equal(gs_rpc_bearer_parse("Basic xyz", 9, &t), 0);
	assert_int_equal(gs_rpc_bearer_parse("xyz", 3, &t), 0);
	char *v = gs_rpc_bearer_value("tok");
	assert_string_equal(v, "Bearer tok");
	gs_rpc_token_free(v);

	char *tok = NULL, err[512];
	bool world = true;
	assert_int_equal(
	    gs_rpc_token_read_file(path_of("client.token"), &tok, &world, err, sizeof(err)), GS_OK);
	assert_string_equal(tok, CLIENT_TOK); /* newline trimmed */
	assert_false(world);
	gs_rpc_token_free(tok);
	int fd = open(path_of("spaced.token"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "two words\n", 10), 10);
	close(fd);
	chmod(path_of("spaced.token"), 0644);
	assert_int_equal(
	    gs_rpc_token_read_file(path_of("spaced.token"), &tok, &world, err, sizeof(err)),
	    GS_EINVAL);
	assert_null(tok);
	assert_true(world);
	assert_null(strstr(err, "two words"));
	assert_int_equal(
	    gs_rpc_token_read_file(path_of("empty.token"), &tok, NULL, err, sizeof(err)),
	    GS_EINVAL);
	assert_non_null(strstr(err, "empty token"));
	assert_int_equal(gs_rpc_token_read_file(path_of("nope"), &tok, NULL, err, sizeof(err)),
	                 GS_EIO);
	assert_non_null(strstr(err, "No such file"));

	char cert[512], key[512], ca[512];
	snprintf(cert, sizeof(cert), "%s", path_of("server.pem"));
	snprintf(key, sizeof(key), "%s", path_of("server.key"));
	snprintf(ca, sizeof(ca), "%s", path_of("ca.pem"));
	struct gs_rpc_tls ok = {.cert_file = cert, .key_file = key, .ca_file = ca};
	assert_int_equal(gs_rpc_tls_check(&ok, 1, err, sizeof(err)), GS_OK);
	struct gs_rpc_tls nokey = {.cert_file = cert};
	assert_int_equal(gs_rpc_tls_check(&nokey, 1, err, sizeof(err)), GS_EINVAL);
	struct gs_rpc_tls none = {0};
	assert_int_equal(gs_rpc_tls_check(&none, 1, err, sizeof(err)), GS_EINVAL);
	assert_int_equal(gs_rpc_tls_check(&none, 0, err, sizeof(err)), GS_OK); /* default roots */
	struct gs_rpc_tls req = {.cert_file = cert, .key_file = key, .require_client_cert = 1};
	assert_int_equal(gs_rpc_tls_check(&req, 1, err, sizeof(err)), GS_EINVAL);
	struct gs_rpc_tls notpem = {.ca_file = path_of("client.token")};
	assert_int_equal(gs_rpc_tls_check(&notpem, 0, err, sizeof(err)), GS_EIO);
	assert_non_null(strstr(err, "not a PEM file"));
	assert_null(strstr(err, CLIENT_TOK));
}

/* No log of any process started above holds a token. */
static void test_no_secret_logged(void **state)
{
	(void)state;
	DIR *d = opendir(gs_e2e_dir());
	assert_non_null(d);
	struct dirent *de;
	int logs = 0;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".log") != 0)
			continue;
		logs++;
		char *s = slurp(path_of(de->d_name));
		if (strstr(s, CLIENT_TOK) || strstr(s, WORKER_TOK))
			fail_msg("%s contains a token", de->d_name);
		free(s);
	}
	closedir(d);
	assert_true(logs >= 5);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_auth", "auth", 0700, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_auth: %s; certificates and logs in %s\n", gs_e2e_bin(), gs_e2e_dir());
	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		fprintf(stderr, "test_auth: openssl not found (scripts/setup.sh installs it)\n");
		return 1;
	}
	if (make_certs() != 0) {
		fprintf(stderr, "test_auth: openssl failed, see %s/openssl.out\n", gs_e2e_dir());
		return 1;
	}
	/* Token files: 0600, with a trailing newline as editors write them. */
	static const struct {
		const char *name, *text;
	} toks[] = {{"client.token", CLIENT_TOK "\n"},
	            {"worker.token", WORKER_TOK "\n"},
	            {"wrong.token", "wrong\n"},
	            {"empty.token", "\n"}};
	for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
		int fd = open(path_of(toks[i].name), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		size_t n = strlen(toks[i].text);
		if (fd < 0 || write(fd, toks[i].text, n) != (ssize_t)n) {
			perror(toks[i].name);
			return 1;
		}
		close(fd);
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_helpers),
	    cmocka_unit_test_setup_teardown(test_client_methods_refused, setup_tls, teardown_env),
	    cmocka_unit_test_setup_teardown(test_worker_refused, setup_tls, teardown_env),
	    cmocka_unit_test_setup_teardown(test_transport_refused, setup_tls, teardown_env),
	    cmocka_unit_test_setup_teardown(test_end_to_end, setup_tls, teardown_env),
	    cmocka_unit_test_setup_teardown(test_client_cert_required, setup_mtls, teardown_env),
	    cmocka_unit_test_teardown(test_bad_config, teardown_env),
	    cmocka_unit_test(test_no_secret_logged),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
