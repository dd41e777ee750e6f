/*
 * cli_server.c - `gsched server`: flags to gs_server_opts.  Token files and
 * TLS files are read and checked here, before anything starts, so a bad one
 * is one clear line on stderr (naming the file, never its contents).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gs_error.h"
#include "rpc_tls.h"
#include "server.h"

/* Bounds of the limit flags (README, "Limits"). */
#define GS_CLI_DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
#define GS_CLI_MIN_MESSAGE         1024u
#define GS_CLI_MAX_MESSAGE         (1024u * 1024u * 1024u)
#define GS_CLI_MAX_LIMIT           1000000u

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Reads a token file (path NULL: no token).  Non-zero after printing why. */
static int load_token(const char *path, char **out)
{
	*out = NULL;
	if (!path)
		return 0;
	char err[400];
	bool world = false;
	if (gs_rpc_token_read_file(path, out, &world, err, sizeof(err)) != GS_OK) {
		fprintf(stderr, "gsched server: %s\n", err);
		return 1;
	}
	if (world)
		fprintf(stderr,
		        "gsched server: warning: token file %s is readable by other users "
		        "(chmod 600 it)\n",
		        path);
	return 0;
}

/* True for addresses only this machine can reach. */
static bool is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "localhost:", 10) == 0 ||
	       strncmp(addr, "[::1]:", 6) == 0 || strncmp(addr, "unix:", 5) == 0;
}

