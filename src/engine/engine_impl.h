/*
 * engine_impl.h - the engine handle's fields, shared by engine.c and
 * recovery.c only.  Not a public header.
 */
#ifndef GS_ENGINE_IMPL_H
#define GS_ENGINE_IMPL_H

#include "arena.h"
#include "engine.h"
#include "idem_table.h"
#include "roles.h"
#include "task_heap.h"
#include "worker_heap.h"

struct gs_engine {
	gs_seg seg;       /* the mapping; owned */
	gs_task_table tt; /* views into the segment */
	gs_task_heap th;
	gs_arena arena;
	gs_worker_pool wp;
	gs_worker_heap wh;
	gs_idem_table it; /* idempotency keys */
	gs_roles roles;   /* the role processes' meeting place */
	gs_geom geom;     /* copy of the segment's geometry */
};

#endif /* GS_ENGINE_IMPL_H */
