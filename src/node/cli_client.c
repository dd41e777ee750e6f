/*
 * cli_client.c - the client subcommands: submit, wait, status, cancel,
 * workers, stats, over the C client library (gsched_client.h).
 *
 * Task IDs are printed as 16 hex digits (like worker IDs) and parsed the same
 * way (an optional "0x" is accepted).  Exit status: 0 ok, 1 a task or a call
 * failed (including an unreachable server: one line on stderr, quickly),
 * 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gsched_client.h"
#include "rpc_tls.h"

#define CONNECT_TIMEOUT_MS  3000
#define SUBMIT_BATCH        1000
#define WAIT_ROUND_MS       500
#define WAIT_UNAVAILABLE_MS 60000 /* `wait` rides out a server down this long */

/* The security flags of this client subcommand (set by its option parser). */
static struct gs_cli_sec g_sec;

static struct gs_client *cli_connect(const char *flag)
{
	const char *addr = gs_cli_server_addr(flag);
	char *token = NULL;
	if (gs_cli_sec_load("gsched", &g_sec, &token) != 0)
		return NULL;
	struct gs_client_opts o = {.connect_timeout_ms = CONNECT_TIMEOUT_MS,
	                           .token = token,
	                           .tls = g_sec.tls != 0,
	                           .tls_ca_file = g_sec.tls_ca,
	                           .tls_cert_file = g_sec.tls_cert,
	                           .tls_key_file = g_sec.tls_key};
	struct gs_client *c = NULL;
	char err[512];
	int rc = gs_client_connect_err(addr, &o, &c, err, sizeof(err));
	gs_rpc_token_free(token);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched: cannot reach the server at %s: %s\n", addr, err);
		return NULL;
	}
	return c;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_id(const char *s, uint64_t *out)
{
	char *end;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (!*s || *s == '-' || *s == '+' || strlen(s) > 16)
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 16);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* IDs from argv[optind..]; exit code 2 on a bad one. */
static int parse_ids(const char *cmd, int argc, char **argv, int first, uint64_t **ids, size_t *n)
{
	*n = (size_t)(argc - first);
	if (*n == 0) {
		fprintf(stderr,
		        "gsched %s: no task ID given (usage: gsched %s [--server ADDR] ID...)\n",
		        cmd, cmd);
		return 2;
	}
	*ids = calloc(*n, sizeof(**ids));
	if (!*ids)
		return 1;
	for (size_t i = 0; i < *n; i++) {
		if (parse_id(argv[first + (int)i], &(*ids)[i]) != 0) {
			fprintf(stderr, "gsched %s: '%s' is not a task ID (16 hex digits)\n", cmd,
			        argv[first + (int)i]);
			free(*ids);
			*ids = NULL;
			return 2;
		}
	}
	return 0;
}

static double ms_between(uint64_t a_us, uint64_t b_us)
{
	return a_us && b_us && b_us >= a_us ? (double)(b_us - a_us) / 1000.0 : 0.0;
}

/* Prints a final result's output to stdout and any failure on stderr.
 * Returns true if the task succeeded (DONE, exit 0). */
static bool print_result(const struct gs_client_result *r)
{
	if (r->output_len)
		fwrite(r->output, 1, r->output_len, stdout);
	bool ok = r->state == GS_CLIENT_DONE && r->exit_code == 0;
	if (r->truncated)
		fprintf(stderr, "gsched: task %016" PRIx64 ": output truncated\n", r->id);
	if (!ok) {
		fflush(stdout);
		if (r->state == GS_CLIENT_DONE)
			fprintf(stderr, "gsched: task %016" PRIx64 " exited with %d\n", r->id,
			        r->exit_code);
		else
			fprintf(stderr, "gsched: task %016" PRIx64 " %s%s%s\n", r->id,
			        gs_client_state_name(r->state), r->error && r->error[0] ? ": " : "",
			        r->error ? r->error : "");
	}
	return ok;
}

static void progress(const char *what, size_t done, size_t total)
{
	int width = 40, fill = total ? (int)((double)done / (double)total * width) : width;
	fprintf(stderr, "\r%-9s [%.*s%*s] %zu/%zu", what, fill,
	        "########################################", width - fill, "", done, total);
	if (done == total)
		fputc('\n', stderr);
}

