/* cli_server.c - `gsched server`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "gs_error.h"
#include "server.h"

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
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
		{"help", no_argument, NULL, 'H'},
		{0, 0, 0, 0},
	};
	gs_server_opts o = {.listen = "127.0.0.1:7070", .stop = stop};
	uint32_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case 's':
			o.segment = optarg;
			break;
		case 'H':
			printf("usage: gsched server [--listen ADDR] [--segment NAME] "
			       "[--max-tasks N] [--max-workers N]\n"
			       "                     [--heartbeat-ms N] [--worker-timeout-ms N] "
			       "[--result-ttl-ms N] [--grace-ms N]\n");
			return 0;
		default:
			if (!optarg || parse_u32(optarg, &v) != 0) {
				fprintf(stderr, "gsched server: bad value for --%s\n",
					c == '?' ? "option" : opts[0].name);
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
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gsched server: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return gs_server_run(&o) == GS_OK ? 0 : 1;
}
