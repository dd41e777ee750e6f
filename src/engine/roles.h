/*
 * roles.h - the server roles as separate processes: where they meet in the
 * segment.
 *
 * By default the PLM, the Main Scheduler and the Register are threads of one
 * `gsched server`.  With `--role` each runs in a process of its own, all
 * attached to one named segment; this module holds what they share besides
 * the engine itself (the roles region, layout version 7):
 *
 *   - claims: which process holds each role, and how often it started;
 *   - the pause: a restarted role stops the others at a safe point, repairs
 *     what its dead predecessor left half-done (gs_engine_recover), then
 *     lets them go on.  A process killed at any instruction leaves nothing
 *     but the engine's own half-done states, which that repair knows;
 *   - doorbells: one futex word per role, rung when it has work;
 *   - three single-producer single-consumer rings of task IDs, the hand-offs
 *     between the roles:
 *       GS_RING_ASSIGN  scheduler -> register  tasks just assigned: send them
 *       GS_RING_DONE    register  -> PLM       tasks now final: deliver them
 *       GS_RING_CANCEL  PLM       -> register  (task, worker, attempt) triples of
 *                                              cancelled tasks: tell the worker;
 *                                              task 0: the worker is to drain
 *     A ring is a hint, never the only record: the task's state in the task
 *     table is.  What a dead producer or consumer lost is found again by a
 *     scan after the next pause (service.h, gs_service_link_resync), and a
 *     full DONE ring sets an overflow flag that makes the PLM scan instead.
 *
 * Thread-safety: every function may be called by any thread of any process
 * attached to the segment; each ring has one producer and one consumer: a
 * thread of the process holding the producing (consuming) role, one thread
 * at a time (the process serialises its threads).  No function blocks for longer than the timeout
 * it is given. A process ID can be reused after its process died: a claim by a dead process whose
 * ID now names an unrelated process stays held (gs_roles_claim then fails with GS_EBUSY and names
 * it); remove the segment to start over.
 *
 * Errors: GS_EINVAL (bad role or ring), GS_EBUSY (role held by a live
 * process), GS_ETIMEOUT (a pause not acknowledged in time).
 */
#ifndef GS_ROLES_H
#define GS_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gs_role { GS_ROLE_PLM = 0, GS_ROLE_SCHEDULER = 1, GS_ROLE_REGISTER = 2, GS_ROLE_COUNT = 3 };
#define GS_ROLE_BIT(r) (1u << (r))
#define GS_ROLES_ALL   7u

enum gs_ring_id { GS_RING_ASSIGN = 0, GS_RING_DONE = 1, GS_RING_CANCEL = 2, GS_RING_COUNT = 3 };

/* Entries of each ring (powers of two). */
#define GS_RING_ASSIGN_CAP (8u << 10)
#define GS_RING_DONE_CAP   (32u << 10)
#define GS_RING_CANCEL_CAP (2u << 10)

struct gs_roles_region;

/* A process's view of the roles region (no state of its own). */
typedef struct gs_roles {
	struct gs_roles_region *r;
	uint64_t *ring[GS_RING_COUNT];
	int lock_fd;  /* gs_roles_set_lock_fd's, or -1: liveness by process ID */
	uint8_t held; /* lock bytes this view holds (bit r: role r; bit 3: the pause) */
} gs_roles;

uint64_t gs_roles_region_bytes(void);
void gs_roles_bind(gs_roles *v, void *region, bool format);

/*
 * Tells liveness by locks on fd from now on (see above): every process
 * attached must then do so, each with a descriptor of its own open() of the
 * same file (a forked child shares its parent's description, and so its
 * locks).  fd stays the caller's; keep it open while attached.  GS_EINVAL,
 * GS_EIO (fd takes no such locks).  Before the first claim.
 */
int gs_roles_set_lock_fd(gs_roles *v, int fd);

/* "plm", "scheduler", "register"; NULL for a bad role. */
const char *gs_role_name(enum gs_role role);
/* The role named name: GS_OK or GS_EINVAL. */
int gs_role_parse(const char *name, enum gs_role *out);

/* --- claims -------------------------------------------------------------- */

/*
 * Takes role for process pid.  GS_EBUSY if another live process holds it
 * (*holder receives its pid); a holder that died is replaced.  On success
 * *restart is true when the role was held before (by a dead process):
 * the caller must pause the others and repair before it works.
 */
