/*
 * cli_worker.c - `gsched worker`: runs a worker agent (worker_agent.h) until
 * SIGINT/SIGTERM or a drain from the server.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gs_error.h"
#include "rpc_tls.h"
#include "worker_agent.h"

/* The agent reads its stop flag as an int; sig_atomic_t is int on every
 * platform gsched builds on (Linux). */
_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "sig_atomic_t is not an int");

#define GS_CLI_WORKER_MAX_QUEUES 64

static void worker_usage(FILE *f)
{
	fprintf(f, "usage: gsched worker [--server ADDR] [--slots N] [--queue Q]... [--name NAME]\n"
	           "                     [--max-output BYTES] [--grace-ms MS] [--busy-poll-us N] "
	           "[--quiet]\n"
	           "                     " GS_CLI_SEC_USAGE "\n"
	           "\n"
	           "Runs tasks for the server: --slots at once (default 4), from the\n"
	           "given queues (default: \"default\").  Reconnects when the server goes\n"
	           "away; SIGINT/SIGTERM lets running tasks finish within --grace-ms.\n"
	           "--token-file (else $GSCHED_TOKEN_FILE) holds the server's worker token;\n"
	           "a refused token ends the worker (exit status 1).\n");
}

int gs_cli_worker(int argc, char **argv, volatile sig_atomic_t *stop)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"slots", required_argument, NULL, 'n'},
	    {"queue", required_argument, NULL, 'q'},
	    {"name", required_argument, NULL, 'N'},
	    {"max-output", required_argument, NULL, 'o'},
	    {"grace-ms", required_argument, NULL, 'g'},
	    {"busy-poll-us", required_argument, NULL, 'b'},
	    {"quiet", no_argument, NULL, 'Q'},
	    {"help", no_argument, NULL, 'h'},
	    GS_CLI_SEC_OPTIONS,
	    {0, 0, 0, 0},
	};
	const char *server = NULL, *queues[GS_CLI_WORKER_MAX_QUEUES];
	struct gs_cli_sec sec = {0};
	struct gs_worker_opts o = {.slots = 4, .grace_ms = 10000};
	unsigned long v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (gs_cli_sec_opt(&sec, c, optarg))
			continue;
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'N':
			o.name = optarg;
			break;
		case 'Q':
			o.quiet = 1;
			break;
		case 'q':
			if (o.n_queues == GS_CLI_WORKER_MAX_QUEUES) {
				fprintf(stderr, "gsched worker: at most %d --queue\n",
				        GS_CLI_WORKER_MAX_QUEUES);
				return 2;
			}
			queues[o.n_queues++] = optarg;
			break;
		case 'b':
			if (gs_cli_parse_num(optarg, 100000, &v) != 0) {
				fprintf(stderr, "gsched worker: --busy-poll-us is 0..100000\n");
				return 2;
			}
			o.busy_poll_us = (unsigned)v;
			break;
		case 'n':
			if (gs_cli_parse_num(optarg, 1024, &v) != 0 || v == 0) {
				fprintf(stderr, "gsched worker: --slots needs a number 1..1024\n");
				return 2;
			}
			o.slots = (unsigned)v;
			break;
		case 'o':
			if (gs_cli_parse_num(optarg, 1ul << 30, &v) != 0) {
				fprintf(stderr, "gsched worker: bad --max-output '%s'\n", optarg);
				return 2;
			}
			o.max_output = v;
			break;
		case 'g':
			if (gs_cli_parse_num(optarg, 3600000, &v) != 0) {
				fprintf(stderr, "gsched worker: bad --grace-ms '%s'\n", optarg);
				return 2;
			}
			o.grace_ms = (int)v;
			break;
		case 'h':
			worker_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "gsched worker: bad option '%s'\n", argv[optind - 1]);
			worker_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gsched worker: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	char *token = NULL;
	if (gs_cli_sec_load("gsched worker", &sec, &token) != 0)
		return 1;
	o.server = gs_cli_server_addr(server);
	o.queues = queues;
	o.stop = (volatile int *)stop;
	o.token = token;
	o.tls = sec.tls;
	o.tls_ca_file = sec.tls_ca;
	o.tls_cert_file = sec.tls_cert;
	o.tls_key_file = sec.tls_key;
	int rc = gs_worker_agent_run(&o);
	gs_rpc_token_free(token);
	if (rc == GS_EINVAL) {
		fprintf(stderr, "gsched worker: invalid options (slots %u)\n", o.slots);
		return 2;
	}
	if (rc == GS_EAUTH)
		return 1; /* the agent said why */
	if (rc != GS_OK) {
		fprintf(stderr, "gsched worker: %s\n", gs_strerror(rc));
		return 1;
	}
	return 0;
}
