/*
 * cli.h - the gsched subcommands.  Each takes its own argv (argv[0] is the
 * subcommand's name), returns the process exit status (0 ok, 1 a task or call
 * failed, 2 bad usage), and stops early when *stop becomes non-zero.
 */
#ifndef GS_CLI_H
#define GS_CLI_H

#include <signal.h>

#define GS_CLI_DEFAULT_SERVER "127.0.0.1:7070"

int gs_cli_server(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_worker(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_local(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_submit(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_wait(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_status(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_cancel(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_workers(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_stats(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_bench(int argc, char **argv, volatile sig_atomic_t *stop);

/* The server address: --server's value, else $GSCHED_SERVER, else the default. */
const char *gs_cli_server_addr(const char *flag);

#endif /* GS_CLI_H */
