/*
 * test_id_map.c - the service's task ID map (src/rpc/id_map.h) against a
 * plain reference array: random puts, gets and deletes over a small key
 * space (so runs of colliding keys form and wrap), then every key checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gs_error.h"
#include "id_map.h"

#define KEYS 5000u
#define OPS  400000u

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Keys shaped like task IDs: slot in the low bits, a generation above. */
static uint64_t key_of(uint32_t i)
{
	return ((uint64_t)(i % 7 + 1) << 32) | (i / 7);
}

static void t_model(void **st)
{
	(void)st;
	gs_id_map m;
	gs_id_map_init(&m);
	static uint32_t ref[KEYS]; /* 0: absent, else value + 1 */
	memset(ref, 0, sizeof(ref));
	size_t n = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (uint32_t op = 0; op < OPS; op++) {
		uint64_t r = rng_next(&seed);
		uint32_t i = (uint32_t)(r % KEYS), v = (uint32_t)(r >> 40);
		uint32_t got;
		switch ((r >> 32) % 3) {
		case 0:
			assert_int_equal(gs_id_map_put(&m, key_of(i), v), GS_OK);
			n += ref[i] == 0;
			ref[i] = v + 1;
			break;
		case 1:
			assert_int_equal(gs_id_map_del(&m, key_of(i)), ref[i] != 0);
			n -= ref[i] != 0;
			ref[i] = 0;
			break;
		default:
			assert_int_equal(gs_id_map_get(&m, key_of(i), &got), ref[i] != 0);
			if (ref[i])
				assert_int_equal(got, ref[i] - 1);
		}
		assert_int_equal(gs_id_map_size(&m), n);
	}
	for (uint32_t i = 0; i < KEYS; i++) {
		uint32_t got;
		assert_int_equal(gs_id_map_get(&m, key_of(i), &got), ref[i] != 0);
		if (ref[i])
			assert_int_equal(got, ref[i] - 1);
	}
	gs_id_map_free(&m);
}

static void t_edges(void **st)
{
	(void)st;
	gs_id_map m;
	gs_id_map_init(&m);
	assert_false(gs_id_map_get(&m, 42, NULL)); /* empty, never allocated */
	assert_false(gs_id_map_del(&m, 42));
	assert_int_equal(gs_id_map_put(&m, 0, 1), GS_EINVAL); /* 0 is no task ID */
	assert_int_equal(gs_id_map_put(&m, 42, 1), GS_OK);
	assert_int_equal(gs_id_map_put(&m, 42, 2), GS_OK); /* overwrite, not a second entry */
	assert_int_equal(gs_id_map_size(&m), 1);
	uint32_t v = 0;
	assert_true(gs_id_map_get(&m, 42, &v));
	assert_int_equal(v, 2);
	assert_true(gs_id_map_del(&m, 42));
	assert_false(gs_id_map_get(&m, 42, NULL));
	assert_int_equal(gs_id_map_size(&m), 0);
	gs_id_map_free(&m);
	gs_id_map_free(&m); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_model),
	    cmocka_unit_test(t_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
