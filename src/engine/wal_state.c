/*
 * wal_state.c - the state fold: records in, live tasks and idempotency keys
 * out, for a restart to restore (see "The state fold" and "Idempotency
 * keys" in wal.h).  Uses only the public API.  Not thread-safe: one thread
 * at a time per gs_wal_state.
 */
#include "wal.h"

#include <stdlib.h>
#include <string.h>

#include "gs_error.h"

/* --- the state fold ------------------------------------------------------- */

struct st_task {
	uint64_t id;
	uint64_t order; /* first seen */
	bool released, has_spec;
	uint32_t state; /* 0 until final: QUEUED */
	char *queue;
	uint32_t priority, max_retries, timeout_ms;
	uint64_t submitted_us, not_before_us;
	void *spec;
	uint32_t spec_len;
	uint32_t attempt;
	int32_t status;
	uint32_t reason;
	uint64_t finished_us;
	void *result;
	uint32_t result_len;
};

/* An idempotency key as the log remembers it. */
struct st_keyent {
	uint8_t key[GS_WAL_MAX_KEY];
	uint32_t key_len;
	uint64_t digest, created_us;
	uint64_t *ids;
	uint32_t n;
	bool committed; /* from a snapshot: released tasks are legitimately absent */
	bool dead;      /* settled: cut before its acknowledgement, or no task left */
};

struct gs_wal_state {
	struct st_task *v;
	size_t n, cap;
	uint32_t *hash;    /* index + 1, 0 empty; open addressing */
	size_t hcap;       /* power of two */
	uint32_t gen_high; /* highest ID generation seen, or remembered by a snapshot */
	struct st_keyent *keys;
	size_t nk, kcap;
	uint32_t *khash; /* index + 1 into keys, open addressing */
	size_t khcap;
	size_t unacked; /* tasks dropped with a KEY cut before its acknowledgement */
};

static size_t id_hash(uint64_t id, size_t mask)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdull;
	id ^= id >> 33;
	return (size_t)id & mask;
}

int gs_wal_state_new(gs_wal_state **out)
{
	if (!out)
		return GS_EINVAL;
	*out = calloc(1, sizeof(**out));
	return *out ? GS_OK : GS_ENOMEM;
}

static void st_drop_data(struct st_task *t)
{
	free(t->queue);
	free(t->spec);
	free(t->result);
	t->queue = NULL;
	t->spec = NULL;
	t->result = NULL;
	t->spec_len = t->result_len = 0;
}

void gs_wal_state_free(gs_wal_state *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		st_drop_data(&s->v[i]);
	for (size_t i = 0; i < s->nk; i++)
		free(s->keys[i].ids);
	free(s->v);
	free(s->hash);
	free(s->keys);
	free(s->khash);
	free(s);
}

static size_t key_hash(const uint8_t *k, uint32_t n, size_t mask)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < n; i++) {
		h ^= k[i];
		h *= 0x100000001b3ull;
	}
	return id_hash(h, mask);
}

/* The key's entry, created (zeroed but for the key) if absent; NULL: no memory. */
static struct st_keyent *key_get(gs_wal_state *s, const void *key, uint32_t len)
{
	if (s->khcap) {
		size_t mask = s->khcap - 1;
		for (size_t h = key_hash(key, len, mask);; h = (h + 1) & mask) {
			uint32_t x = s->khash[h];
			if (!x)
				break;
			struct st_keyent *k = &s->keys[x - 1];
			if (k->key_len == len && memcmp(k->key, key, len) == 0)
				return k;
		}
	}
	if ((s->nk + 1) * 2 > s->khcap) {
		size_t hc = s->khcap ? s->khcap * 2 : 256;
		uint32_t *h = calloc(hc, sizeof(*h));
		if (!h)
			return NULL;
		for (size_t i = 0; i < s->nk; i++) {
			size_t j = key_hash(s->keys[i].key, s->keys[i].key_len, hc - 1);
			while (h[j])
				j = (j + 1) & (hc - 1);
			h[j] = (uint32_t)i + 1;
		}
		free(s->khash);
		s->khash = h;
		s->khcap = hc;
	}
	if (s->nk == s->kcap) {
		size_t c = s->kcap ? s->kcap * 2 : 64;
		struct st_keyent *v = realloc(s->keys, c * sizeof(*v));
		if (!v)
			return NULL;
		s->keys = v;
		s->kcap = c;
	}
	struct st_keyent *k = &s->keys[s->nk];
	memset(k, 0, sizeof(*k));
	memcpy(k->key, key, len);
	k->key_len = len;
	size_t j = key_hash(key, len, s->khcap - 1);
	while (s->khash[j])
		j = (j + 1) & (s->khcap - 1);
	s->khash[j] = (uint32_t)++s->nk;
	return k;
}

