/* worker_table.c - RCU hash table of worker records (liburcu cds_lfht). */
#include "worker_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "gs_error.h"

/*
 * ThreadSanitizer does not see liburcu's ordering (the library is not
 * instrumented): tell it what RCU guarantees.  Publishing a node
 * (cds_lfht_add_unique) happens before a reader that finds it uses it, and
 * every read-side critical section ends before a grace period that follows
 * it, hence before the frees that wait for that grace period.
 */
#if defined(__SANITIZE_THREAD__)
#define GS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GS_TSAN 1
#endif
#endif
#ifdef GS_TSAN
#include <sanitizer/tsan_interface.h>
static char grace_token; /* a sync object only: never read or written */
#define TSAN_RELEASE(p) __tsan_release(p)
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define TSAN_RELEASE(p) ((void)(p))
#define TSAN_ACQUIRE(p) ((void)(p))
#endif

struct gs_worker_table {
	struct cds_lfht *ht;
	void (*on_free)(void *ctx, void *arg);
	void *arg;
};

struct node {
	gs_worker_rec rec;
	struct cds_lfht_node ht_node;
	struct rcu_head rcu;
	gs_worker_table *owner;
};

static unsigned long hash_id(uint64_t id)
{
	/* splitmix64 finaliser: IDs differ in few bits. */
	id ^= id >> 30;
	id *= 0xbf58476d1ce4e5b9ull;
	id ^= id >> 27;
	id *= 0x94d049bb133111ebull;
	id ^= id >> 31;
	return (unsigned long)id;
}

static int match(struct cds_lfht_node *n, const void *key)
{
	const struct node *nd = caa_container_of(n, struct node, ht_node);
	TSAN_ACQUIRE((void *)nd); /* lookups read nodes on the way to theirs */
	return nd->rec.id == *(const uint64_t *)key;
}

int gs_worker_table_create(void (*on_free)(void *ctx, void *arg), void *arg, gs_worker_table **out)
{
	gs_worker_table *t = calloc(1, sizeof(*t));
	if (!t)
		return GS_ENOMEM;
	t->ht = cds_lfht_new_flavor(64, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
	                            &urcu_memb_flavor, NULL);
	if (!t->ht) {
		free(t);
		return GS_ENOMEM;
	}
	t->on_free = on_free;
	t->arg = arg;
	*out = t;
	return GS_OK;
}

static void free_node(struct rcu_head *h)
{
	struct node *nd = caa_container_of(h, struct node, rcu);
#ifdef GS_TSAN
	TSAN_ACQUIRE(&grace_token); /* after every reader that could see nd */
#endif
	if (nd->owner->on_free)
		nd->owner->on_free(nd->rec.ctx, nd->owner->arg);
	free(nd);
}

void gs_worker_table_destroy(gs_worker_table *t)
{
	if (!t)
		return;
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	urcu_memb_register_thread();
	urcu_memb_read_lock();
	cds_lfht_for_each(t->ht, &it, n)
	{
		if (cds_lfht_del(t->ht, n) == 0)
			urcu_memb_call_rcu(&caa_container_of(n, struct node, ht_node)->rcu,
			                   free_node);
	}
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
	/* Run every pending free before the owner goes away. */
	urcu_memb_barrier();
	cds_lfht_destroy(t->ht, NULL);
	free(t);
}

void gs_worker_table_thread_online(void)
{
	urcu_memb_register_thread();
}

void gs_worker_table_thread_offline(void)
{
	urcu_memb_unregister_thread();
}

void gs_worker_table_read_lock(void)
{
	urcu_memb_read_lock();
}

void gs_worker_table_read_unlock(void)
{
#ifdef GS_TSAN
	TSAN_RELEASE(&grace_token); /* this section ends before the next grace period */
#endif
	urcu_memb_read_unlock();
}

int gs_worker_table_add(gs_worker_table *t, uint64_t id, const char *name, void *ctx)
{
	struct node *nd = calloc(1, sizeof(*nd));
	if (!nd)
		return GS_ENOMEM;
	nd->rec.id = id;
	nd->rec.ctx = ctx;
	nd->owner = t;
	snprintf(nd->rec.name, sizeof(nd->rec.name), "%s", name ? name : "");
	cds_lfht_node_init(&nd->ht_node);
	TSAN_RELEASE(nd); /* the record's fields, before a reader can find it */
	urcu_memb_read_lock();
	struct cds_lfht_node *got =
	    cds_lfht_add_unique(t->ht, hash_id(id), match, &id, &nd->ht_node);
	urcu_memb_read_unlock();
	if (got != &nd->ht_node) {
		free(nd);
		return GS_EINVAL;
	}
	return GS_OK;
}

gs_worker_rec *gs_worker_table_find(gs_worker_table *t, uint64_t id)
{
	struct cds_lfht_iter it;
	cds_lfht_lookup(t->ht, hash_id(id), match, &id, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	if (!n)
		return NULL;
	struct node *nd = caa_container_of(n, struct node, ht_node);
	TSAN_ACQUIRE(nd);
	return &nd->rec;
}

int gs_worker_table_remove(gs_worker_table *t, uint64_t id)
{
	int rc = GS_ENOTFOUND;
	urcu_memb_read_lock();
	struct cds_lfht_iter it;
	cds_lfht_lookup(t->ht, hash_id(id), match, &id, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	if (n && cds_lfht_del(t->ht, n) == 0) {
		urcu_memb_call_rcu(&caa_container_of(n, struct node, ht_node)->rcu, free_node);
		rc = GS_OK;
	}
	urcu_memb_read_unlock();
	return rc;
}

void gs_worker_table_each(gs_worker_table *t, void (*fn)(gs_worker_rec *r, void *arg), void *arg)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	cds_lfht_for_each(t->ht, &it, n)
	{
		fn(&caa_container_of(n, struct node, ht_node)->rec, arg);
	}
}

unsigned long gs_worker_table_count(gs_worker_table *t)
{
	long split_before, split_after;
	unsigned long count;
	urcu_memb_read_lock();
	cds_lfht_count_nodes(t->ht, &split_before, &count, &split_after);
	urcu_memb_read_unlock();
	return count;
}
