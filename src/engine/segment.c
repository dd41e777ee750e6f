/* segment.c - create, attach and lay out the engine's shared-memory segment. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "gs_error.h"
#include "idem_table.h"
#include "roles.h"
#include "task_heap.h"
#include "task_table.h"
#include "worker_heap.h"
#include "worker_pool.h"

void gs_geom_defaults(gs_geom *g)
{
	if (!g->max_tasks)
		g->max_tasks = 1u << 20;
	if (!g->max_workers)
		g->max_workers = 4096;
	if (!g->max_payload)
		g->max_payload = 1u << 20;
	if (!g->arena_bytes)
		g->arena_bytes = 64ull << 20;
	if (!g->max_keys) {
		uint32_t k = 1024;
		while (k < g->max_tasks / 128 && k < (1u << 16))
			k <<= 1;
		g->max_keys = k;
	}
}

int gs_geom_check(const gs_geom *g)
{
	if (g->max_tasks < 1 || g->max_tasks > GS_MAX_TASKS)
		return GS_EINVAL;
	if (g->max_workers < 1 || g->max_workers > GS_MAX_WORKERS)
		return GS_EINVAL;
	if (g->max_payload < 1 || g->max_payload > (256u << 20))
		return GS_EINVAL;
	if (g->max_keys < 16 || g->max_keys > (1u << 24) || (g->max_keys & (g->max_keys - 1)))
		return GS_EINVAL;
	uint32_t page = gs_arena_page_size(g);
	if (g->arena_bytes < page || g->arena_bytes % page != 0 ||
	    g->arena_bytes / GS_ARENA_MIN_BLOCK >= UINT32_MAX - 1)
		return GS_EINVAL;
	return GS_OK;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

void gs_layout_compute(const gs_geom *g, gs_layout *L)
{
	uint64_t off = align_up(sizeof(struct gs_seg_header), 4096);
	L->tasks = off;
	off = align_up(off + gs_task_table_region_bytes(g), 4096);
	L->nodes = off;
	off = align_up(off + gs_task_heap_nodes_bytes(g), 4096);
	L->levels = off;
	off = align_up(off + gs_task_heap_levels_bytes(g), 4096);
	L->queues = off;
	off = align_up(off + gs_task_heap_queues_bytes(g), 4096);
	L->workers = off;
	off = align_up(off + gs_worker_pool_slots_bytes(g), 4096);
	L->wheap = off;
	off = align_up(off + gs_worker_heap_region_bytes(g), 4096);
	L->dirty = off;
	off = align_up(off + gs_worker_pool_dirty_bytes(g), 4096);
	L->pages = off;
	off = align_up(off + gs_arena_meta_bytes(g), 4096);
	L->arena = off;
	off = align_up(off + g->arena_bytes, 4096);
	L->keys = off;
	off = align_up(off + gs_idem_region_bytes(g), 4096);
	L->roles = off;
	off = align_up(off + gs_roles_region_bytes(), 4096);
	L->total = off;
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int name_check(const char *name)
{
	size_t n = strlen(name);
	if (n < 2 || n >= 64 || name[0] != '/' || strchr(name + 1, '/'))
		return GS_EINVAL;
	return GS_OK;
}

/* Byte of a named segment's object locked (F_OFD_SETLK) by whoever is making
 * it, from before its size is set until gs_seg_made: a segment not ready
 * whose lock is free was abandoned by a creator that died. */

static int making_lock(int fd, short type)
{
	struct flock fl = {
	    .l_type = type, .l_whence = SEEK_SET, .l_start = GS_SEG_MAKING_LOCK_BYTE, .l_len = 1};
	return fcntl(fd, F_OFD_SETLK, &fl);
}

/*
 * The name exists (EEXIST): take it over if it was abandoned unfinished.
 * Returns the descriptor, locked and emptied, or -1 with errno EEXIST
 * (finished, or being made by a live process: attach it) or another error.
 */
static int take_unfinished(const char *name)
{
	int fd = shm_open(name, O_RDWR, 0);
	if (fd < 0)
		return -1;
	if (making_lock(fd, F_WRLCK) != 0) {
		close(fd); /* its maker is alive */
		errno = EEXIST;
		return -1;
	}
	struct stat st;
	bool ready = false;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(struct gs_seg_header)) {
		struct gs_seg_header *h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
		if (h != MAP_FAILED) {
			ready = atomic_load_explicit(&h->ready, memory_order_acquire) != 0;
			munmap(h, sizeof(*h));
		}
	}
	/* Empty it: a fresh segment is all zeros, which formatting relies on
	 * (nobody maps a segment that is not ready). */
	if (ready || ftruncate(fd, 0) != 0) {
		close(fd);
		errno = EEXIST;
		return -1;
	}
	return fd;
}