/*
 * Waits for n tasks (respecting *stop), prints each output in order as soon
 * as it and all before it are final.  Returns the exit status.
 */
static int wait_and_print(struct gs_client *c, const uint64_t *ids, size_t n,
                          volatile sig_atomic_t *stop, bool show_progress)
{
	struct gs_client_result *res = calloc(n ? n : 1, sizeof(*res));
	bool *final = calloc(n ? n : 1, sizeof(*final));
	uint64_t *pend = calloc(n ? n : 1, sizeof(*pend));
	size_t *pidx = calloc(n ? n : 1, sizeof(*pidx));
	struct gs_client_result *tmp = calloc(n ? n : 1, sizeof(*tmp));
	int status = 0;
	if (!res || !final || !pend || !pidx || !tmp) {
		fprintf(stderr, "gsched: out of memory\n");
		status = 1;
		goto out;
	}
	size_t printed = 0, n_final = 0;
	uint64_t unavailable_since = 0; /* monotonic ms of the first failed round in a row */
	while (n_final < n && !*stop) {
		size_t k = 0;
		for (size_t i = 0; i < n && k < 4096; i++)
			if (!final[i]) {
				pidx[k] = i;
				pend[k++] = ids[i];
			}
		int rc = gs_client_wait(c, pend, k, WAIT_ROUND_MS, tmp);
		if (rc == GS_EUNAVAIL) {
			/* The server is down or restarting (its roles too): the
			 * tasks are still there; keep waiting a while. */
			gs_client_results_free(tmp, k);
			uint64_t now = gs_cli_mono_us() / 1000;
			if (!unavailable_since) {
				unavailable_since = now;
				fprintf(stderr, "gsched: %s; retrying for up to %d s\n",
				        gs_client_error(c), WAIT_UNAVAILABLE_MS / 1000);
			} else if (now - unavailable_since > WAIT_UNAVAILABLE_MS) {
				fprintf(stderr, "gsched: %s\n", gs_client_error(c));
				status = 1;
				break;
			}
			gs_cli_sleep_ms(200);
			continue;
		}
		unavailable_since = 0;
		if (rc != GS_OK && rc != GS_ETIMEOUT) {
			fprintf(stderr, "gsched: %s\n", gs_client_error(c));
			gs_client_results_free(tmp, k);
			status = 1;
			break;
		}
		for (size_t j = 0; j < k; j++) {
			if (gs_client_state_final(tmp[j].state) ||
			    tmp[j].state == GS_CLIENT_UNKNOWN) {
				res[pidx[j]] = tmp[j];
				final[pidx[j]] = true;
				n_final++;
			} else {
				gs_client_result_free(&tmp[j]);
			}
		}
		for (; printed < n && final[printed]; printed++) {
			if (show_progress)
				fputs("\r\033[K", stderr);
			if (res[printed].state == GS_CLIENT_UNKNOWN) {
				fprintf(stderr,
				        "gsched: task %016" PRIx64 ": unknown ID (or its result "
				        "was already fetched)\n",
				        ids[printed]);
				status = 1;
			} else if (!print_result(&res[printed])) {
				status = 1;
			}
			gs_client_result_free(&res[printed]);
		}
		fflush(stdout);
		if (show_progress && n_final < n)
			progress("running", n_final, n);
	}
	if (n_final < n) {
		if (show_progress)
			fputs("\r\033[K", stderr);
		fprintf(stderr, "gsched: interrupted; %zu of %zu tasks not finished\n", n - n_final,
		        n);
		status = 1;
	}
	gs_client_results_free(res, n);
out:
	free(res);
	free(final);
	free(pend);
	free(pidx);
	free(tmp);
	return status;
}

/* --- submit ------------------------------------------------------------ */

