/* roles.c - role claims, the pause, doorbells and hand-off rings (roles.h). */
#include "roles.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "gs_clock.h"
#include "gs_error.h"
#include "segment.h"

#define ALIGNED _Alignas(GS_CACHELINE)

/* Each role's and each ring's fields sit on their own cache lines: they are
 * written by different processes. */
struct gs_roles_region {
	struct {
		ALIGNED _Atomic int32_t pid; /* holder, 0: none */
		_Atomic uint32_t active;     /* 1: operating (the pauser waits for it) */
		_Atomic uint32_t parked;     /* the pause word it parked for */
		_Atomic uint64_t starts;
	} role[GS_ROLE_COUNT];
	ALIGNED _Atomic uint32_t pause_word; /* even: running, odd: paused */
	_Atomic int32_t pauser;              /* who holds the pause, 0: none */
	_Atomic uint64_t pauses;
	struct {
		ALIGNED _Atomic uint32_t count;
		_Atomic uint32_t sleepers;
	} bell[GS_ROLE_COUNT];
	struct {
		ALIGNED _Atomic uint64_t head; /* the consumer's */
		ALIGNED _Atomic uint64_t tail; /* the producer's */
		ALIGNED _Atomic uint32_t overflow;
	} ring[GS_RING_COUNT];
};

static const uint32_t ring_cap[GS_RING_COUNT] = {GS_RING_ASSIGN_CAP, GS_RING_DONE_CAP,
                                                 GS_RING_CANCEL_CAP};
static const char *const role_names[GS_ROLE_COUNT] = {"plm", "scheduler", "register"};

/* Byte GS_ROLE_COUNT of the lock file: the pauser's seat. */
#define LOCK_PAUSE ((off_t)GS_ROLE_COUNT)

static uint64_t header_bytes(void)
{
	return (sizeof(struct gs_roles_region) + GS_CACHELINE - 1) / GS_CACHELINE * GS_CACHELINE;
}

uint64_t gs_roles_region_bytes(void)
{
	uint64_t n = header_bytes();
	for (int i = 0; i < GS_RING_COUNT; i++)
		n += (uint64_t)ring_cap[i] * sizeof(uint64_t);
	return n;
}

void gs_roles_bind(gs_roles *v, void *region, bool format)
{
	v->r = region;
	v->lock_fd = -1;
	v->held = 0;
	uint8_t *p = (uint8_t *)region + header_bytes();
	for (int i = 0; i < GS_RING_COUNT; i++) {
		v->ring[i] = (uint64_t *)p;
		p += (uint64_t)ring_cap[i] * sizeof(uint64_t);
	}
	if (format)
		memset(region, 0, header_bytes()); /* the rings' entries need no zeroing */
}

const char *gs_role_name(enum gs_role role)
{
	return (unsigned)role < GS_ROLE_COUNT ? role_names[role] : NULL;
}

int gs_role_parse(const char *name, enum gs_role *out)
{
	for (int i = 0; name && i < GS_ROLE_COUNT; i++)
		if (strcmp(name, role_names[i]) == 0) {
			*out = (enum gs_role)i;
			return GS_OK;
		}
	return GS_EINVAL;
}

/* --- futexes on shared memory (no FUTEX_PRIVATE_FLAG: other processes) ---- */

static void futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The caller's stop flag, written by another thread with __atomic stores. */
static bool stopped(const volatile int *stop)
{
	return stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
}

static bool alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* --- open file description locks (gs_roles_set_lock_fd) ------------------- */

static int lock_op(int fd, int cmd, short type, off_t byte, struct flock *out)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
	int rc = fcntl(fd, cmd, &fl);
	if (out)
		*out = fl;
	return rc;
}

/* Takes byte's lock: GS_OK, GS_EBUSY (another description holds it), GS_EIO.
 * v->held notes the bytes this view holds (our own locks never show in
 * F_OFD_GETLK). */