int gs_seg_create(const char *name, const gs_geom *geom, bool replace, gs_seg *out)
{
	gs_geom g = *geom;
	gs_geom_defaults(&g);
	if (gs_geom_check(&g) != GS_OK)
		return GS_EINVAL;
	if (name && name_check(name) != GS_OK)
		return GS_EINVAL;
	gs_layout L;
	gs_layout_compute(&g, &L);

	memset(out, 0, sizeof(*out));
	void *base;
	if (name) {
		if (replace)
			shm_unlink(name);
		int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd >= 0 && making_lock(fd, F_WRLCK) != 0) {
			int e = errno;
			close(fd);
			shm_unlink(name);
			errno = e;
			return GS_EIO;
		}
		if (fd < 0 && errno == EEXIST && !replace)
			fd = take_unfinished(name);
		if (fd < 0)
			return GS_EIO;
		if (ftruncate(fd, (off_t)L.total) != 0) {
			int e = errno;
			close(fd);
			shm_unlink(name);
			errno = e;
			return GS_EIO;
		}
		base = mmap(NULL, L.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED) {
			int e = errno;
			close(fd);
			shm_unlink(name);
			errno = e;
			return GS_EIO;
		}
		snprintf(out->name, sizeof(out->name), "%s", name);
		out->named = true;
		out->has_fd = true;
		out->fd = fd;
	} else {
		base =
		    mmap(NULL, L.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED)
			return GS_EIO;
	}
	out->base = base;
	out->hdr = base;
	out->size = L.total;
	struct gs_seg_header *h = out->hdr;
	h->magic = GS_SEG_MAGIC;
	h->version = GS_SEG_VERSION;
	h->header_size = sizeof(*h);
	h->geom = g;
	h->layout = L;
	atomic_init(&h->owner_pid, (int32_t)getpid());
	atomic_init(&h->epoch, 1);
	atomic_init(&h->recoveries, 0);
	atomic_init(&h->created_us, wall_us());
	/* `ready` is set by the engine once every region is formatted. */
	atomic_init(&h->ready, 0);
	return GS_OK;
}

int gs_seg_attach(const char *name, gs_seg *out)
{
	if (!name || name_check(name) != GS_OK)
		return GS_EINVAL;
	memset(out, 0, sizeof(*out));
	int fd = shm_open(name, O_RDWR, 0);
	if (fd < 0)
		return errno == ENOENT ? GS_ENOTFOUND : GS_EIO;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return GS_EIO;
	}
	if ((size_t)st.st_size < sizeof(struct gs_seg_header)) {
		close(fd);
		return GS_ENOTFOUND; /* being made, or abandoned before its size was set */
	}
	void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		close(fd);
		return GS_EIO;
	}
	struct gs_seg_header *h = base;
	if (h->magic == 0) {
		/* Nothing written yet: being made, or abandoned (gs_seg_create). */
		munmap(base, (size_t)st.st_size);
		close(fd);
		return GS_ENOTFOUND;
	}
	gs_layout L;
	gs_layout_compute(&h->geom, &L);
	if (h->magic != GS_SEG_MAGIC || h->version != GS_SEG_VERSION ||
	    h->header_size != sizeof(*h) || gs_geom_check(&h->geom) != GS_OK ||
	    L.total != (uint64_t)st.st_size || memcmp(&L, &h->layout, sizeof(L)) != 0) {
		munmap(base, (size_t)st.st_size);
		close(fd);
		return GS_ELAYOUT;
	}
	out->has_fd = true;
	out->fd = fd;
	out->base = base;
	out->hdr = h;
	out->size = (size_t)st.st_size;
	out->named = true;
	snprintf(out->name, sizeof(out->name), "%s", name);
	return GS_OK;
}

void gs_seg_made(gs_seg *s)
{
	if (s->has_fd)
		making_lock(s->fd, F_UNLCK);
}

void gs_seg_detach(gs_seg *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->has_fd)
		close(s->fd);
	memset(s, 0, sizeof(*s));
}

int gs_seg_unlink(const char *name)
{
	if (!name || name_check(name) != GS_OK)
		return GS_EINVAL;
	if (shm_unlink(name) != 0)
		return errno == ENOENT ? GS_ENOTFOUND : GS_EIO;
	return GS_OK;
}

bool gs_seg_owner_dead(const gs_seg *s)
{
	int32_t pid = atomic_load_explicit(&s->hdr->owner_pid, memory_order_acquire);
	if (pid <= 0)
		return true;
	return kill(pid, 0) != 0 && errno == ESRCH;
}

uint64_t gs_seg_take_ownership(gs_seg *s)
{
	atomic_store_explicit(&s->hdr->owner_pid, (int32_t)getpid(), memory_order_release);
	return atomic_fetch_add_explicit(&s->hdr->epoch, 1, memory_order_acq_rel) + 1;
}
