/*
 * idem_table.h - idempotency keys: which request key created which task IDs.
 *
 * Owns: the key region of a segment, a fixed-size open-addressing hash table
 * of `max_keys` entries (a power of two; gs_geom), and the arena blocks that
 * hold the ID lists of entries with more than GS_IDEM_INLINE_IDS tasks.  A
 * key is looked up and inserted only within a window of
 * min(GS_IDEM_WINDOW, max_keys) entries from its hash, so every operation is
 * O(window) whatever the load; a window with no free entry is a full table
 * (GS_EFULL), never a longer search.
 *
 * Retention: a key lives while at least one of its tasks is still in the
 * task table (not yet released: unfetched, or fetched but kept).  Once every
 * one of them is released, the entry is dead: the next lookup or insert that
 * meets it frees it (and a retry with that key creates new tasks).
 *
 * Each entry's state is one 64-bit word, changed by CAS only:
 *
 *   [63:32] the key hash's high 32 bits   [31:3] tag (+1 per reuse)   [2:0] state
 *
 *   EMPTY -> CLAIMED -> KEYED -> LIVE -> DEAD -> CLAIMED (tag + 1) ...
 *            CLAIMED | KEYED -> DEAD  (abandoned: a concurrent insert of the
 *                                      same key, or the submit failed)
 *
 * CLAIMED and KEYED are held by one inserter while it writes the entry's
 * fields (the key, then the IDs); LIVE publishes them with a release store.
 * Two inserters of the same key never both reach LIVE: each, after claiming
 * its entry (seq_cst), scans the window again (seq_cst loads) and abandons
 * its claim when it sees another claim or a LIVE entry of the same key, so
 * of two racing inserters at least one sees the other (store-load order of
 * seq_cst) and backs off (GS_EBUSY: retry; both may, never neither).
 * Readers copy an entry's fields, then re-read its word: a tag or state that
 * changed meanwhile means the copy may be torn, and the read is retried.
 * recovery (gs_idem_repair) turns CLAIMED/KEYED left by a dead process into
 * DEAD (their tasks were never published) and keeps LIVE ones.
 *
 * Thread-safety: lookup/begin/commit/abort/at are lock-free, any thread of
 * any process attached to the segment; restore and repair are quiescent
 * only (no other thread or process using the segment).
 *
 * Errors: GS_EINVAL (key length 0 or over GS_IDEM_MAX_KEY, n == 0),
 * GS_ESTATE (the key is known with another task count or digest: nothing
 * changed), GS_EBUSY (the same key is being inserted right now: retry),
 * GS_EFULL (no free entry in the key's window), GS_ETOOBIG (more IDs than an
 * arena block holds), GS_ENOTFOUND (no live key).
 *
 * Buffers: keys and IDs passed in are copied; IDs returned are copied into
 * the caller's array.
 */
#ifndef GS_IDEM_TABLE_H
#define GS_IDEM_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "segment.h"
#include "task_table.h"

#define GS_IDEM_MAX_KEY    128u /* bytes of a key */
#define GS_IDEM_INLINE_IDS 10u  /* IDs kept in the entry; more go to the arena */
#define GS_IDEM_WINDOW     64u  /* entries probed per key */

enum gs_idem_state {
	GS_IDEM_EMPTY = 0,
	GS_IDEM_CLAIMED = 1,
	GS_IDEM_KEYED = 2,
	GS_IDEM_LIVE = 3,
	GS_IDEM_DEAD = 4,
};

/* One key: 256 bytes. */
struct gs_idem_entry {
	_Atomic uint64_t word; /* see above */
	uint64_t hash;         /* written while CLAIMED */
	uint64_t digest;       /* of the request, the caller's choice */
	uint64_t created_us;
	uint32_t n;       /* tasks; written while KEYED */
	uint32_t ids_ref; /* arena block of n IDs when n > GS_IDEM_INLINE_IDS */
	uint16_t key_len;
	uint8_t pad[6];
	uint8_t key[GS_IDEM_MAX_KEY];
	uint64_t ids[GS_IDEM_INLINE_IDS];
};

/* Shared part, in the segment. */
struct gs_idem_hdr {
	uint32_t capacity; /* entries, a power of two */
	uint32_t window;   /* min(GS_IDEM_WINDOW, capacity) */
	uint64_t seed;     /* hash seed, fixed when formatted */
	uint8_t pad[GS_CACHELINE - 16];
};