int gs_roles_claim(gs_roles *v, enum gs_role role, int32_t pid, int32_t *holder, bool *restart);
/* Gives the role up (a clean stop); does nothing unless pid holds it. */
void gs_roles_unclaim(gs_roles *v, enum gs_role role, int32_t pid);
/* The pid holding role if it is alive, else 0. */
int32_t gs_roles_holder(const gs_roles *v, enum gs_role role);
/* How many times role was claimed since the segment was made. */
uint64_t gs_roles_starts(const gs_roles *v, enum gs_role role);

/* --- the pause ------------------------------------------------------------ */

/* What a pause that timed out waited for. */
typedef struct gs_roles_blocker {
	int role;    /* the role that did not park; GS_ROLE_COUNT: the pause itself
	                (another process's restart held it) */
	int32_t pid; /* its recorded process ID */
} gs_roles_blocker;

/*
 * Stops every other role: takes the pause (waiting while another live
 * process holds it; one that died holding it is replaced) and waits until
 * each role held by a live process other than pid has parked.  Then the
 * caller alone operates on the engine until gs_roles_resume.  GS_ETIMEOUT
 * after timeout_ms (the pause is then given back; *why, if not NULL, says
 * what it waited for).  Only a role's process that holds no engine
 * operation half-done may call it.
 */
int gs_roles_pause(gs_roles *v, enum gs_role self, int32_t pid, int timeout_ms,
                   gs_roles_blocker *why);
/* Lets the parked roles go on. */
void gs_roles_resume(gs_roles *v, int32_t pid);

/*
 * The parked side, run by one thread of every role process.  Waits up to
 * timeout_ms for a pause request; returns true when one is pending (*word
 * receives it).  The caller then stops its engine operations, and calls
 * gs_roles_park, which acknowledges and waits until the pause ends (or *stop
 * becomes nonzero: stop may be NULL; it is read with __atomic_load_n, so
 * write it with __atomic_store_n).
 */
bool gs_roles_pause_pending(gs_roles *v, int timeout_ms, uint32_t *word);
void gs_roles_park(gs_roles *v, enum gs_role self, uint32_t word, const volatile int *stop);
/*
 * Marks self operating, once its claim (and any repair after it) is done:
 * from now on a pause waits for it.  If a pause is pending, parks first.
 * Call before the role's first engine operation; then run the parked side
 * (gs_roles_pause_pending / gs_roles_park) for as long as it operates.
 */
void gs_roles_activate(gs_roles *v, enum gs_role self, const volatile int *stop);
/* Pauses completed since the segment was made. */
uint64_t gs_roles_pauses(const gs_roles *v);

/* --- doorbells ------------------------------------------------------------- */

/*
 * An event count per role.  The waiting role reads the bell, looks for work,
 * and sleeps only if the bell did not change since it read it:
 *     uint32_t seen = gs_roles_bell_read(v, r);  ...work...;
 *     gs_roles_bell_wait(v, r, seen, ms);
 * Rings cost one atomic add, and a futex wake only when the role sleeps.
 */
uint32_t gs_roles_bell_read(const gs_roles *v, enum gs_role role);
void gs_roles_bell_ring(gs_roles *v, enum gs_role role);
void gs_roles_bell_wait(gs_roles *v, enum gs_role role, uint32_t seen, int timeout_ms);

/* --- rings ----------------------------------------------------------------- */

/* Producer: appends ids[0..n) as one unit (the consumer sees all or none);
 * false when they do not fit (nothing changed). */
bool gs_roles_push(gs_roles *v, enum gs_ring_id ring, const uint64_t *ids, size_t n);
/* Producer: free entries now. */
size_t gs_roles_ring_free(const gs_roles *v, enum gs_ring_id ring);
/* Consumer: takes up to max IDs in order; returns how many. */
size_t gs_roles_pop(gs_roles *v, enum gs_ring_id ring, uint64_t *ids, size_t max);
/* Producer: notes that an ID could not be pushed; consumer: takes the note. */
void gs_roles_overflow_set(gs_roles *v, enum gs_ring_id ring);
bool gs_roles_overflow_take(gs_roles *v, enum gs_ring_id ring);

#endif /* GS_ROLES_H */
