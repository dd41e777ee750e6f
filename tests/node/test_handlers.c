/* test_handlers.c - the built-in handler registry, in isolation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gs_error.h"
#include "handlers.h"

static void run(const char *name, const char *payload, size_t max, struct gs_handlers_out *out,
                int want_rc)
{
	gs_handlers_out_init(out, max);
	assert_int_equal(gs_handlers_run(name, payload, payload ? strlen(payload) : 0, out),
	                 want_rc);
}

static void test_registry(void **state)
{
	(void)state;
	assert_true(gs_handlers_exists("noop"));
	assert_true(gs_handlers_exists("echo"));
	assert_true(gs_handlers_exists("sleep"));
	assert_false(gs_handlers_exists("nope"));
	assert_false(gs_handlers_exists(""));
	assert_false(gs_handlers_exists(NULL));
	size_t n = 0;
	while (gs_handlers_name(n))
		assert_true(gs_handlers_exists(gs_handlers_name(n++)));
	assert_int_equal(n, 3);
}

static void test_noop_echo(void **state)
{
	(void)state;
	struct gs_handlers_out o;
	run("noop", "ignored", 100, &o, GS_OK);
	assert_int_equal(o.len, 0);
	assert_string_equal(o.error, "");
	assert_int_equal(o.delay_ms, 0);
	gs_handlers_out_free(&o);

	run("echo", "hello", 100, &o, GS_OK);
	assert_int_equal(o.len, 5);
	assert_memory_equal(o.data, "hello", 5);
	assert_false(o.truncated);
	gs_handlers_out_free(&o);

	run("echo", "0123456789", 4, &o, GS_OK);
	assert_int_equal(o.len, 4);
	assert_memory_equal(o.data, "0123", 4);
	assert_true(o.truncated);
	assert_string_equal(o.error, "");
	gs_handlers_out_free(&o);

	run("echo", NULL, 100, &o, GS_OK); /* empty payload */
	assert_int_equal(o.len, 0);
	gs_handlers_out_free(&o);
}

static void test_sleep_payloads(void **state)
{
	(void)state;
	static const struct {
		const char *p;
		long long ms; /* -1: must fail */
	} cases[] = {
	    {"100", 100},  {" 250\n", 250}, {"0", 0},         {"86400000", 86400000},
	    {"", -1},      {"  ", -1},      {"-1", -1},       {"1e3", -1},
	    {"10 ms", -1}, {"abc", -1},     {"86400001", -1}, {"99999999999999999999999", -1},
	    {"+5", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gs_handlers_out o;
		run("sleep", cases[i].p, 100, &o, GS_OK);
		if (cases[i].ms < 0) {
			assert_true(strncmp(o.error, "sleep: ", 7) == 0);
			assert_int_equal(o.delay_ms, 0);
		} else {
			assert_string_equal(o.error, "");
			assert_int_equal(o.delay_ms, (uint64_t)cases[i].ms);
		}
		gs_handlers_out_free(&o);
	}
	/* Binary garbage is rendered printable in the message. */
	struct gs_handlers_out o;
	gs_handlers_out_init(&o, 100);
	const uint8_t junk[] = {'1', 0, 0xff, '\n', 'x'};
	assert_int_equal(gs_handlers_run("sleep", junk, sizeof(junk), &o), GS_OK);
	assert_non_null(strstr(o.error, "got '1???x'"));
	gs_handlers_out_free(&o);
}

static void test_unknown_and_bad_args(void **state)
{
	(void)state;
	struct gs_handlers_out o;
	run("frobnicate", "x", 100, &o, GS_ENOTFOUND);
	assert_string_equal(o.error, "unknown handler 'frobnicate'");
	gs_handlers_out_free(&o);

	gs_handlers_out_init(&o, 100);
	assert_int_equal(gs_handlers_run(NULL, "x", 1, &o), GS_EINVAL);
	assert_int_equal(gs_handlers_run("echo", "x", 1, NULL), GS_EINVAL);
	assert_int_equal(gs_handlers_run("echo", NULL, 3, &o), GS_EINVAL);
	assert_int_equal(gs_handlers_out_write(NULL, "x", 1), GS_EINVAL);
	assert_int_equal(gs_handlers_out_write(&o, NULL, 1), GS_EINVAL);
	assert_int_equal(o.len, 0);
	/* Writes accumulate up to max, then truncate. */
	for (int i = 0; i < 30; i++)
		assert_int_equal(gs_handlers_out_write(&o, "abcd", 4), GS_OK);
	assert_int_equal(o.len, 100);
	assert_true(o.truncated);
	gs_handlers_out_free(&o);
	gs_handlers_out_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_registry),
	    cmocka_unit_test(test_noop_echo),
	    cmocka_unit_test(test_sleep_payloads),
	    cmocka_unit_test(test_unknown_and_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