/* Process-local view. */
typedef struct gs_idem_table {
	struct gs_idem_hdr *hdr;
	struct gs_idem_entry *ent;
	uint32_t mask, window;
	const gs_task_table *tt; /* whose tasks keep keys alive */
	gs_arena *arena;         /* ID lists over GS_IDEM_INLINE_IDS */
} gs_idem_table;

/* What gs_idem_at and gs_idem_begin (existing key) report. */
typedef struct gs_idem_info {
	uint32_t key_len;
	uint8_t key[GS_IDEM_MAX_KEY];
	uint64_t digest, created_us;
	uint32_t n; /* IDs (copied up to the caller's capacity) */
} gs_idem_info;

/* Bytes the key region needs in a segment of geometry *g (max_keys set). */
uint64_t gs_idem_region_bytes(const gs_geom *g);

/* Binds a view; `format` initialises a new (zeroed) region. */
void gs_idem_bind(gs_idem_table *t, void *region, const gs_geom *g, const gs_task_table *tt,
                  gs_arena *arena, bool format);

/* The largest n an entry can hold (inline or in one arena block). */
uint32_t gs_idem_max_ids(const gs_idem_table *t);

/*
 * Looks the key up and, when absent, claims an entry for it.
 * GS_OK with *existing false: claimed (*slot), the caller submits its tasks
 * and then calls gs_idem_commit (or gs_idem_abort).  GS_OK with *existing
 * true: the key is live and was created with the same n and digest; ids[n]
 * receive its IDs.  GS_ESTATE (mismatch; *existing true, info filled when
 * not NULL), GS_EBUSY, GS_EFULL, GS_ETOOBIG, GS_EINVAL.
 */
int gs_idem_begin(gs_idem_table *t, const void *key, uint32_t key_len, uint64_t digest, uint32_t n,
                  uint64_t now_us, uint64_t *ids, bool *existing, uint32_t *slot,
                  gs_idem_info *info);

/* Stores the n IDs of a claimed entry and publishes it (LIVE).  Cannot fail. */
void gs_idem_commit(gs_idem_table *t, uint32_t slot, const uint64_t *ids);

/* Gives a claimed entry up (DEAD): nothing was submitted under it. */
void gs_idem_abort(gs_idem_table *t, uint32_t slot);

/*
 * The live key in entry `index` (for listing, e.g. a snapshot): info and up
 * to cap IDs in ids.  GS_ENOTFOUND when the entry is not LIVE or none of its
 * tasks is left; GS_EBUSY if it changed while being read (read it again).
 */
int gs_idem_at(const gs_idem_table *t, uint32_t index, gs_idem_info *info, uint64_t *ids,
               size_t cap);

/* Entries in the table (the bound for gs_idem_at). */
uint32_t gs_idem_capacity(const gs_idem_table *t);

/*
 * Puts a key back (quiescent: a log replay before gs_engine_restore_finish).
 * GS_ENOTFOUND (ignored by callers) if none of its tasks is in the table;
 * GS_ESTATE if the key is already there; GS_EFULL, GS_ETOOBIG, GS_EINVAL.
 */
int gs_idem_restore(gs_idem_table *t, const void *key, uint32_t key_len, uint64_t digest,
                    uint64_t created_us, const uint64_t *ids, uint32_t n);

/*
 * Recovery (quiescent, after the task slots are repaired): CLAIMED/KEYED
 * entries and LIVE ones none of whose tasks is left become DEAD; mark(ref)
 * is called with the arena block of each LIVE entry kept.  Returns the
 * number of live keys.
 */
uint32_t gs_idem_repair(gs_idem_table *t, void (*mark)(uint32_t ref, void *arg), void *arg);

/*
 * Recovery (quiescent, before the task slots are repaired): fn(ids, n, arg)
 * for every LIVE entry.  A key goes LIVE once all its tasks are filled and
 * before they are published, so a process killed in between leaves filled
 * RESERVED slots that recovery must publish, not free (roll forward).
 */
void gs_idem_each_live(const gs_idem_table *t,
                       void (*fn)(const uint64_t *ids, uint32_t n, void *arg), void *arg);

#endif /* GS_IDEM_TABLE_H */