static void submit_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: gsched submit [--server ADDR] [--queue Q] [--priority 0-255] [--retries N]\n"
	    "                     [--timeout MS] [--delay MS] [--idempotency-key K] [--wait]\n"
	    "                     -- CMD [ARGS...]\n"
	    "                     " GS_CLI_SEC_USAGE "\n"
	    "       gsched submit [options] --handler NAME [--payload DATA]\n"
	    "       gsched submit [options] --file FILE   (one `sh -c` task per line; - is stdin)\n"
	    "\n"
	    "Prints the task IDs, one per line.  With --wait, waits instead and prints\n"
	    "each task's output; exits 1 if any task failed.  --idempotency-key K (at most\n"
	    "120 bytes): running the same command again with K, while the server still\n"
	    "keeps the first run's tasks, prints their IDs instead of queuing them again\n"
	    "(--file: the batches of 1000 tasks are keyed K, K#2, K#3, ...).\n");
}

/* Reads non-empty lines of path ("-": stdin).  Returns the count or -1. */
static long read_lines(const char *path, char ***out)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f)
		return -1;
	char **v = NULL, *line = NULL;
	size_t n = 0, cap = 0, lcap = 0;
	ssize_t len;
	while ((len = getline(&line, &lcap, f)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (len == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n++] = strdup(line);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	*out = v;
	return (long)n;
}

int gs_cli_submit(int argc, char **argv, volatile sig_atomic_t *stop)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"queue", required_argument, NULL, 'q'},
	    {"priority", required_argument, NULL, 'p'},
	    {"retries", required_argument, NULL, 'r'},
	    {"timeout", required_argument, NULL, 't'},
	    {"delay", required_argument, NULL, 'd'},
	    {"wait", no_argument, NULL, 'w'},
	    {"handler", required_argument, NULL, 'H'},
	    {"payload", required_argument, NULL, 'P'},
	    {"file", required_argument, NULL, 'f'},
	    {"idempotency-key", required_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},
	    GS_CLI_SEC_OPTIONS,
	    {0, 0, 0, 0},
	};
	const char *server = NULL, *file = NULL, *payload = NULL, *key = NULL;
	struct gs_client_spec base = {0};
	bool wait = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		uint32_t *num = NULL, max = UINT32_MAX;
		if (gs_cli_sec_opt(&g_sec, c, optarg))
			continue;
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'q':
			base.queue = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 'H':
			base.handler = optarg;
			break;
		case 'P':
			payload = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'K':
			key = optarg;
			break;
		case 'h':
			submit_usage(stdout);
			return 0;
		case 'p':
			num = &base.priority;
			max = 255;
			break;
		case 'r':
			num = &base.retries;
			max = 100;
			break;
		case 't':
			num = &base.timeout_ms;
			break;
		case 'd':
			num = &base.delay_ms;
			break;
		default:
			fprintf(stderr, "gsched submit: bad option '%s'\n", argv[optind - 1]);
			submit_usage(stderr);
			return 2;
		}
		if (num && parse_u32(optarg, max, num) != 0) {
			fprintf(stderr,
			        "gsched submit: --%s needs a number 0..%" PRIu32 ", not '%s'\n",
			        c == 'p'   ? "priority"
			        : c == 'r' ? "retries"
			        : c == 't' ? "timeout"
			                   : "delay",
			        max, optarg);
			return 2;
		}
	}
	int n_cmd = argc - optind;
	int bodies = (n_cmd > 0) + (base.handler != NULL) + (file != NULL);
	if (bodies != 1) {
		fprintf(stderr, "gsched submit: give exactly one of a command (after --), "
		                "--handler NAME or --file FILE\n");
		submit_usage(stderr);
		return 2;
	}
	if (payload && !base.handler) {
		fprintf(stderr, "gsched submit: --payload goes with --handler\n");
		return 2;
	}
	if (key && (!key[0] || strlen(key) > 120)) {
		fprintf(stderr, "gsched submit: --idempotency-key takes 1..120 bytes\n");
		return 2;
	}
	char **lines = NULL;
	size_t n = 1;
	if (file) {
		long k = read_lines(file, &lines);
		if (k < 0) {
			fprintf(stderr, "gsched submit: cannot read %s: %s\n", file,
			        strerror(errno));
			return 2;
		}
		if (k == 0) {
			fprintf(stderr, "gsched submit: %s has no task lines\n", file);
			free(lines);
			return 2;
		}
		n = (size_t)k;
	}
	struct gs_client *cl = cli_connect(server);
	if (!cl) {
		for (size_t i = 0; lines && i < n; i++)
			free(lines[i]);
		free(lines);
		return 1;
	}
	if (base.handler) {
		base.payload = payload;
		base.payload_len = payload ? strlen(payload) : 0;
	} else if (!file) {
		base.argv = (const char *const *)(argv + optind);
		base.argc = (size_t)n_cmd;
	}
	uint64_t *ids = calloc(n, sizeof(*ids));
	struct gs_client_spec *specs = calloc(n < SUBMIT_BATCH ? n : SUBMIT_BATCH, sizeof(*specs));
	const char **sh = calloc(3 * (n < SUBMIT_BATCH ? n : SUBMIT_BATCH), sizeof(*sh));
	int status = 0;
	bool tty = file && isatty(2);
	if (!ids || !specs || !sh) {
		fprintf(stderr, "gsched submit: out of memory\n");
		status = 1;
	}
	size_t done = 0;
	while (status == 0 && done < n && !*stop) {
		size_t m = n - done < SUBMIT_BATCH ? n - done : SUBMIT_BATCH;
		for (size_t i = 0; i < m; i++) {
			specs[i] = base;
			if (file) {
				sh[3 * i] = "sh";
				sh[3 * i + 1] = "-c";
				sh[3 * i + 2] = lines[done + i];
				specs[i].argv = &sh[3 * i];
				specs[i].argc = 3;
			}
		}
		char bkey[160];
		if (key && done)
			snprintf(bkey, sizeof(bkey), "%s#%zu", key, done / SUBMIT_BATCH + 1);
		else if (key)
			snprintf(bkey, sizeof(bkey), "%s", key);
		if (gs_client_submit_idem(cl, key ? bkey : NULL, specs, m, ids + done) != GS_OK) {
			if (tty)
				fputc('\n', stderr);
			fprintf(stderr, "gsched submit: %s%s\n", gs_client_error(cl),
			        done ? " (tasks already submitted stay queued)" : "");
			status = 1;
			break;
		}
		done += m;
		if (tty)
			progress("submitted", done, n);
	}
	if (!wait)
		for (size_t i = 0; i < done; i++)
			printf("%016" PRIx64 "\n", ids[i]);
	fflush(stdout);
	if (status == 0 && done < n) {
		fprintf(stderr, "gsched submit: interrupted after %zu of %zu tasks\n", done, n);
		status = 1;
	}
	if (status == 0 && wait)
		status = wait_and_print(cl, ids, done, stop, tty);
	free(ids);
	free(specs);
	free(sh);
	for (size_t i = 0; lines && i < n; i++)
		free(lines[i]);
	free(lines);
	gs_client_close(cl);
	return status;
}

