/* id_map.c - task ID -> value, open addressing (see id_map.h). */
#include "id_map.h"

#include <stdlib.h>

#include "gs_error.h"

#define FIRST_CAP 64u

/* Task IDs carry the slot in their low bits: mix before masking. */
static inline size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

void gs_id_map_init(gs_id_map *m)
{
	m->ent = NULL;
	m->cap = 0;
	m->n = 0;
}

void gs_id_map_free(gs_id_map *m)
{
	free(m->ent);
	gs_id_map_init(m);
}

static void insert(struct gs_id_map_ent *ent, size_t cap, uint64_t key, uint32_t val)
{
	size_t i = slot_of(key, cap);
	while (ent[i].key != 0 && ent[i].key != key)
		i = (i + 1) & (cap - 1);
	ent[i].key = key;
	ent[i].val = val;
}

static int grow(gs_id_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : FIRST_CAP;
	struct gs_id_map_ent *ent = calloc(cap, sizeof(*ent));
	if (!ent)
		return GS_ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->ent[i].key)
			insert(ent, cap, m->ent[i].key, m->ent[i].val);
	free(m->ent);
	m->ent = ent;
	m->cap = cap;
	return GS_OK;
}

int gs_id_map_put(gs_id_map *m, uint64_t key, uint32_t val)
{
	if (key == 0)
		return GS_EINVAL;
	if ((m->n + 1) * 2 > m->cap && grow(m) != GS_OK)
		return GS_ENOMEM;
	size_t i = slot_of(key, m->cap);
	while (m->ent[i].key != 0 && m->ent[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (m->ent[i].key == 0) {
		m->ent[i].key = key;
		m->n++;
	}
	m->ent[i].val = val;
	return GS_OK;
}

bool gs_id_map_get(const gs_id_map *m, uint64_t key, uint32_t *val)
{
	if (key == 0 || m->n == 0)
		return false;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->ent[i].key == 0)
			return false;
		if (m->ent[i].key == key) {
			if (val)
				*val = m->ent[i].val;
			return true;
		}
	}
}

bool gs_id_map_del(gs_id_map *m, uint64_t key)
{
	if (key == 0 || m->n == 0)
		return false;
	size_t mask = m->cap - 1, i = slot_of(key, m->cap);
	while (m->ent[i].key != key) {
		if (m->ent[i].key == 0)
			return false;
		i = (i + 1) & mask;
	}
	/* Backward shift: pull later entries of the run into the hole when
	 * their home slot does not lie (cyclically) in (hole, j]. */
	for (size_t j = (i + 1) & mask; m->ent[j].key != 0; j = (j + 1) & mask) {
		size_t home = slot_of(m->ent[j].key, m->cap);
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (stays)
			continue;
		m->ent[i] = m->ent[j];
		i = j;
	}
	m->ent[i].key = 0;
	m->ent[i].val = 0;
	m->n--;
	return true;
}
