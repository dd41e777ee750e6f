/*
 * id_map.h - a hash map from task ID to a small value, in process memory.
 *
 * Owns: one open-addressing table (linear probing, backward-shift delete)
 * that grows by doubling at half load and never shrinks below its first
 * size.  Keys are task IDs, never 0 (0 marks an empty entry).
 *
 * Thread-safety: none of its own; the owner serialises every call (the
 * service uses it under its PLM lock, s->mu).
 *
 * Errors: GS_EINVAL (key 0), GS_ENOMEM (growing failed: nothing changed).
 *
 * Buffers: the table is the map's; gs_id_map_free releases it.
 */
#ifndef GS_ID_MAP_H
#define GS_ID_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gs_id_map_ent {
	uint64_t key; /* 0: empty */
	uint32_t val;
};

typedef struct gs_id_map {
	struct gs_id_map_ent *ent;
	size_t cap; /* a power of two, or 0 before the first put */
	size_t n;
} gs_id_map;

/* An empty map (no allocation until the first put). */
void gs_id_map_init(gs_id_map *m);
void gs_id_map_free(gs_id_map *m);

/* Sets key's value (adding the key if absent). */
int gs_id_map_put(gs_id_map *m, uint64_t key, uint32_t val);

/* True (and *val, if val is not NULL) when key is present. */
bool gs_id_map_get(const gs_id_map *m, uint64_t key, uint32_t *val);

/* Removes key; true if it was present. */
bool gs_id_map_del(gs_id_map *m, uint64_t key);

static inline size_t gs_id_map_size(const gs_id_map *m)
{
	return m->n;
}

#endif /* GS_ID_MAP_H */
