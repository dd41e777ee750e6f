/*
 * cli_common.c - helpers shared by the subcommands (declared in cli.h): the
 * server address, the security flags, number parsing, clocks and bounded
 * waits.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gs_clock.h"
#include "cli.h"
#include "gs_error.h"
#include "rpc_tls.h"

const char *gs_cli_server_addr(const char *flag)
{
	if (flag && flag[0])
		return flag;
	const char *env = getenv("GSCHED_SERVER");
	return env && env[0] ? env : GS_CLI_DEFAULT_SERVER;
}

int gs_cli_sec_opt(struct gs_cli_sec *s, int c, const char *arg)
{
	switch (c) {
	case GS_CLI_SEC_OPT:
		s->token_file = arg;
		return 1;
	case GS_CLI_SEC_OPT + 1:
		s->tls_ca = arg;
		return 1;
	case GS_CLI_SEC_OPT + 2:
		s->tls_cert = arg;
		return 1;
	case GS_CLI_SEC_OPT + 3:
		s->tls_key = arg;
		return 1;
	case GS_CLI_SEC_OPT + 4:
		s->tls = 1;
		return 1;
	default:
		return 0;
	}
}

int gs_cli_sec_load(const char *cmd, struct gs_cli_sec *s, char **token)
{
	*token = NULL;
	const char *env = getenv("GSCHED_TOKEN_FILE");
	if (!s->token_file && env && env[0])
		s->token_file = env;
	env = getenv("GSCHED_TLS_CA");
	if (!s->tls_ca && env && env[0])
		s->tls_ca = env;
	if (!s->tls_cert != !s->tls_key) {
		fprintf(stderr, "%s: --tls-cert and --tls-key go together\n", cmd);
		return 1;
	}
	if (s->tls_ca || s->tls_cert)
		s->tls = 1;
	if (s->tls) {
		struct gs_rpc_tls t = {
		    .ca_file = s->tls_ca, .cert_file = s->tls_cert, .key_file = s->tls_key};
		char err[400];
		if (gs_rpc_tls_check(&t, 0, err, sizeof(err)) != GS_OK) {
			fprintf(stderr, "%s: %s\n", cmd, err);
			return 1;
		}
	}
	if (s->token_file) {
		char err[400];
		if (gs_rpc_token_read_file(s->token_file, token, NULL, err, sizeof(err)) != GS_OK) {
			fprintf(stderr, "%s: %s\n", cmd, err);
			return 1;
		}
	}
	return 0;
}

int gs_cli_parse_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return -1;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v > max)
		return -1;
	*out = v;
	return 0;
}

uint64_t gs_cli_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void gs_cli_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

void gs_cli_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms)
{
	struct timespec ts = gs_clock_after_ms(CLOCK_REALTIME, ms);
	pthread_cond_timedwait(cv, mu, &ts);
}