/* --- wait, status, cancel ------------------------------------------------ */

/* Parses [--server ADDR] [--all] [--help] and the security flags (--all only
 * if all is not NULL); --help prints "usage: gsched CMD [--server ADDR] ...
 * TAIL" and help.  Returns -1 to go on (optind: the first operand), else an
 * exit status. */
static int parse_flags(const char *cmd, const char *tail, const char *help, int argc, char **argv,
                       const char **server, bool *all)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"all", no_argument, NULL, 'a'},
	    {"help", no_argument, NULL, 'h'},
	    GS_CLI_SEC_OPTIONS,
	    {0, 0, 0, 0},
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (gs_cli_sec_opt(&g_sec, c, optarg)) {
			continue;
		} else if (c == 's') {
			*server = optarg;
		} else if (c == 'a' && all) {
			*all = true;
		} else if (c == 'h') {
			printf("usage: gsched %s [--server ADDR] " GS_CLI_SEC_USAGE "%s\n%s", cmd,
			       tail, help);
			return 0;
		} else {
			fprintf(stderr, "gsched %s: bad option '%s'\n", cmd, argv[optind - 1]);
			return 2;
		}
	}
	return -1;
}

/* Parses [--server ADDR] [--help] then IDs, and connects.  Returns -1 to go
 * on (*cl and *ids to free), else an exit status. */
