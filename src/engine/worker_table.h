/*
 * worker_table.h - worker ID -> process-local worker record, under RCU.
 *
 * Owns: a liburcu lock-free hash table (cds_lfht, memb flavor) of the
 * workers this server process talks to.  Each record names the worker's slot
 * in the segment and carries an opaque pointer for the RPC layer (the
 * worker's stream).  Read on every heartbeat and result; written on register
 * and death.  RCU is per process: this table lives in the server process
 * only, and refers to the segment's worker slots by ID.
 *
 * Thread-safety:
 *   - every thread that calls gs_worker_table_find() must be registered with
 *     urcu-memb (gs_worker_table_thread_online / _offline) and hold
 *     gs_worker_table_read_lock() while it uses the returned record;
 *   - add and remove may be called from any registered thread; a removed
 *     record is freed (its `on_free` called) after a grace period, once no
 *     reader can still see it;
 *   - destroy: from an unregistered thread, after every other user stopped.
 *
 * Errors: GS_ENOMEM, GS_EINVAL (duplicate ID), GS_ENOTFOUND.
 */
#ifndef GS_WORKER_TABLE_H
#define GS_WORKER_TABLE_H

#include <stdint.h>

typedef struct gs_worker_table gs_worker_table;

typedef struct gs_worker_rec {
	uint64_t id;   /* worker ID (segment slot and generation) */
	char name[64]; /* what the worker calls itself */
	void *ctx;     /* owned by the caller; on_free hears when it may go */
} gs_worker_rec;

/* on_free(ctx, arg) runs after the grace period of a removed record. */
int gs_worker_table_create(void (*on_free)(void *ctx, void *arg), void *arg, gs_worker_table **out);
void gs_worker_table_destroy(gs_worker_table *t);

void gs_worker_table_thread_online(void);
void gs_worker_table_thread_offline(void);
void gs_worker_table_read_lock(void);
void gs_worker_table_read_unlock(void);

/* Inserts a record for `id`; GS_EINVAL if one exists. */
int gs_worker_table_add(gs_worker_table *t, uint64_t id, const char *name, void *ctx);

/* Under the read lock: the record, or NULL. */
gs_worker_rec *gs_worker_table_find(gs_worker_table *t, uint64_t id);

/* Unlinks the record; it is freed after a grace period.  GS_ENOTFOUND. */
int gs_worker_table_remove(gs_worker_table *t, uint64_t id);

/* Calls fn for each record (caller holds the read lock). */
void gs_worker_table_each(gs_worker_table *t, void (*fn)(gs_worker_rec *r, void *arg), void *arg);

/* Number of records (approximate under concurrent change). */
unsigned long gs_worker_table_count(gs_worker_table *t);

#endif /* GS_WORKER_TABLE_H */