/* Folds a KEY record in: the later record of a key wins, an equal one
 * only adds its committed flag. */
static int key_apply(gs_wal_state *s, const gs_wal_rec *r)
{
	if (!r->key || r->key_len == 0 || r->key_len > GS_WAL_MAX_KEY || r->n_ids == 0)
		return GS_OK; /* cannot come from rec_decode */
	for (uint32_t i = 0; i < r->n_ids; i++) {
		uint32_t g = (uint32_t)(gs_wal_rec_id(r, i) >> 32);
		if (g > s->gen_high)
			s->gen_high = g;
	}
	struct st_keyent *k = key_get(s, r->key, r->key_len);
	if (!k)
		return GS_ENOMEM;
	bool same = k->ids && k->n == r->n_ids && k->digest == r->digest;
	for (uint32_t i = 0; same && i < r->n_ids; i++)
		same = k->ids[i] == gs_wal_rec_id(r, i);
	if (same) {
		k->committed |= (r->flags & GS_WAL_KEY_COMMITTED) != 0;
		return GS_OK;
	}
	uint64_t *ids = malloc((size_t)r->n_ids * sizeof(*ids));
	if (!ids)
		return GS_ENOMEM;
	for (uint32_t i = 0; i < r->n_ids; i++)
		ids[i] = gs_wal_rec_id(r, i);
	free(k->ids);
	k->ids = ids;
	k->n = r->n_ids;
	k->digest = r->digest;
	k->created_us = r->time_us;
	k->committed = (r->flags & GS_WAL_KEY_COMMITTED) != 0;
	k->dead = false;
	return GS_OK;
}

static struct st_task *st_find(const gs_wal_state *s, uint64_t id)
{
	if (!s->hcap)
		return NULL;
	size_t mask = s->hcap - 1;
	for (size_t h = id_hash(id, mask);; h = (h + 1) & mask) {
		uint32_t x = s->hash[h];
		if (!x)
			return NULL;
		if (s->v[x - 1].id == id)
			return &s->v[x - 1];
	}
}

static struct st_task *st_get(gs_wal_state *s, uint64_t id)
{
	struct st_task *t = st_find(s, id);
	if (t)
		return t;
	if (s->n >= UINT32_MAX - 1)
		return NULL;
	if ((s->n + 1) * 2 > s->hcap) {
		size_t hc = s->hcap ? s->hcap * 2 : 1024;
		uint32_t *h = calloc(hc, sizeof(*h));
		if (!h)
			return NULL;
		for (size_t i = 0; i < s->n; i++) {
			size_t j = id_hash(s->v[i].id, hc - 1);
			while (h[j])
				j = (j + 1) & (hc - 1);
			h[j] = (uint32_t)i + 1;
		}
		free(s->hash);
		s->hash = h;
		s->hcap = hc;
	}
	if (s->n == s->cap) {
		size_t c = s->cap ? s->cap * 2 : 256;
		struct st_task *v = realloc(s->v, c * sizeof(*v));
		if (!v)
			return NULL;
		s->v = v;
		s->cap = c;
	}
	t = &s->v[s->n];
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->order = s->n;
	size_t j = id_hash(id, s->hcap - 1);
	while (s->hash[j])
		j = (j + 1) & (s->hcap - 1);
	s->hash[j] = (uint32_t)++s->n;
	return t;
}

static void *dup_bytes(const void *p, uint32_t n, bool *oom)
{
	if (!n)
		return NULL;
	void *d = malloc(n);
	if (!d)
		*oom = true;
	else
		memcpy(d, p, n);
	return d;
}