int gs_cli_server(int argc, char **argv, volatile sig_atomic_t *stop)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"segment", required_argument, NULL, 's'},
	    {"max-tasks", required_argument, NULL, 't'},
	    {"max-workers", required_argument, NULL, 'w'},
	    {"heartbeat-ms", required_argument, NULL, 'h'},
	    {"worker-timeout-ms", required_argument, NULL, 'd'},
	    {"result-ttl-ms", required_argument, NULL, 'r'},
	    {"grace-ms", required_argument, NULL, 'g'},
	    {"client-token-file", required_argument, NULL, 'C'},
	    {"worker-token-file", required_argument, NULL, 'W'},
	    {"tls-cert", required_argument, NULL, 'c'},
	    {"tls-key", required_argument, NULL, 'k'},
	    {"tls-client-ca", required_argument, NULL, 'a'},
	    {"data-dir", required_argument, NULL, 'D'},
	    {"fsync-ms", required_argument, NULL, 'f'},
	    {"busy-poll-us", required_argument, NULL, 'b'},
	    {"max-message-bytes", required_argument, NULL, 'm'},
	    {"stream-queue-bytes", required_argument, NULL, 'q'},
	    {"max-connections", required_argument, NULL, 'n'},
	    {"max-streams", required_argument, NULL, 'S'},
	    {"role", required_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'H'},
	    {0, 0, 0, 0},
	};
	gs_server_opts o = {.listen = "127.0.0.1:7070",
	                    .stop = stop,
	                    .fsync_ms = 5,
	                    .max_message_bytes = GS_CLI_DEFAULT_MAX_MESSAGE,
	                    .max_connections = GS_SERVER_DEFAULT_MAX_CONNECTIONS,
	                    .max_streams = GS_SERVER_DEFAULT_MAX_STREAMS};
	const char *client_file = NULL, *worker_file = NULL;
	struct gs_rpc_tls tls = {0};
	uint32_t v;
	int c, idx = -1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case 's':
			o.segment = optarg;
			break;
		case 'C':
			client_file = optarg;
			break;
		case 'R': {
			enum gs_role r;
			if (gs_role_parse(optarg, &r) != GS_OK) {
				fprintf(stderr,
				        "gsched server: --role is plm, scheduler or register (not "
				        "'%s')\n",
				        optarg);
				return 2;
			}
			o.role = optarg;
			break;
		}
		case 'D':
			o.data_dir = optarg;
			break;
		case 'W':
			worker_file = optarg;
			break;
		case 'c':
			tls.cert_file = optarg;
			break;
		case 'k':
			tls.key_file = optarg;
			break;
		case 'a':
			tls.ca_file = optarg;
			tls.require_client_cert = 1;
			break;
		case 'H':
			printf(
			    "usage: gsched server [--listen ADDR] [--segment NAME] "
			    "[--max-tasks N] [--max-workers N]\n"
			    "                     [--heartbeat-ms N] [--worker-timeout-ms N] "
			    "[--result-ttl-ms N] [--grace-ms N]\n"
			    "                     [--client-token-file F] [--worker-token-file F]\n"
			    "                     [--tls-cert F --tls-key F [--tls-client-ca "
			    "F]]\n"
			    "                     [--data-dir DIR [--fsync-ms N]] [--busy-poll-us "
			    "N]\n"
			    "                     [--max-message-bytes N] [--stream-queue-bytes "
			    "N]\n"
			    "                     [--max-connections N] [--max-streams N]\n"
			    "                     [--role plm|scheduler|register]\n"
			    "limits: --max-message-bytes (default 4194304, 1024..1073741824) per\n"
			    "  message; --stream-queue-bytes (default: the message limit) queued "
			    "per\n"
			    "  stream for a peer that does not read; --max-connections (default "
			    "1000)\n"
			    "  and --max-streams (default 10000) open at once, 0: no limit; calls "
			    "over\n"
			    "  a limit are refused with RESOURCE_EXHAUSTED\n"
			    "durability: none (default), --segment NAME (survives a server "
			    "crash),\n"
			    "  --data-dir DIR (a write-ahead log: survives a machine restart; a "
			    "Submit\n"
			    "  is acknowledged once on disk, synced every --fsync-ms, default 5, "
			    "0: at\n"
			    "  once)\n"
			    "roles: without --role the PLM, the scheduler and the register are "
			    "threads\n"
			    "  of this process; with --role this process runs that one role on "
			    "the\n"
			    "  --segment the others attach to (no --data-dir): clients call the "
			    "plm's\n"
			    "  --listen address, workers the register's; a role killed and "
			    "started\n"
			    "  again loses no task\n");
			return 0;
		default:
			if (c == '?' || !optarg || parse_u32(optarg, &v) != 0) {
				if (c == '?')
					fprintf(stderr, "gsched server: bad option '%s'\n",
					        argv[optind - 1]);
				else
					fprintf(stderr, "gsched server: bad value for --%s\n",
					        idx >= 0 ? opts[idx].name : "option");
				return 2;
			}
			if (c == 't')
				o.geom.max_tasks = v;
			else if (c == 'w')
				o.geom.max_workers = v;
			else if (c == 'h')
				o.heartbeat_ms = v;
			else if (c == 'd')
				o.worker_timeout_ms = v;
			else if (c == 'r')
				o.result_ttl_ms = v;
			else if (c == 'g')
				o.grace_ms = (int)v;
			else if (c == 'b') {
				if (v > 100000) {
					fprintf(stderr,
					        "gsched server: --busy-poll-us is 0..100000\n");
					return 2;
				}
				o.busy_poll_us = v;
			} else if (c == 'm') {
				if (v < GS_CLI_MIN_MESSAGE || v > GS_CLI_MAX_MESSAGE) {
					fprintf(stderr, "gsched server: --max-message-bytes is "
					                "1024..1073741824\n");
					return 2;
				}
				o.max_message_bytes = v;
			} else if (c == 'q') {
				if (v < GS_CLI_MIN_MESSAGE || v > GS_CLI_MAX_MESSAGE) {
					fprintf(stderr, "gsched server: --stream-queue-bytes is "
					                "1024..1073741824\n");
					return 2;
				}
				o.stream_queue_bytes = v;
			} else if (c == 'n') {
				if (v > GS_CLI_MAX_LIMIT) {
					fprintf(stderr,
					        "gsched server: --max-connections is 0..1000000 "
					        "(0: no limit)\n");
					return 2;
				}
				o.max_connections = v;
			} else if (c == 'S') {
				if (v > GS_CLI_MAX_LIMIT) {
					fprintf(stderr,
					        "gsched server: --max-streams is 0..1000000 "
					        "(0: no limit)\n");
					return 2;
				}
				o.max_streams = v;
			} else if (c == 'f') {
				if (v > 10000) {
					fprintf(stderr, "gsched server: --fsync-ms is 0..10000\n");
					return 2;
				}
				o.fsync_ms = (int)v;
			}
		}
	}
	if (o.stream_queue_bytes > o.max_message_bytes) {
		fprintf(stderr,
		        "gsched server: --stream-queue-bytes (%zu) exceeds --max-message-bytes "
		        "(%zu): what a stream queues goes out as one message\n",
		        o.stream_queue_bytes, o.max_message_bytes);
		return 2;
	}
	if (o.role && !o.segment) {
		fprintf(stderr, "gsched server: --role needs --segment NAME: the roles meet in "
		                "that segment\n");
		return 2;
	}
	if (o.role && o.data_dir) {
		fprintf(stderr, "gsched server: --role runs with segment durability; --data-dir "
		                "is for a server that runs every role\n");
		return 2;
	}
	if (o.data_dir && !o.data_dir[0]) {
		fprintf(stderr, "gsched server: --data-dir needs a directory\n");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "gsched server: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	bool use_tls = tls.cert_file || tls.key_file || tls.ca_file;
	char err[512];
	if (use_tls && gs_rpc_tls_check(&tls, 1, err, sizeof(err)) != GS_OK) {
		fprintf(stderr, "gsched server: %s\n", err);
		return 1;
	}
	char *client_token = NULL, *worker_token = NULL;
	if (load_token(client_file, &client_token) != 0 ||
	    load_token(worker_file, &worker_token) != 0) {
		gs_rpc_token_free(client_token);
		return 1;
	}
	if (client_token && worker_token && strcmp(client_token, worker_token) == 0) {
		fprintf(stderr, "gsched server: --client-token-file and --worker-token-file hold "
		                "the same token; they must differ\n");
		gs_rpc_token_free(client_token);
		gs_rpc_token_free(worker_token);
		return 1;
	}
	if (!client_token != !worker_token)
		fprintf(stderr,
		        "gsched server: warning: only the %s API requires a token; the "
		        "%s API is open\n",
		        client_token ? "client" : "worker", client_token ? "worker" : "client");
	if ((client_token || worker_token) && !use_tls && !is_loopback(o.listen))
		fprintf(stderr,
		        "gsched server: warning: tokens without TLS travel in clear text "
		        "on %s (add --tls-cert/--tls-key)\n",
		        o.listen);
	o.client_token = client_token;
	o.worker_token = worker_token;
	o.tls = use_tls ? &tls : NULL;
	int rc = gs_server_run(&o);
	gs_rpc_token_free(client_token);
	gs_rpc_token_free(worker_token);
	return rc == GS_OK ? 0 : 1;
}