static int start_id_cmd(const char *cmd, const char *help, int argc, char **argv,
                        struct gs_client **cl, uint64_t **ids, size_t *n)
{
	const char *server = NULL;
	int rc = parse_flags(cmd, " ID...", help, argc, argv, &server, NULL);
	if (rc >= 0)
		return rc;
	rc = parse_ids(cmd, argc, argv, optind, ids, n);
	if (rc)
		return rc;
	*cl = cli_connect(server);
	if (!*cl) {
		free(*ids);
		return 1;
	}
	return -1;
}

int gs_cli_wait(int argc, char **argv, volatile sig_atomic_t *stop)
{
	struct gs_client *cl = NULL;
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = start_id_cmd(
	    "wait", "Waits for the tasks and prints their output; exits 1 if any failed.\n", argc,
	    argv, &cl, &ids, &n);
	if (rc >= 0)
		return rc;
	rc = wait_and_print(cl, ids, n, stop, false);
	gs_client_close(cl);
	free(ids);
	return rc;
}

int gs_cli_status(int argc, char **argv, volatile sig_atomic_t *stop)
{
	(void)stop;
	struct gs_client *cl = NULL;
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc =
	    start_id_cmd("status", "Shows the tasks' state (without fetching their results).\n",
	                 argc, argv, &cl, &ids, &n);
	if (rc >= 0)
		return rc;
	struct gs_client_result *r = calloc(n, sizeof(*r));
	rc = r ? gs_client_get(cl, ids, n, false, r) : GS_ENOMEM;
	int status = 0;
	if (rc != GS_OK) {
		fprintf(stderr, "gsched status: %s\n", gs_client_error(cl));
		status = 1;
	} else {
		printf("%-16s  %-9s  %-8s  %3s  %4s  %-16s  %8s  %8s  %s\n", "ID", "STATE", "QUEUE",
		       "PRI", "EXIT", "WORKER", "QUEUE_MS", "RUN_MS", "ERROR");
		for (size_t i = 0; i < n; i++) {
			const struct gs_client_result *x = &r[i];
			if (x->state == GS_CLIENT_UNKNOWN)
				status = 1;
			char exitb[16] = "-";
			if (x->state == GS_CLIENT_DONE)
				snprintf(exitb, sizeof(exitb), "%d", x->exit_code);
			printf("%016" PRIx64 "  %-9s  %-8s  %3" PRIu32 "  %4s  %016" PRIx64
			       "  %8.1f  %8.1f  %s\n",
			       x->id, gs_client_state_name(x->state), x->queue ? x->queue : "",
			       x->priority, exitb, x->worker_id,
			       ms_between(x->submitted_us, x->assigned_us),
			       ms_between(x->started_us, x->finished_us), x->error ? x->error : "");
		}
	}
	gs_client_results_free(r, r && rc == GS_OK ? n : 0);
	free(r);
	free(ids);
	gs_client_close(cl);
	return status;
}

int gs_cli_cancel(int argc, char **argv, volatile sig_atomic_t *stop)
{
	(void)stop;
	static const char *const names[] = {"?", "cancelled", "cancel requested",
	                                    "already finished", "not found"};
	struct gs_client *cl = NULL;
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = start_id_cmd(
	    "cancel", "Cancels the tasks (queued ones at once, running ones on their worker).\n",
	    argc, argv, &cl, &ids, &n);
	if (rc >= 0)
		return rc;
	int *out = calloc(n, sizeof(*out)), *st = calloc(n, sizeof(*st));
	rc = out && st ? gs_client_cancel(cl, ids, n, out, st) : GS_ENOMEM;
	int status = 0;
	if (rc != GS_OK) {
		fprintf(stderr, "gsched cancel: %s\n", gs_client_error(cl));
		status = 1;
	} else {
		for (size_t i = 0; i < n; i++) {
			int o = out[i] >= 1 && out[i] <= 4 ? out[i] : 0;
			printf("%016" PRIx64 "  %-16s  %s\n", ids[i], names[o],
			       gs_client_state_name(st[i]));
			if (o == GS_CLIENT_CANCEL_NOT_FOUND || o == 0)
				status = 1;
		}
	}
	free(out);
	free(st);
	free(ids);
	gs_client_close(cl);
	return status;
}

/* --- workers, stats ------------------------------------------------------ */