static int lock_take(gs_roles *v, off_t byte)
{
	if (lock_op(v->lock_fd, F_OFD_SETLK, F_WRLCK, byte, NULL) == 0) {
		v->held |= (uint8_t)(1u << byte);
		return GS_OK;
	}
	return errno == EAGAIN || errno == EACCES ? GS_EBUSY : GS_EIO;
}

static void lock_drop(gs_roles *v, off_t byte)
{
	lock_op(v->lock_fd, F_OFD_SETLK, F_UNLCK, byte, NULL);
	v->held &= (uint8_t) ~(1u << byte);
}

/* Another description holds byte's lock (ours never shows). */
static bool lock_held(int fd, off_t byte)
{
	struct flock fl;
	return lock_op(fd, F_OFD_GETLK, F_WRLCK, byte, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* Is role r held by a live process?  By its lock when there is a lock file
 * (ours, or another description's), else by the recorded process ID. */
static bool role_alive(const gs_roles *v, int r, int32_t pid)
{
	if (v->lock_fd >= 0)
		return (v->held & (1u << r)) || lock_held(v->lock_fd, (off_t)r);
	return alive(pid);
}

int gs_roles_set_lock_fd(gs_roles *v, int fd)
{
	if (fd < 0)
		return GS_EINVAL;
	struct flock fl;
	if (lock_op(fd, F_OFD_GETLK, F_WRLCK, 0, &fl) != 0)
		return GS_EIO; /* not a file that takes such locks */
	v->lock_fd = fd;
	return GS_OK;
}

/* --- claims ------------------------------------------------------------------ */

int gs_roles_claim(gs_roles *v, enum gs_role role, int32_t pid, int32_t *holder, bool *restart)
{
	if ((unsigned)role >= GS_ROLE_COUNT || pid <= 0)
		return GS_EINVAL;
	int32_t cur = atomic_load(&v->r->role[role].pid);
	if (v->lock_fd >= 0) {
		/* The lock decides; the pid is for messages. */
		int rc = lock_take(v, (off_t)role);
		if (rc != GS_OK) {
			if (holder)
				*holder = atomic_load(&v->r->role[role].pid);
			return rc;
		}
		cur = atomic_exchange(&v->r->role[role].pid, pid);
	} else {
		for (;;) {
			if (cur != 0 && cur != pid && alive(cur)) {
				if (holder)
					*holder = cur;
				return GS_EBUSY;
			}
			if (atomic_compare_exchange_weak(&v->r->role[role].pid, &cur, pid))
				break;
		}
	}
	atomic_store(&v->r->role[role].active, 0);
	atomic_fetch_add(&v->r->role[role].starts, 1);
	if (restart)
		*restart = cur != 0;
	return GS_OK;
}

void gs_roles_unclaim(gs_roles *v, enum gs_role role, int32_t pid)
{
	if ((unsigned)role >= GS_ROLE_COUNT)
		return;
	if (atomic_load(&v->r->role[role].pid) != pid)
		return;
	atomic_store(&v->r->role[role].active, 0);
	int32_t want = pid;
	atomic_compare_exchange_strong(&v->r->role[role].pid, &want, 0);
	if (v->lock_fd >= 0)
		lock_drop(v, (off_t)role);
}

int32_t gs_roles_holder(const gs_roles *v, enum gs_role role)
{
	if ((unsigned)role >= GS_ROLE_COUNT)
		return 0;
	int32_t pid = atomic_load(&v->r->role[role].pid);
	return role_alive(v, role, pid) ? pid : 0;
}

uint64_t gs_roles_starts(const gs_roles *v, enum gs_role role)
{
	return (unsigned)role < GS_ROLE_COUNT ? atomic_load(&v->r->role[role].starts) : 0;
}

/* --- the pause ------------------------------------------------------------ */

/* Ends the pause (completed: it ran its course, else it timed out). */
static void give_back(gs_roles *v, int32_t pid, bool completed)
{
	uint32_t w = atomic_load(&v->r->pause_word);
	if (w & 1u) {
		atomic_store(&v->r->pause_word, w + 1);
		if (completed)
			atomic_fetch_add(&v->r->pauses, 1);
	}
	int32_t want = pid;
	atomic_compare_exchange_strong(&v->r->pauser, &want, 0);
	if (v->lock_fd >= 0 && (v->held & (1u << LOCK_PAUSE)))
		lock_drop(v, LOCK_PAUSE);
	futex_wake_all(&v->r->pause_word);
}

int gs_roles_pause(gs_roles *v, enum gs_role self, int32_t pid, int timeout_ms,
                   gs_roles_blocker *why)
{
	if ((unsigned)self >= GS_ROLE_COUNT || pid <= 0)
		return GS_EINVAL;
	uint64_t deadline = gs_clock_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	/* The pauser's seat: one pause at a time; a dead holder is replaced
	 * (its pause word stays odd: the parked roles stay parked for us). */
	for (;;) {
		int32_t cur = atomic_load(&v->r->pauser);
		if (v->lock_fd >= 0) {
			int rc = lock_take(v, LOCK_PAUSE);
			if (rc == GS_OK) {
				atomic_store(&v->r->pauser, pid);
				break;
			}
			if (rc != GS_EBUSY)
				return rc;
		} else if ((cur == 0 || cur == pid || !alive(cur)) &&
		           atomic_compare_exchange_strong(&v->r->pauser, &cur, pid)) {
			break;
		}
		if (gs_clock_mono_ms() >= deadline) {
			if (why)
				*why =
				    (gs_roles_blocker){GS_ROLE_COUNT, atomic_load(&v->r->pauser)};
			return GS_ETIMEOUT;
		}
		gs_clock_sleep_ms(1);
	}
	uint32_t w = atomic_load(&v->r->pause_word);
	if (!(w & 1u)) {
		w++;
		/* seq_cst: pairs with gs_roles_activate's store of `active` and
		 * load of the word: a role starting now either is seen active
		 * below or sees the pause and parks before it operates. */
		atomic_store(&v->r->pause_word, w);
	}
	futex_wake_all(&v->r->pause_word);
	for (int r = 0; r < GS_ROLE_COUNT; r++) {
		if (r == (int)self)
			continue;
		for (;;) {
			int32_t h = atomic_load(&v->r->role[r].pid);
			if (!atomic_load(&v->r->role[r].active) || !role_alive(v, r, h) ||
			    (v->lock_fd < 0 && h == pid))
				break;
			if (atomic_load(&v->r->role[r].parked) == w)
				break;
			if (gs_clock_mono_ms() >= deadline) {
				give_back(v, pid, false);
				if (why)
					*why = (gs_roles_blocker){r, h};
				return GS_ETIMEOUT;
			}
			gs_clock_sleep_ms(1);
		}
	}
	return GS_OK;
}

void gs_roles_resume(gs_roles *v, int32_t pid)
{
	give_back(v, pid, true);
}

bool gs_roles_pause_pending(gs_roles *v, int timeout_ms, uint32_t *word)
{
	uint32_t w = atomic_load(&v->r->pause_word);
	if (!(w & 1u) && timeout_ms > 0) {
		futex_wait(&v->r->pause_word, w, timeout_ms);
		w = atomic_load(&v->r->pause_word);
	}
	*word = w;
	return (w & 1u) != 0;
}

void gs_roles_park(gs_roles *v, enum gs_role self, uint32_t word, const volatile int *stop)
{
	if ((unsigned)self >= GS_ROLE_COUNT)
		return;
	/* seq_cst: our engine operations (ended by the caller) happen before
	 * the pauser reads this acknowledgement and starts its repair. */
	atomic_store(&v->r->role[self].parked, word);
	while (atomic_load(&v->r->pause_word) == word && !stopped(stop))
		futex_wait(&v->r->pause_word, word, 100);
}

uint64_t gs_roles_pauses(const gs_roles *v)
{
	return atomic_load(&v->r->pauses);
}

void gs_roles_activate(gs_roles *v, enum gs_role self, const volatile int *stop)
{
	if ((unsigned)self >= GS_ROLE_COUNT)
		return;
	/* seq_cst store, then load: see gs_roles_pause. */
	atomic_store(&v->r->role[self].active, 1);
	uint32_t w;
	while (gs_roles_pause_pending(v, 0, &w) && !stopped(stop))
		gs_roles_park(v, self, w, stop);
}

/* --- doorbells --------------------------------------------------------------- */

uint32_t gs_roles_bell_read(const gs_roles *v, enum gs_role role)
{
	return atomic_load(&v->r->bell[role].count);
}

void gs_roles_bell_ring(gs_roles *v, enum gs_role role)
{
	/* seq_cst add then load: pairs with bell_wait's sleepers add then count
	 * load, so either the sleeper sees the new count or we see it asleep. */
	atomic_fetch_add(&v->r->bell[role].count, 1);
	if (atomic_load(&v->r->bell[role].sleepers))
		futex_wake_all(&v->r->bell[role].count);
}

void gs_roles_bell_wait(gs_roles *v, enum gs_role role, uint32_t seen, int timeout_ms)
{
	if (timeout_ms <= 0)
		return;
	atomic_fetch_add(&v->r->bell[role].sleepers, 1);
	if (atomic_load(&v->r->bell[role].count) == seen)
		futex_wait(&v->r->bell[role].count, seen, timeout_ms);
	atomic_fetch_sub(&v->r->bell[role].sleepers, 1);
}

/* --- rings --------------------------------------------------------------------- */

bool gs_roles_push(gs_roles *v, enum gs_ring_id ring, const uint64_t *ids, size_t n)
{
	if ((unsigned)ring >= GS_RING_COUNT || n > ring_cap[ring])
		return false;
	uint64_t t = atomic_load_explicit(&v->r->ring[ring].tail, memory_order_relaxed);
	/* acquire: the consumer is done reading the entries it gave back. */
	uint64_t h = atomic_load_explicit(&v->r->ring[ring].head, memory_order_acquire);
	if (t - h > ring_cap[ring] - n)
		return false;
	for (size_t i = 0; i < n; i++)
		v->ring[ring][(t + i) & (ring_cap[ring] - 1)] = ids[i];
	/* release: the entries are written before the consumer sees the tail. */
	atomic_store_explicit(&v->r->ring[ring].tail, t + n, memory_order_release);
	return true;
}

size_t gs_roles_ring_free(const gs_roles *v, enum gs_ring_id ring)
{
	if ((unsigned)ring >= GS_RING_COUNT)
		return 0;
	uint64_t t = atomic_load_explicit(&v->r->ring[ring].tail, memory_order_relaxed);
	uint64_t h = atomic_load_explicit(&v->r->ring[ring].head, memory_order_acquire);
	return t - h >= ring_cap[ring] ? 0 : (size_t)(ring_cap[ring] - (t - h));
}

size_t gs_roles_pop(gs_roles *v, enum gs_ring_id ring, uint64_t *ids, size_t max)
{
	if ((unsigned)ring >= GS_RING_COUNT)
		return 0;
	uint64_t h = atomic_load_explicit(&v->r->ring[ring].head, memory_order_relaxed);
	/* acquire: pairs with push's release of the tail: the entries are in. */
	uint64_t t = atomic_load_explicit(&v->r->ring[ring].tail, memory_order_acquire);
	if (t - h > ring_cap[ring])
		h = t - ring_cap[ring]; /* cannot happen with one producer; stay in bounds */
	size_t n = t - h < max ? (size_t)(t - h) : max;
	for (size_t i = 0; i < n; i++)
		ids[i] = v->ring[ring][(h + i) & (ring_cap[ring] - 1)];
	/* release: our reads of the entries finish before the producer reuses them. */
	atomic_store_explicit(&v->r->ring[ring].head, h + n, memory_order_release);
	return n;
}

void gs_roles_overflow_set(gs_roles *v, enum gs_ring_id ring)
{
	if ((unsigned)ring < GS_RING_COUNT)
		atomic_store(&v->r->ring[ring].overflow, 1);
}

bool gs_roles_overflow_take(gs_roles *v, enum gs_ring_id ring)
{
	return (unsigned)ring < GS_RING_COUNT && atomic_exchange(&v->r->ring[ring].overflow, 0);
}