int gs_wal_state_apply(gs_wal_state *s, const gs_wal_rec *r)
{
	if (!s || !r)
		return GS_EINVAL;
	if (r->type == GS_WAL_SNAPSHOT_END && r->gen_high > s->gen_high)
		s->gen_high = r->gen_high;
	if (r->type == GS_WAL_KEY)
		return key_apply(s, r);
	if (r->type < GS_WAL_SUBMIT || r->type > GS_WAL_RELEASE)
		return GS_OK; /* markers */
	if ((uint32_t)(r->task >> 32) > s->gen_high)
		s->gen_high = (uint32_t)(r->task >> 32);
	struct st_task *t = st_get(s, r->task);
	if (!t)
		return GS_ENOMEM;
	if (t->released)
		return GS_OK; /* gone for good */
	bool oom = false;
	switch (r->type) {
	case GS_WAL_SUBMIT:
		if (t->has_spec)
			break; /* a snapshot already had it: never reset a state */
		t->queue = strdup(r->queue ? r->queue : "default");
		oom = !t->queue;
		t->spec = dup_bytes(r->data, r->data_len, &oom);
		if (oom) {
			st_drop_data(t);
			break;
		}
		t->spec_len = r->data_len;
		t->priority = r->priority;
		t->max_retries = r->max_retries;
		t->timeout_ms = r->timeout_ms;
		t->submitted_us = r->time_us;
		t->not_before_us = r->not_before_us;
		t->has_spec = true;
		break;
	case GS_WAL_ASSIGN:
		if (r->attempt > t->attempt)
			t->attempt = r->attempt;
		break;
	case GS_WAL_COMPLETE: {
		void *res = dup_bytes(r->data, r->data_len, &oom);
		if (oom)
			break;
		free(t->result);
		t->result = res;
		t->result_len = r->data_len;
		t->state = r->state;
		t->status = r->status;
		t->reason = r->reason;
		t->finished_us = r->time_us;
		if (r->attempt > t->attempt)
			t->attempt = r->attempt;
		break;
	}
	case GS_WAL_CANCEL:
		free(t->result);
		t->result = NULL;
		t->result_len = 0;
		t->state = GS_TASK_CANCELLED;
		t->status = 0;
		t->reason = GS_REASON_CANCELLED;
		t->finished_us = r->time_us;
		break;
	case GS_WAL_RELEASE:
		st_drop_data(t);
		t->released = true;
		break;
	}
	return oom ? GS_ENOMEM : GS_OK;
}

int gs_wal_state_fn(void *arg, const gs_wal_rec *r)
{
	return gs_wal_state_apply(arg, r);
}

size_t gs_wal_state_count(const gs_wal_state *s)
{
	size_t n = 0;
	for (size_t i = 0; s && i < s->n; i++)
		n += !s->v[i].released && s->v[i].has_spec;
	return n;
}

uint32_t gs_wal_state_gen_high(const gs_wal_state *s)
{
	return s ? s->gen_high : 0;
}

size_t gs_wal_state_orphans(const gs_wal_state *s)
{
	size_t n = 0;
	for (size_t i = 0; s && i < s->n; i++)
		n += !s->v[i].released && !s->v[i].has_spec;
	return n;
}

static void st_view(const struct st_task *t, gs_wal_task *o)
{
	*o = (gs_wal_task){
	    .id = t->id,
	    .state = t->state ? t->state : GS_TASK_QUEUED,
	    .queue = t->queue,
	    .priority = t->priority,
	    .max_retries = t->max_retries,
	    .timeout_ms = t->timeout_ms,
	    .submitted_us = t->submitted_us,
	    .not_before_us = t->not_before_us,
	    .spec = t->spec,
	    .spec_len = t->spec_len,
	    .attempt = t->attempt,
	    .status = t->status,
	    .reason = t->reason,
	    .finished_us = t->finished_us,
	    .result = t->result,
	    .result_len = t->result_len,
	};
}

struct st_key {
	uint64_t submitted_us, order;
	size_t idx;
};

