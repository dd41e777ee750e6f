/*
 * task_heap.h - strict-priority, FIFO-within-priority task queues.
 *
 * Owns: for each of GS_MAX_QUEUES named queues, GS_PRIORITIES lock-free FIFO
 * lists (Michael-Scott queues with counted links) and a 256-bit occupancy
 * bitmap that says which levels may hold tasks; the pool of list nodes; the
 * queue names and their counters.  A pop takes the highest occupied level, so
 * priority is strict, and FIFO holds within a level.  Push and pop are O(1)
 * plus a scan of at most four bitmap words.
 *
 * Nodes live in the segment (one per task slot, rounded up to whole cache
 * lines, plus GS_LEVEL_NODES per level) and are referred to by index; every
 * link and list end is a 64-bit word (count << 32 | index + 1) so a node
 * recycled between a read and a CAS fails that CAS (no ABA).  Nodes are
 * type-stable: a stale read of a recycled node is harmless because the CAS
 * that would use it fails.  A free node is either in the shared pool (a
 * Treiber stack) or in a level's reclaim chain (see struct gs_level); pushes
 * prefer their level's chain, so steady traffic stays off the pool head.
 *
 * A node names a task slot and its generation.  The slot's `linked` bit says
 * that a node refers to it; a slot is never freed while linked (it becomes
 * RELEASED and the popper that unlinks it frees it), so there is at most one
 * node per slot and free nodes never run out.
 *
 * Thread-safety: push and pop are lock-free, callable from any thread of any
 * process.  A process killed inside them never blocks the others (every
 * half-done step is helped along); it can at worst leave a task QUEUED but
 * unlinked, or a free node lost, which gs_task_heap_rebuild() repairs.
 * gs_task_heap_rebuild() and gs_task_heap_walk() need quiescence: no other
 * thread or process operating on the heap.
 *
 * Errors: GS_EINVAL (queue or level out of range), GS_EEMPTY (nothing to
 * pop), GS_EFULL (queue name table full).
 */
#ifndef GS_TASK_HEAP_H
#define GS_TASK_HEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "segment.h"
#include "task_table.h"

#define GS_QUEUE_NAME_MAX 48u /* including the terminating NUL */

struct gs_qnode {
	_Atomic uint64_t next; /* counted link to the next node */
	_Atomic uint64_t task; /* task ID (slot | gen << 32); free-list link while pooled */
};

/* Nodes each level owns at format time: one cache line of them. */
#define GS_LEVEL_NODES 4u

/*
 * One FIFO, on one cache line.  head..tail is the Michael-Scott list (head
 * is the sentinel).  reclaim..head, exclusive, are nodes already dequeued,
 * still chained by their `next` links: free nodes that the next pushes on
 * this level take in order (a counted CAS on `reclaim`).  So a pop frees its
 * old sentinel with no write at all, and a steady push/pop stream on a level
 * recycles the level's own nodes (one line) without touching the shared pool
 * head.  Head, tail and reclaim share the line on purpose: a push reads head
 * (is the reclaim chain empty?) and a pop reads tail (does tail lag?), so
 * splitting them only adds a line to each operation.  A push that finds both
 * its chain and the pool empty drains every level's chain into the pool;
 * gs_task_heap_rebuild() rebuilds the chains.
 */
struct gs_level {
	_Atomic uint64_t head;
	_Atomic uint64_t tail;
	_Atomic uint64_t reclaim;
	uint8_t pad[GS_CACHELINE - 24];
};

/* Per-queue counters, on lines of their own (the bitmap is read by every
 * pop).  Gauges, the tasks in a state now: queued, delayed, assigned
 * (ASSIGNED) and running (RUNNING; a task recording its result counts where
 * it was until its final state).  The others are totals. */
struct gs_queue_counters {
	_Atomic uint64_t queued;
	_Atomic uint64_t submitted;
	_Atomic uint64_t assigned;
	_Atomic uint64_t done;
	_Atomic uint64_t failed;
	_Atomic uint64_t cancelled;
	_Atomic uint64_t requeued;
	_Atomic uint64_t delayed;
	_Atomic uint64_t running;
	uint8_t pad[GS_CACHELINE - 8];
};

struct gs_queue_info {
	_Atomic uint64_t bitmap[GS_PRIORITIES / 64]; /* bit p: level p may be non-empty */
	uint8_t pad0[GS_CACHELINE - 32];
	struct gs_queue_counters c;
	_Atomic uint32_t state; /* 0 unused, 1 being named, 2 named */
	char name[GS_QUEUE_NAME_MAX];
	uint8_t pad1[GS_CACHELINE - 52];
};

struct gs_task_heap_hdr {
	_Atomic uint64_t node_free; /* counted head of the node pool */
	uint8_t pad[GS_CACHELINE - 8];
};

/* Process-local view. */
typedef struct gs_task_heap {
	struct gs_task_heap_hdr *hdr;
	struct gs_qnode *nodes;
	struct gs_level *levels;
	struct gs_queue_info *queues;
	uint32_t n_nodes;
	uint32_t level_base; /* level l owns nodes level_base + l * GS_LEVEL_NODES + 1.. */
} gs_task_heap;

/* Bytes each region needs for geometry *g. */
uint64_t gs_task_heap_nodes_bytes(const gs_geom *g);
uint64_t gs_task_heap_levels_bytes(const gs_geom *g);
uint64_t gs_task_heap_queues_bytes(const gs_geom *g);

/* Binds a view; `format` initialises new regions (sentinels, pool). */
void gs_task_heap_bind(gs_task_heap *h, void *nodes, void *levels, void *queues, uint32_t max_tasks,
                       bool format);

/*
 * Looks a queue up by name; with `create`, names a free queue if absent.
 * Names are 1..47 bytes of [A-Za-z0-9_.-].  GS_ENOTFOUND (absent, no create),
 * GS_EFULL (all queues named), GS_EINVAL (bad name).  Lock-free.
 */
int gs_task_heap_queue(gs_task_heap *h, const char *name, bool create, uint32_t *qid);

/* The name of queue qid, or NULL if unnamed. Pointer into the segment. */
const char *gs_task_heap_queue_name(const gs_task_heap *h, uint32_t qid);

/*
 * Appends task `id` (whose slot the caller has just made QUEUED and linked)
 * to level `prio` of queue `qid`.  Never fails for valid arguments: the pool
 * has a node for every slot.
 */
int gs_task_heap_push(gs_task_heap *h, uint32_t qid, uint32_t prio, uint64_t id);

/*
 * Removes the oldest task of the highest non-empty level of queue qid and
 * returns its ID in *id (the task may since have been cancelled: the caller
 * checks the slot's word).  GS_EEMPTY when the queue is empty.
 */
int gs_task_heap_pop(gs_task_heap *h, uint32_t qid, uint64_t *id);

/* Highest level that may hold tasks, or -1. A hint: racy by nature. */
int gs_task_heap_top_level(const gs_task_heap *h, uint32_t qid);

/*
 * Calls fn(id, arg) for every node of every list in queue order (quiescent
 * only).  Also repairs a lagging tail left by a killed pusher.
 */
void gs_task_heap_walk(gs_task_heap *h,
                       void (*fn)(uint32_t qid, uint32_t prio, uint64_t id, void *arg), void *arg);

/*
 * Rebuilds the node pool and the bitmaps after a crash (quiescent only):
 * every node not reachable from a list goes back to the pool.
 */
void gs_task_heap_rebuild(gs_task_heap *h);

#endif /* GS_TASK_HEAP_H */
