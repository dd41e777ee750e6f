/*
 * e2e_util.c - the real-process harness of the end-to-end tests; see
 * e2e_util.h.  GSCHED_BIN (the default binary) comes from the test target.
 */
#include "e2e_util.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gsched_client.h"

#define MAX_PROCS 16
#define MAX_ARGS  40

static const char *g_bin = GSCHED_BIN;
static const char *g_prog = "e2e";
static char g_dir[256];
static pid_t g_pids[MAX_PROCS];

int gs_e2e_init(const char *prog, const char *tag, mode_t mode, int argc, char **argv)
{
	g_prog = prog;
	if (argc > 1)
		g_bin = argv[1];
	else if (getenv("GSCHED_BIN"))
		g_bin = getenv("GSCHED_BIN");
	snprintf(g_dir, sizeof(g_dir), "/tmp/gsched-%s-%d", tag, (int)getpid());
	if (mkdir(g_dir, mode) != 0 && errno != EEXIST) {
		perror("mkdir");
		return -1;
	}
	atexit(gs_e2e_kill_all);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int gs_e2e_finish(int failed)
{
	gs_e2e_kill_all();
	if (!failed) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "%s: could not remove %s\n", g_prog, g_dir);
	}
	return failed ? 1 : 0;
}

const char *gs_e2e_bin(void)
{
	return g_bin;
}

const char *gs_e2e_dir(void)
{
	return g_dir;
}

uint64_t gs_e2e_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void gs_e2e_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int gs_e2e_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void track(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (!g_pids[i]) {
			g_pids[i] = pid;
			return;
		}
	kill(pid, SIGKILL);
	fail_msg("too many processes");
}

static void untrack(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (g_pids[i] == pid)
			g_pids[i] = 0;
}

static pid_t spawn(const char *name, const char *const *args, bool clean_env,
                   const char *token_file)
{
	char log[512];
	snprintf(log, sizeof(log), "%s/%s.log", g_dir, name);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
			close(fd);
		}
		if (clean_env) {
			unsetenv("GSCHED_TOKEN_FILE");
			unsetenv("GSCHED_TLS_CA");
			if (token_file)
				setenv("GSCHED_TOKEN_FILE", token_file, 1);
		}
		char *argv[MAX_ARGS];
		int n = 0;
		argv[n++] = (char *)g_bin;
		for (; args[n - 1] && n < MAX_ARGS - 1; n++)
			argv[n] = (char *)args[n - 1];
		argv[n] = NULL;
		execv(g_bin, argv);
		_exit(127);
	}
	track(pid);
	return pid;
}

pid_t gs_e2e_spawn(const char *name, const char *const *args)
{
	return spawn(name, args, false, NULL);
}

pid_t gs_e2e_spawn_clean(const char *name, const char *const *args, const char *token_file)
{
	return spawn(name, args, true, token_file);
}

int gs_e2e_wait_exit(pid_t pid, int ms)
{
	uint64_t end = gs_e2e_mono_ms() + (uint64_t)ms;
	int st;
	do {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			untrack(pid);
			return st;
		}
		if (r < 0)
			return -1;
		gs_e2e_sleep_ms(10);
	} while (gs_e2e_mono_ms() < end);
	return -1;
}

void gs_e2e_kill_all(void)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (g_pids[i] > 0)
			kill(g_pids[i], SIGTERM);
	for (int i = 0; i < MAX_PROCS; i++)
		if (g_pids[i] > 0 && gs_e2e_wait_exit(g_pids[i], 3000) == -1 && g_pids[i] > 0) {
			kill(g_pids[i], SIGKILL);
			waitpid(g_pids[i], NULL, 0);
			g_pids[i] = 0;
		}
}

struct gs_client *gs_e2e_connect(const char *addr, int ms)
{
	struct gs_client *c = NULL;
	uint64_t end = gs_e2e_mono_ms() + (uint64_t)ms;
	struct gs_client_opts o = {.connect_timeout_ms = 1000};
	while (gs_client_connect(addr, &o, &c) != GS_OK && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(20);
	return c;
}

void gs_e2e_wait_workers(struct gs_client *c, size_t want, int ms)
{
	uint64_t end = gs_e2e_mono_ms() + (uint64_t)ms;
	size_t n = 0;
	for (int i = 0; i < 100000; i++) {
		struct gs_client_worker *w = NULL;
		n = 0;
		if (gs_client_list_workers(c, false, &w, &n) == GS_OK)
			gs_client_workers_free(w, n);
		else
			n = 0;
		if (n >= want)
			return;
		if (gs_e2e_mono_ms() > end)
			break;
		gs_e2e_sleep_ms(20);
	}
	fail_msg("%zu of %zu workers registered within %d ms", n, want, ms);
}

uint64_t gs_e2e_rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	uint64_t kib = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
			break;
	fclose(f);
	return kib;
}
