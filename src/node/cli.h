/*
 * cli.h - the gsched subcommands.  Each takes its own argv (argv[0] is the
 * subcommand's name), returns the process exit status (0 ok, 1 a task or call
 * failed, 2 bad usage), and stops early when *stop becomes non-zero.
 */
#ifndef GS_CLI_H
#define GS_CLI_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

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
int gs_cli_watch(int argc, char **argv, volatile sig_atomic_t *stop);
int gs_cli_bench(int argc, char **argv, volatile sig_atomic_t *stop);

/* The server address: --server's value, else $GSCHED_SERVER, else the default. */
const char *gs_cli_server_addr(const char *flag);

/* The security flags of the client subcommands and `gsched worker`:
 * --token-file F (else $GSCHED_TOKEN_FILE): the bearer token;
 * --tls: TLS with gRPC's default roots; --tls-ca F (else $GSCHED_TLS_CA):
 * TLS verifying the server with these CAs; --tls-cert F --tls-key F: a
 * client certificate (mutual TLS). */
struct gs_cli_sec {
	const char *token_file;
	const char *tls_ca, *tls_cert, *tls_key;
	int tls;
};

#define GS_CLI_SEC_OPT 0x1000 /* getopt values GS_CLI_SEC_OPT..+4 */
#define GS_CLI_SEC_OPTIONS                                                                         \
	{"token-file", required_argument, NULL, GS_CLI_SEC_OPT},                                   \
	    {"tls-ca", required_argument, NULL, GS_CLI_SEC_OPT + 1},                               \
	    {"tls-cert", required_argument, NULL, GS_CLI_SEC_OPT + 2},                             \
	    {"tls-key", required_argument, NULL, GS_CLI_SEC_OPT + 3},                              \
	{                                                                                          \
		"tls", no_argument, NULL, GS_CLI_SEC_OPT + 4                                       \
	}
#define GS_CLI_SEC_USAGE "[--token-file F] [--tls] [--tls-ca F] [--tls-cert F --tls-key F]"

/* Takes getopt's value c: 1 if it was one of GS_CLI_SEC_OPTIONS (stored). */
int gs_cli_sec_opt(struct gs_cli_sec *s, int c, const char *arg);
/* Applies the environment defaults and reads the token file (*token: NULL
 * if none; free with gs_rpc_token_free).  On a bad setting prints one line
 * on stderr, prefixed with cmd, naming the file but never its contents, and
 * returns non-zero. */
int gs_cli_sec_load(const char *cmd, struct gs_cli_sec *s, char **token);

/* Shared by the subcommands (cli_common.c, with the above). */

/* A decimal number in 0..max (no sign, nothing after it): 0, else -1. */
int gs_cli_parse_num(const char *s, unsigned long max, unsigned long *out);
/* CLOCK_MONOTONIC in microseconds. */
uint64_t gs_cli_mono_us(void);
void gs_cli_sleep_ms(int ms);
/* pthread_cond_timedwait on cv (mu held) for at most ms (below 1000). */
void gs_cli_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms);

#endif /* GS_CLI_H */
