/*
 * e2e_util.h - the real-process harness shared by the end-to-end tests
 * (tests/node/test_*.c, tests/chaos): clocks, a free loopback port, and
 * `gsched` child processes started, tracked, reaped and killed.
 *
 * It owns the test's temporary directory (/tmp/gsched-TAG-PID: process logs,
 * and whatever the test puts there) and a table of every child it started.
 * gs_e2e_kill_all() ends them all (SIGTERM, then SIGKILL after a 3 s grace);
 * gs_e2e_init() registers it with atexit so a test that aborts leaves nothing
 * running, and each child also dies with the test (PR_SET_PDEATHSIG).  Every
 * wait here is bounded.  Failures are reported through cmocka (fail_msg,
 * assert_*), so the calls belong inside tests, setups and teardowns.
 */
#ifndef GS_E2E_UTIL_H
#define GS_E2E_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct gs_client;

/* Sets the gsched binary (argv[1], else $GSCHED_BIN, else the GSCHED_BIN the
 * build defines), makes the directory /tmp/gsched-TAG-PID with mode, kills
 * every child at exit and ignores SIGPIPE.  prog names the test in messages.
 * Returns 0, or -1 (after perror) if the directory cannot be made. */
int gs_e2e_init(const char *prog, const char *tag, mode_t mode, int argc, char **argv);

/* Kills every child, then removes the directory if failed is 0 (it is kept
 * for a look otherwise).  Returns main's exit code: 1 if failed, else 0. */
int gs_e2e_finish(int failed);

const char *gs_e2e_bin(void);
const char *gs_e2e_dir(void);

uint64_t gs_e2e_mono_ms(void);
void gs_e2e_sleep_ms(int ms);

/* A port on 127.0.0.1 that was free a moment ago (bound to 0, then closed). */
int gs_e2e_free_port(void);

/* Starts `gsched ARGS...` (args: NULL-terminated, at most 38) with stdout and
 * stderr appended to DIR/name.log, and tracks it until it is reaped. */
pid_t gs_e2e_spawn(const char *name, const char *const *args);

/* gs_e2e_spawn with GSCHED_TOKEN_FILE and GSCHED_TLS_CA removed from the
 * child's environment, then GSCHED_TOKEN_FILE set to token_file if not NULL. */
pid_t gs_e2e_spawn_clean(const char *name, const char *const *args, const char *token_file);

/* Waits up to ms for pid to exit; returns its wait status (and stops
 * tracking it), or -1. */
int gs_e2e_wait_exit(pid_t pid, int ms);

/* Ends every tracked child: SIGTERM to all, then SIGKILL to any still there
 * after 3 s.  Safe to call more than once. */
void gs_e2e_kill_all(void);

/* Connects to a server that may still be starting: retries every 20 ms for
 * up to ms.  Returns the client, or NULL. */
struct gs_client *gs_e2e_connect(const char *addr, int ms);

/* Waits up to ms until the server lists at least want live workers;
 * fail_msg otherwise. */
void gs_e2e_wait_workers(struct gs_client *c, size_t want, int ms);

/* A process's resident set in KiB (VmRSS of /proc/PID/status), or 0. */
uint64_t gs_e2e_rss_kib(pid_t pid);

#endif
