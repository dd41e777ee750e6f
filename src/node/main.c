/*
 * main.c - the `gsched` binary: one entry point per subcommand.
 *
 * This is the process entry point, so it alone holds process-wide state: the
 * stop flag set by SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: gsched <command> [options]\n"
	        "\n"
	        "  server   run the scheduler (PLM, Main Scheduler, Register)\n"
	        "  worker   run a worker that executes tasks\n"
	        "  local    a server and N workers in one command (the embedded default)\n"
	        "  submit   submit tasks (a command, a handler call, or --file)\n"
	        "  wait     wait for tasks and print their output\n"
	        "  status   show the state of tasks\n"
	        "  cancel   cancel tasks\n"
	        "  watch    print the state changes of tasks, or of a whole queue\n"
	        "  workers  list the workers\n"
	        "  stats    per-queue counters\n"
	        "  bench    load generator: latency, throughput, concurrent streams\n"
	        "\n"
	        "`gsched <command> --help` describes each.  The server address comes from\n"
	        "--server, else $GSCHED_SERVER, else %s.\n",
	        GS_CLI_DEFAULT_SERVER);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv, volatile sig_atomic_t *stop);
	} cmds[] = {
	    {"server", gs_cli_server}, {"worker", gs_cli_worker},   {"local", gs_cli_local},
	    {"submit", gs_cli_submit}, {"wait", gs_cli_wait},       {"status", gs_cli_status},
	    {"cancel", gs_cli_cancel}, {"workers", gs_cli_workers}, {"stats", gs_cli_stats},
	    {"watch", gs_cli_watch},   {"bench", gs_cli_bench},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1, &g_stop);
	fprintf(stderr, "gsched: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