/* Parses [--server ADDR] [--all] [--help] and no operand, and connects.
 * Returns -1 to go on (*cl to close), else an exit status. */
static int start_server_cmd(const char *cmd, const char *extra, int argc, char **argv, bool *all,
                            struct gs_client **cl)
{
	const char *server = NULL;
	int rc = parse_flags(cmd, extra, "", argc, argv, &server, all);
	if (rc >= 0)
		return rc;
	if (optind != argc) {
		fprintf(stderr, "gsched %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return 2;
	}
	*cl = cli_connect(server);
	return *cl ? -1 : 1;
}

int gs_cli_workers(int argc, char **argv, volatile sig_atomic_t *stop)
{
	(void)stop;
	static const char *const states[] = {"?", "alive", "draining", "dead"};
	struct gs_client *cl = NULL;
	bool all = false;
	int rc = start_server_cmd("workers", " [--all]   (--all: also recently dead ones)", argc,
	                          argv, &all, &cl);
	if (rc >= 0)
		return rc;
	struct gs_client_worker *w = NULL;
	size_t n = 0;
	if (gs_client_list_workers(cl, all, &w, &n) != GS_OK) {
		fprintf(stderr, "gsched workers: %s\n", gs_client_error(cl));
		gs_client_close(cl);
		return 1;
	}
	printf("%-16s  %-20s  %-8s  %5s  %7s  %8s  %6s  %-21s  %s\n", "ID", "NAME", "STATE",
	       "SLOTS", "RUNNING", "DONE", "FAILED", "PEER", "QUEUES");
	for (size_t i = 0; i < n; i++)
		printf("%016" PRIx64 "  %-20s  %-8s  %5" PRIu32 "  %7" PRIu32 "  %8" PRIu64
		       "  %6" PRIu64 "  %-21s  %s\n",
		       w[i].id, w[i].name,
		       states[w[i].state >= 1 && w[i].state <= 3 ? w[i].state : 0], w[i].slots,
		       w[i].running, w[i].tasks_done, w[i].tasks_failed, w[i].peer,
		       w[i].queues[0] ? w[i].queues : "default");
	gs_client_workers_free(w, n);
	gs_client_close(cl);
	return 0;
}

int gs_cli_stats(int argc, char **argv, volatile sig_atomic_t *stop)
{
	(void)stop;
	struct gs_client *cl = NULL;
	int rc = start_server_cmd("stats", "", argc, argv, NULL, &cl);
	if (rc >= 0)
		return rc;
	struct gs_client_stats s;
	if (gs_client_stats(cl, &s) != GS_OK) {
		fprintf(stderr, "gsched stats: %s\n", gs_client_error(cl));
		gs_client_close(cl);
		return 1;
	}
	printf("uptime %.1f s, %" PRIu32 " workers alive, task slots %" PRIu64 "/%" PRIu64
	       " in use\n\n",
	       (double)s.uptime_ms / 1000.0, s.workers_alive, s.tasks_in_use, s.tasks_capacity);
	printf("%-12s  %7s  %7s  %8s  %7s  %10s  %10s  %8s  %9s  %7s\n", "QUEUE", "QUEUED",
	       "DELAYED", "ASSIGNED", "RUNNING", "SUBMITTED", "DONE", "FAILED", "CANCELLED",
	       "RETRIED");
	for (size_t i = 0; i < s.n_queues; i++) {
		const struct gs_client_queue_stats *q = &s.queues[i];
		printf("%-12s  %7" PRIu64 "  %7" PRIu64 "  %8" PRIu64 "  %7" PRIu64 "  %10" PRIu64
		       "  %10" PRIu64 "  %8" PRIu64 "  %9" PRIu64 "  %7" PRIu64 "\n",
		       q->queue, q->queued, q->delayed, q->assigned, q->running, q->submitted_total,
		       q->done_total, q->failed_total, q->cancelled_total, q->retried_total);
	}
	gs_client_stats_free(&s);
	gs_client_close(cl);
	return 0;
}

/* --- watch ---------------------------------------------------------------- */

struct watch_out {
	bool output;       /* print final events' output */
	const char *queue; /* a queue watch */
	pthread_mutex_t mu;
};

/* A queue watch is in place: say so on stderr (stdout has only events). */
static void watch_ready(void *ud)
{
	struct watch_out *o = ud;
	fprintf(stderr, "gsched watch: watching queue %s\n", o->queue ? o->queue : "default");
}

/* One line per event (the watch's thread); a final one with --output is
 * followed by the task's output. */
static void watch_event(void *ud, const struct gs_client_result *r, uint64_t at_us)
{
	struct watch_out *o = ud;
	bool final = r->state == GS_CLIENT_DONE || r->state == GS_CLIENT_FAILED ||
	             r->state == GS_CLIENT_CANCELLED;
	pthread_mutex_lock(&o->mu);
	printf("%016" PRIx64 " %-9s attempt %u", r->id, gs_client_state_name(r->state),
	       r->attempts);
	if (r->worker_id)
		printf(" worker %016" PRIx64, r->worker_id);
	if (final)
		printf(" exit %d", r->exit_code);
	if (final && r->error && r->error[0])
		printf(" error \"%s\"", r->error);
	printf(" at %" PRIu64 ".%06" PRIu64 "\n", at_us / 1000000, at_us % 1000000);
	if (final && o->output && r->output_len) {
		fwrite(r->output, 1, r->output_len, stdout);
		if (r->output[r->output_len - 1] != '\n')
			putchar('\n');
	}
	fflush(stdout);
	pthread_mutex_unlock(&o->mu);
}

int gs_cli_watch(int argc, char **argv, volatile sig_atomic_t *stop)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"queue", required_argument, NULL, 'q'},
	    {"output", no_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    GS_CLI_SEC_OPTIONS,
	    {0, 0, 0, 0},
	};
	const char *server = NULL, *queue = NULL;
	struct watch_out o = {.output = false, .queue = NULL};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (gs_cli_sec_opt(&g_sec, c, optarg)) {
			continue;
		} else if (c == 's') {
			server = optarg;
		} else if (c == 'q') {
			queue = optarg;
		} else if (c == 'o') {
			o.output = true;
		} else if (c == 'h') {
			printf(
			    "usage: gsched watch [--server ADDR] " GS_CLI_SEC_USAGE
			    " [--output] (ID... | --queue Q)\n"
			    "Prints each state change of the tasks, one line each (ID, state, "
			    "attempt,\n"
			    "worker, and on a final state the exit code and error; with --output, "
			    "the\n"
			    "output follows).  With IDs it ends after their final states; with "
			    "--queue\n"
			    "it prints every task of the queue from now on, until interrupted.\n");
			return 0;
		} else {
			fprintf(stderr, "gsched watch: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	uint64_t *ids = NULL;
	size_t n = 0;
	if (optind < argc) {
		if (queue) {
			fprintf(stderr, "gsched watch: give IDs or --queue, not both\n");
			return 2;
		}
		int rc = parse_ids("watch", argc, argv, optind, &ids, &n);
		if (rc)
			return rc;
	} else if (!queue) {
		fprintf(stderr, "gsched watch: give task IDs or --queue Q (see --help)\n");
		return 2;
	}
	struct gs_client *cl = cli_connect(server);
	if (!cl) {
		free(ids);
		return 1;
	}
	pthread_mutex_init(&o.mu, NULL);
	o.queue = queue;
	struct gs_client_stream *w = NULL;
	int rc =
	    gs_client_watch_open(cl, queue, ids, n, o.output, watch_event, watch_ready, &o, &w);
	if (rc != GS_OK) {
		fprintf(stderr, "gsched watch: %s\n", gs_client_error(cl));
	} else {
		/* Until the stream ends (IDs: after their final states) or a signal. */
		do
			rc = gs_client_stream_wait(w, 200);
		while (rc == GS_ETIMEOUT && !*stop);
		if (rc != GS_OK && rc != GS_ETIMEOUT)
			fprintf(stderr, "gsched watch: %s\n", gs_client_stream_error(w));
		gs_client_stream_destroy(w);
	}
	pthread_mutex_destroy(&o.mu);
	gs_client_close(cl);
	free(ids);
	return rc == GS_OK || (rc == GS_ETIMEOUT && *stop) ? 0 : 1;
}