static int st_key_cmp(const void *a, const void *b)
{
	const struct st_key *x = a, *y = b;
	if (x->submitted_us != y->submitted_us)
		return x->submitted_us < y->submitted_us ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * Settles the keys once the replay is complete: a KEY not committed whose
 * tasks are not all in the log was cut before its acknowledgement, so it
 * and the tasks of it that made it go; a key with no live task is dead.
 */
static void keys_settle(gs_wal_state *s)
{
	for (size_t i = 0; i < s->nk; i++) {
		struct st_keyent *k = &s->keys[i];
		if (k->dead)
			continue;
		bool complete = true;
		for (uint32_t j = 0; j < k->n && !k->committed && complete; j++) {
			const struct st_task *t = st_find(s, k->ids[j]);
			complete = t && (t->has_spec || t->released);
		}
		bool alive = false;
		for (uint32_t j = 0; j < k->n; j++) {
			struct st_task *t = st_find(s, k->ids[j]);
			if (!t || t->released || !t->has_spec)
				continue;
			if (complete) {
				alive = true;
				break;
			}
			st_drop_data(t); /* never acknowledged: not restored */
			t->released = true;
			s->unacked++;
		}
		k->dead = !alive;
	}
}

int gs_wal_state_each_key(gs_wal_state *s, int (*fn)(void *arg, const gs_wal_key *k), void *arg)
{
	if (!s || !fn)
		return GS_EINVAL;
	keys_settle(s);
	int rc = GS_OK;
	for (size_t i = 0; i < s->nk && rc == GS_OK; i++) {
		const struct st_keyent *k = &s->keys[i];
		if (k->dead)
			continue;
		gs_wal_key v = {.key = k->key,
		                .key_len = k->key_len,
		                .digest = k->digest,
		                .created_us = k->created_us,
		                .ids = k->ids,
		                .n_ids = k->n};
		rc = fn(arg, &v);
	}
	return rc;
}

size_t gs_wal_state_keys(gs_wal_state *s)
{
	if (!s)
		return 0;
	keys_settle(s);
	size_t n = 0;
	for (size_t i = 0; i < s->nk; i++)
		n += !s->keys[i].dead;
	return n;
}

size_t gs_wal_state_unacked(gs_wal_state *s)
{
	if (!s)
		return 0;
	keys_settle(s);
	return s->unacked;
}

int gs_wal_state_each(gs_wal_state *s, int (*fn)(void *arg, const gs_wal_task *t), void *arg)
{
	if (!s || !fn)
		return GS_EINVAL;
	keys_settle(s);
	size_t n = gs_wal_state_count(s);
	if (!n)
		return GS_OK;
	struct st_key *k = malloc(n * sizeof(*k));
	if (!k)
		return GS_ENOMEM;
	size_t m = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (!s->v[i].released && s->v[i].has_spec)
			k[m++] = (struct st_key){s->v[i].submitted_us, s->v[i].order, i};
	}
	qsort(k, m, sizeof(*k), st_key_cmp);
	int rc = GS_OK;
	for (size_t i = 0; i < m && rc == GS_OK; i++) {
		gs_wal_task t;
		st_view(&s->v[k[i].idx], &t);
		rc = fn(arg, &t);
	}
	free(k);
	return rc;
}

int gs_wal_state_get(gs_wal_state *s, uint64_t id, gs_wal_task *out)
{
	if (!s || !out)
		return GS_EINVAL;
	const struct st_task *t = st_find(s, id);
	if (!t || t->released || !t->has_spec)
		return GS_ENOTFOUND;
	st_view(t, out);
	return GS_OK;
}

int gs_wal_replay_state(const char *dir, gs_wal_state **out, gs_wal_report *report)
{
	if (!out)
		return GS_EINVAL;
	*out = NULL;
	gs_wal_state *s;
	int rc = gs_wal_state_new(&s);
	if (rc != GS_OK)
		return rc;
	rc = gs_wal_replay(dir, gs_wal_state_fn, s, report);
	if (rc != GS_OK) {
		gs_wal_state_free(s);
		return rc;
	}
	*out = s;
	return GS_OK;
}
