/*
 * rpc_server.c - gRPC core server adapter (see rpc_server.h).
 *
 * Every completion-queue tag points at a `struct tag` embedded in the object
 * it belongs to (a request slot, a call, or the server for shutdown).
 *
 * Locks: srv->mu guards the server's lifecycle flags, the live-call list,
 * the limit counters (streams, peers) and the re-arming of requests; call->mu guards a call's state
 * and outbound queue; call->cb_mu serialises the user callbacks of one call.  Never hold two of
 * them at once, except cb_mu while a callback takes call->mu.
 */
#include "gs_clock.h"
#include "rpc_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "gs_error.h"
#include "rpc_io.h"

#define MAX_THREADS  16
#define MAX_ARMED    256
#define PEER_BUCKETS 1024 /* hash buckets of the connection count (power of two) */

enum tag_kind { TAG_REQUEST, TAG_CALL_RECV, TAG_CALL_SEND, TAG_CALL_CLOSE, TAG_SHUTDOWN };

/* The kind is stored with release once the owner is fully initialised and
 * loaded with acquire by the polling thread: gRPC's queue orders the two, but
 * in a way ThreadSanitizer cannot see (libgrpc is not instrumented). */
struct tag {
	_Atomic int kind;
	void *owner;
};

static void tag_set(struct tag *t, enum tag_kind kind, void *owner)
{
	t->owner = owner;
	atomic_store_explicit(&t->kind, (int)kind, memory_order_release);
}

struct method;

/* One armed grpc_server_request_(registered_)call. */
struct request {
	struct tag tag;
	struct gs_rpc_server *srv;
	struct method *m; /* NULL: the catch-all for unregistered methods */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details; /* catch-all only */
	bool armed;
};

struct method {
	char *path;
	enum gs_rpc_kind kind;
	bool exempt; /* not counted against max_connections / max_streams */
	struct gs_rpc_method_ops ops;
	void *ud;
	void *handle;
	struct request *reqs;
};

/* A peer address with admitted calls open (max_connections), under srv->mu. */
struct peer {
	struct peer *next;
	uint64_t hash;
	size_t calls;
	char key[];
};

struct gs_rpc_call {
	struct gs_rpc_server *srv; /* valid until the gRPC side is released */
	grpc_call *gcall;
	atomic_int refs;
	pthread_mutex_t mu;
	pthread_mutex_t cb_mu;
	pthread_rwlock_t *gate; /* opts.gate: read-held around every callback */
	struct tag recv_tag, send_tag, close_tag;

	/* fixed at creation */
	struct gs_rpc_method_ops ops;
	enum gs_rpc_kind kind;
	bool catch_all;
	char *path;
	char *peer;
	struct gs_md_copy md;
	gpr_timespec deadline;
	size_t max_queue;
	size_t max_message;
	void *ud;

	/* under mu */
	struct gs_outq q;
	grpc_byte_buffer *send_bb;
	grpc_byte_buffer *recv_bb;
	grpc_slice finish_details;
	int finish_code;
	int cancelled; /* written by RECV_CLOSE_ON_SERVER */
	bool recv_inflight, send_inflight;
	bool close_done; /* RECV_CLOSE_ON_SERVER completed: the call is over */
	bool broken;     /* an operation failed: no more sends */
	bool initial_md_sent;
	bool finish_requested, finish_sent, has_details;
	bool user_open;       /* on_open accepted: callbacks are due */
	bool close_delivered; /* on_close ran (or will run, claimed) */
	bool released;        /* the gRPC side is done */
	struct gs_rpc_io_stats st;

	/* under srv->mu */
	struct gs_rpc_call *prev, *next;
	struct peer *conn;   /* counted against max_connections (NULL: not) */
	bool counted_stream; /* counted against max_streams */
};

struct gs_rpc_server {
	grpc_server *gsrv;
	grpc_completion_queue *cq;
	pthread_t threads[MAX_THREADS];
	unsigned nthreads, threads_started;
	unsigned armed_per_method;
	size_t max_message, max_queue;
	struct gs_rpc_server_opts opts; /* as given: thread hooks, busy polling */
	gs_rpc_auth_fn auth;            /* fixed before start */
	void *auth_arg;

	struct method **methods;
	size_t nmethods;
	struct request *catch_all; /* armed_per_method slots */

	struct tag shutdown_tag;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool started;
	atomic_bool stopping;
	bool stopped;
	bool shutdown_done;
	bool destroying; /* grpc_server_destroy is under way: touch no new call */
	size_t live;
	struct gs_rpc_call *calls; /* live list */
	/* Limits (rpc_server.h, "Limits"), under mu. */
	unsigned max_connections, max_streams;
	size_t nstreams, nconns;
	struct peer **peers; /* PEER_BUCKETS chains; NULL without max_connections */
};

/* ------------------------------------------------------------------------ */
/* Calls                                                                     */

void gs_rpc_call_ref(struct gs_rpc_call *call)
{
	if (call)
		atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
}

static void call_free(struct gs_rpc_call *call)
{
	gs_outq_clear(&call->q);
	if (call->has_details)
		grpc_slice_unref(call->finish_details);
	gs_md_copy_free(&call->md);
	free(call->path);
	free(call->peer);
	pthread_mutex_destroy(&call->mu);
	pthread_mutex_destroy(&call->cb_mu);
	free(call);
}

void gs_rpc_call_unref(struct gs_rpc_call *call)
{
	if (call == NULL)
		return;
	/* acq_rel: the last owner sees every write made under other references. */
	if (atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) == 1)
		call_free(call);
}

/* True (once) when the gRPC side may be released: the call is over and no
 * operation is in flight.  Caller holds call->mu. */
static bool call_done_locked(struct gs_rpc_call *call)
{
	if (call->released || !call->close_done || call->recv_inflight || call->send_inflight)
		return false;
	call->released = true;
	return true;
}

/* ------------------------------------------------------------------------ */
/* Limits: streams and connections open at once                              */

static uint64_t peer_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/* Counts a new call against the limits, or says why it is refused (NULL:
 * admitted).  Caller holds srv->mu. */
static const char *limits_admit_locked(struct gs_rpc_server *srv, struct gs_rpc_call *call)
{
	bool stream = call->kind != GS_RPC_UNARY;
	if (stream && srv->max_streams && srv->nstreams >= srv->max_streams)
		return "too many streams: the server's --max-streams limit is reached";
	if (srv->peers && call->peer == NULL)
		return "server out of memory"; /* its peer name could not be copied */
	if (srv->peers) {
		uint64_t h = peer_hash(call->peer);
		struct peer **b = &srv->peers[h & (PEER_BUCKETS - 1)], *p = *b;
		while (p && !(p->hash == h && strcmp(p->key, call->peer) == 0))
			p = p->next;
		if (p == NULL) {
			if (srv->nconns >= srv->max_connections)
				return "too many connections: the server's --max-connections limit "
				       "is reached";
			size_t klen = strlen(call->peer);
			p = malloc(sizeof(*p) + klen + 1);
			if (p == NULL)
				return "server out of memory";
			memcpy(p->key, call->peer, klen + 1);
			p->hash = h;
			p->calls = 0;
			p->next = *b;
			*b = p;
			srv->nconns++;
		}
		p->calls++;
		call->conn = p;
	}
	if (stream) {
		srv->nstreams++;
		call->counted_stream = true;
	}
	return NULL;
}

/* Gives back what limits_admit_locked counted.  Caller holds srv->mu. */
static void limits_release_locked(struct gs_rpc_server *srv, struct gs_rpc_call *call)
{
	if (call->counted_stream) {
		srv->nstreams--;
		call->counted_stream = false;
	}
	struct peer *p = call->conn;
	call->conn = NULL;
	if (p == NULL || --p->calls > 0)
		return;
	struct peer **b = &srv->peers[p->hash & (PEER_BUCKETS - 1)];
	while (*b != p)
		b = &(*b)->next;
	*b = p->next;
	free(p);
	srv->nconns--;
}

void gs_rpc_server_counts(struct gs_rpc_server *srv, size_t *streams, size_t *connections)
{
	size_t s = 0, c = 0;
	if (srv) {
		pthread_mutex_lock(&srv->mu);
		s = srv->nstreams;
		c = srv->nconns;
		pthread_mutex_unlock(&srv->mu);
	}
	if (streams)
		*streams = s;
	if (connections)
		*connections = c;
}

static void call_release_grpc(struct gs_rpc_call *call)
{
	struct gs_rpc_server *srv = call->srv;
	grpc_call_unref(call->gcall);
	call->gcall = NULL;
	pthread_mutex_lock(&srv->mu);
	if (call->prev)
		call->prev->next = call->next;
	else
		srv->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	limits_release_locked(srv, call);
	srv->live--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->mu);
	gs_rpc_call_unref(call); /* the gRPC side's reference */
}

/* Start one batch with what is due: initial metadata, the queued bytes as one
 * message, the status.  Caller holds call->mu and checked !send_inflight. */
static int call_start_send_locked(struct gs_rpc_call *call)
{
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	bool with_status = call->finish_requested && !call->finish_sent;
	bool with_msg;
	if (call->kind == GS_RPC_UNARY)
		with_msg = with_status && call->finish_code == GS_RPC_OK && !call->catch_all;
	else
		with_msg = call->q.entries > 0;
	if (!with_msg && !with_status)
		return GS_OK;

	if (!call->initial_md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[n].data.send_initial_metadata.count = 0;
		n++;
	}
	grpc_byte_buffer *bb = NULL;
	size_t bytes = call->q.len;
	if (with_msg) {
		bb = gs_outq_take(&call->q);
		if (bb == NULL)
			return GS_ENOMEM;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = bb;
		n++;
	} else if (with_status) {
		gs_outq_clear(&call->q); /* a unary error status carries no message */
	}
	if (with_status) {
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.trailing_metadata_count = 0;
		ops[n].data.send_status_from_server.status = (grpc_status_code)call->finish_code;
		ops[n].data.send_status_from_server.status_details =
		    call->has_details ? &call->finish_details : NULL;
		n++;
	}
	grpc_call_error err = grpc_call_start_batch(call->gcall, ops, n, &call->send_tag, NULL);
	if (err != GRPC_CALL_OK) {
		if (bb)
			grpc_byte_buffer_destroy(bb);
		call->broken = true;
		gs_outq_clear(&call->q);
		grpc_call_cancel(call->gcall, NULL);
		return GS_EIO;
	}
	call->initial_md_sent = true;
	if (with_status)
		call->finish_sent = true;
	call->send_bb = bb;
	call->send_inflight = true;
	if (with_msg) {
		call->st.msgs_sent++;
		call->st.bytes_sent += bytes;
	}
	return GS_OK;
}

int gs_rpc_call_send(struct gs_rpc_call *call, const void *bytes, size_t len)
{
	if (call == NULL || (bytes == NULL && len > 0))
		return GS_EINVAL;
	if (len > call->max_message)
		return GS_ETOOBIG;
	int rc;
	pthread_mutex_lock(&call->mu);
	if (call->close_done || call->broken || call->released) {
		rc = GS_EUNAVAIL;
	} else if (call->finish_requested) {
		rc = GS_ESTATE;
	} else {
		rc = gs_outq_append(&call->q, bytes, len, call->max_queue);
		if (rc == GS_OK) {
			call->st.sends++;
			if (call->kind != GS_RPC_UNARY && !call->send_inflight)
				rc = call_start_send_locked(call);
		}
	}
	pthread_mutex_unlock(&call->mu);
	return rc;
}

static int call_finish_internal(struct gs_rpc_call *call, int code, const char *message)
{
	int rc = GS_OK;
	pthread_mutex_lock(&call->mu);
	if (call->finish_requested) {
		rc = GS_ESTATE;
	} else if (call->close_done || call->broken || call->released) {
		rc = GS_EUNAVAIL;
	} else {
		call->finish_requested = true;
		call->finish_code = code;
		if (message && *message) {
			call->finish_details = grpc_slice_from_copied_string(message);
			call->has_details = true;
		}
		if (!call->send_inflight)
			rc = call_start_send_locked(call);
	}
	pthread_mutex_unlock(&call->mu);
	return rc;
}

int gs_rpc_call_finish(struct gs_rpc_call *call, int code, const char *message)
{
	if (call == NULL || code < GS_RPC_OK || code > GS_RPC_UNAUTHENTICATED)
		return GS_EINVAL;
	return call_finish_internal(call, code, message);
}

int gs_rpc_call_cancel(struct gs_rpc_call *call)
{
	if (call == NULL)
		return GS_EINVAL;
	int rc = GS_OK;
	pthread_mutex_lock(&call->mu);
	if (call->close_done || call->released)
		rc = GS_EUNAVAIL;
	else
		grpc_call_cancel(call->gcall, NULL);
	pthread_mutex_unlock(&call->mu);
	return rc;
}

void *gs_rpc_call_user(const struct gs_rpc_call *call)
{
	return call ? call->ud : NULL;
}

const char *gs_rpc_call_method(const struct gs_rpc_call *call)
{
	return call && call->path ? call->path : "";
}

enum gs_rpc_kind gs_rpc_call_kind(const struct gs_rpc_call *call)
{
	return call ? call->kind : GS_RPC_UNARY;
}

const char *gs_rpc_call_peer(const struct gs_rpc_call *call)
{
	return call && call->peer ? call->peer : "";
}

int gs_rpc_call_metadata(const struct gs_rpc_call *call, const char *key, const char **value,
                         size_t *len)
{
	if (call == NULL || key == NULL || value == NULL)
		return GS_EINVAL;
	for (size_t i = 0; i < call->md.n; i++) {
		if (strcasecmp(call->md.keys[i], key) == 0) {
			*value = call->md.vals[i];
			if (len)
				*len = call->md.val_lens[i];
			return GS_OK;
		}
	}
	return GS_ENOTFOUND;
}

int64_t gs_rpc_call_deadline_left_ms(const struct gs_rpc_call *call)
{
	if (call == NULL)
		return 0;
	return gs_ms_until(call->deadline);
}

size_t gs_rpc_call_queued_bytes(struct gs_rpc_call *call)
{
	if (call == NULL)
		return 0;
	pthread_mutex_lock(&call->mu);
	size_t n = call->q.len;
	pthread_mutex_unlock(&call->mu);
	return n;
}

void gs_rpc_call_stats(struct gs_rpc_call *call, struct gs_rpc_io_stats *out)
{
	if (call == NULL || out == NULL)
		return;
	pthread_mutex_lock(&call->mu);
	*out = call->st;
	pthread_mutex_unlock(&call->mu);
}

/* Arm one RECV_MESSAGE.  Caller holds call->mu. */
static void call_arm_recv_locked(struct gs_rpc_call *call)
{
	if (call->close_done || call->broken || call->recv_inflight)
		return;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &call->recv_bb;
	call->recv_bb = NULL;
	if (grpc_call_start_batch(call->gcall, &op, 1, &call->recv_tag, NULL) == GRPC_CALL_OK) {
		call->recv_inflight = true;
	} else {
		call->broken = true;
		grpc_call_cancel(call->gcall, NULL);
	}
}

/* Around every user callback: the gate (opts.gate) read-held, then the
 * call's callback lock (one callback of a call at a time). */
static void cb_enter(struct gs_rpc_call *call)
{
	if (call->gate)
		pthread_rwlock_rdlock(call->gate);
	pthread_mutex_lock(&call->cb_mu);
}

static void cb_leave(struct gs_rpc_call *call)
{
	pthread_mutex_unlock(&call->cb_mu);
	if (call->gate)
		pthread_rwlock_unlock(call->gate);
}

/* Run on_close once when the call is over and no message is being delivered. */
static void call_maybe_deliver_close(struct gs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	bool due =
	    call->close_done && !call->recv_inflight && call->user_open && !call->close_delivered;
	if (due)
		call->close_delivered = true;
	int cancelled = call->cancelled != 0;
	pthread_mutex_unlock(&call->mu);
	if (!due)
		return;
	gs_rpc_call_ref(call); /* the callback may drop the user's reference */
	cb_enter(call);
	if (call->ops.on_close)
		call->ops.on_close(call, call->ud, cancelled);
	cb_leave(call);
	gs_rpc_call_unref(call);
}

static void call_deliver_message(struct gs_rpc_call *call, grpc_byte_buffer *bb)
{
	grpc_slice s;
	if (gs_bb_flatten(bb, &s) != GS_OK) {
		call_finish_internal(call, GS_RPC_INTERNAL, "cannot read the request message");
		return;
	}
	size_t len = GRPC_SLICE_LENGTH(s);
	pthread_mutex_lock(&call->mu);
	call->st.msgs_received++;
	call->st.bytes_received += len;
	pthread_mutex_unlock(&call->mu);
	cb_enter(call);
	if (!call->close_delivered && call->ops.on_message)
		call->ops.on_message(call, call->ud, GRPC_SLICE_START_PTR(s), len);
	cb_leave(call);
	grpc_slice_unref(s);
}

static void on_recv(struct gs_rpc_call *call, bool success)
{
	gs_rpc_call_ref(call);
	pthread_mutex_lock(&call->mu);
	grpc_byte_buffer *bb = call->recv_bb;
	call->recv_bb = NULL;
	pthread_mutex_unlock(&call->mu);
	bool half_close = false;
	if (success && bb) {
		call_deliver_message(call, bb);
		grpc_byte_buffer_destroy(bb);
	} else if (success) {
		half_close = true;
		cb_enter(call);
		if (!call->close_delivered && call->ops.on_half_close)
			call->ops.on_half_close(call, call->ud);
		cb_leave(call);
	}
	pthread_mutex_lock(&call->mu);
	call->recv_inflight = false;
	if (success && !half_close)
		call_arm_recv_locked(call);
	bool done = call_done_locked(call);
	pthread_mutex_unlock(&call->mu);
	call_maybe_deliver_close(call);
	if (done)
		call_release_grpc(call);
	gs_rpc_call_unref(call);
}

static void on_send(struct gs_rpc_call *call, bool success)
{
	gs_rpc_call_ref(call);
	pthread_mutex_lock(&call->mu);
	call->send_inflight = false;
	if (call->send_bb) {
		grpc_byte_buffer_destroy(call->send_bb);
		call->send_bb = NULL;
	}
	if (!success) {
		call->broken = true;
		gs_outq_clear(&call->q);
	} else if (!call->close_done && !call->broken) {
		call_start_send_locked(call); /* the queue as one message, and/or the status */
	}
	bool done = call_done_locked(call);
	pthread_mutex_unlock(&call->mu);
	if (done)
		call_release_grpc(call);
	gs_rpc_call_unref(call);
}

static void on_close_event(struct gs_rpc_call *call)
{
	gs_rpc_call_ref(call);
	pthread_mutex_lock(&call->mu);
	call->close_done = true;
	gs_outq_clear(&call->q);
	bool done = call_done_locked(call);
	pthread_mutex_unlock(&call->mu);
	call_maybe_deliver_close(call);
	if (done)
		call_release_grpc(call);
	gs_rpc_call_unref(call);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

/* (Re)arm a request slot, unless the server is stopping.  Caller holds srv->mu
 * (so that no request is armed after grpc_server_shutdown_and_notify). */
static void request_arm_locked(struct gs_rpc_server *srv, struct request *r)
{
	if (atomic_load(&srv->stopping) || r->armed)
		return;
	r->armed = true; /* before gRPC may complete it on another thread */
	r->call = NULL;
	r->payload = NULL;
	grpc_metadata_array_init(&r->md);
	grpc_call_error err;
	if (r->m) {
		err = grpc_server_request_registered_call(
		    srv->gsrv, r->m->handle, &r->call, &r->deadline, &r->md,
		    r->m->kind == GS_RPC_BIDI ? NULL : &r->payload, srv->cq, srv->cq, &r->tag);
	} else {
		grpc_call_details_init(&r->details);
		err = grpc_server_request_call(srv->gsrv, &r->call, &r->details, &r->md, srv->cq,
		                               srv->cq, &r->tag);
	}
	if (err != GRPC_CALL_OK) {
		r->armed = false;
		grpc_metadata_array_destroy(&r->md);
		if (!r->m)
			grpc_call_details_destroy(&r->details);
	}
}

static struct gs_rpc_call *call_new(struct gs_rpc_server *srv, struct request *r)
{
	struct gs_rpc_call *call = calloc(1, sizeof(*call));
	if (call == NULL)
		return NULL;
	pthread_mutex_init(&call->mu, NULL);
	pthread_mutex_init(&call->cb_mu, NULL);
	atomic_init(&call->refs, 1); /* the gRPC side; the user's comes with on_open */
	call->srv = srv;
	call->gate = srv->opts.gate;
	call->gcall = r->call;
	call->deadline = r->deadline;
	call->max_queue = srv->max_queue;
	call->max_message = srv->max_message;
	if (r->m) {
		call->ops = r->m->ops;
		call->kind = r->m->kind;
		if (call->kind == GS_RPC_UNARY) /* the queue is the response itself */
			call->max_queue = srv->max_message;
		call->path = strdup(r->m->path);
		call->ud = r->m->ud;
	} else {
		call->catch_all = true;
		call->kind = GS_RPC_UNARY;
		call->path = gs_slice_dup(r->details.method, NULL);
	}
	char *peer = grpc_call_get_peer(r->call);
	call->peer = strdup(peer ? peer : "");
	gpr_free(peer);
	if (gs_md_copy_from(&call->md, &r->md) != GS_OK) {
		/* Keep going without metadata: the call is still served. */
		gs_md_copy_free(&call->md);
	}
	/* Last: publishes everything above to the threads that complete ops. */
	tag_set(&call->recv_tag, TAG_CALL_RECV, call);
	tag_set(&call->send_tag, TAG_CALL_SEND, call);
	tag_set(&call->close_tag, TAG_CALL_CLOSE, call);
	return call;
}

static void on_request(struct gs_rpc_server *srv, struct request *r, bool success)
{
	/* srv->mu also orders this thread after the one that armed the slot. */
	pthread_mutex_lock(&srv->mu);
	r->armed = false;
	pthread_mutex_unlock(&srv->mu);
	if (!success) {
		/* Shutdown: the slot comes back unused. */
		grpc_metadata_array_destroy(&r->md);
		if (!r->m)
			grpc_call_details_destroy(&r->details);
		return;
	}
	struct gs_rpc_call *call = call_new(srv, r);
	grpc_byte_buffer *payload = r->payload;
	grpc_call *gcall = r->call;
	r->payload = NULL;
	r->call = NULL;
	grpc_metadata_array_destroy(&r->md);
	if (!r->m)
		grpc_call_details_destroy(&r->details);

	pthread_mutex_lock(&srv->mu);
	if (srv->destroying) {
		/* Defensive: a call matched after shutdown completed; drop it. */
		pthread_mutex_unlock(&srv->mu);
		grpc_call_cancel(gcall, NULL);
		grpc_call_unref(gcall);
		if (payload)
			grpc_byte_buffer_destroy(payload);
		if (call) {
			call->gcall = NULL;
			gs_rpc_call_unref(call);
		}
		return;
	}
	request_arm_locked(srv, r);
	bool stopping = atomic_load(&srv->stopping);
	const char *over_limit = NULL;
	if (call && !stopping && r->m && !r->m->exempt)
		over_limit = limits_admit_locked(srv, call);
	if (call) {
		call->next = srv->calls;
		if (srv->calls)
			srv->calls->prev = call;
		srv->calls = call;
		srv->live++;
	}
	pthread_mutex_unlock(&srv->mu);

	if (call == NULL) {
		/* Out of memory: refuse the call without tracking it. */
		grpc_call_cancel_with_status(gcall, GRPC_STATUS_RESOURCE_EXHAUSTED,
		                             "server out of memory", NULL);
		grpc_call_unref(gcall);
		if (payload)
			grpc_byte_buffer_destroy(payload);
		return;
	}

	/* Our own reference while we work on the call: once operations are
	 * started, other polling threads may end it. */
	gs_rpc_call_ref(call);
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &call->cancelled;
	pthread_mutex_lock(&call->mu);
	if (grpc_call_start_batch(call->gcall, &op, 1, &call->close_tag, NULL) != GRPC_CALL_OK) {
		/* Cannot happen on a fresh call; treat the call as over. */
		call->close_done = true;
		call->cancelled = 1;
		grpc_call_cancel(call->gcall, NULL);
	}
	bool done = call_done_locked(call);
	pthread_mutex_unlock(&call->mu);
	if (done) {
		if (payload)
			grpc_byte_buffer_destroy(payload);
		call_release_grpc(call);
		gs_rpc_call_unref(call);
		return;
	}

	int auth_code = GS_RPC_OK;
	const char *auth_msg = NULL;
	if (srv->auth)
		auth_code = srv->auth(call, srv->auth_arg, &auth_msg);
	if (auth_code != GS_RPC_OK) {
		if (auth_code < GS_RPC_CANCELLED || auth_code > GS_RPC_UNAUTHENTICATED)
			auth_code = GS_RPC_PERMISSION_DENIED;
		call_finish_internal(call, auth_code, auth_msg ? auth_msg : "not allowed");
	} else if (call->catch_all) {
		call_finish_internal(call, GS_RPC_UNIMPLEMENTED, "unknown method");
	} else if (stopping) {
		call_finish_internal(call, GS_RPC_UNAVAILABLE, "server shutting down");
	} else if (over_limit) {
		call_finish_internal(call, GS_RPC_RESOURCE_EXHAUSTED, over_limit);
	} else {
		int rc = GS_OK;
		gs_rpc_call_ref(call); /* the user's reference, if accepted */
		cb_enter(call);
		if (call->ops.on_open)
			rc = call->ops.on_open(call, r->m->ud, &call->ud);
		cb_leave(call);
		if (rc != GS_OK) {
			call_finish_internal(call, gs_rpc_code_from_status(rc), gs_strerror(rc));
			gs_rpc_call_unref(call);
		} else {
			pthread_mutex_lock(&call->mu);
			call->user_open = true;
			pthread_mutex_unlock(&call->mu);
			if (call->kind == GS_RPC_BIDI) {
				pthread_mutex_lock(&call->mu);
				call_arm_recv_locked(call);
				pthread_mutex_unlock(&call->mu);
			} else if (payload) {
				call_deliver_message(call, payload);
			} else {
				call_finish_internal(call, GS_RPC_INVALID_ARGUMENT,
				                     "missing request message");
			}
			/* The call may have ended before user_open was set. */
			call_maybe_deliver_close(call);
		}
	}
	if (payload)
		grpc_byte_buffer_destroy(payload);
	gs_rpc_call_unref(call);
}

/* ------------------------------------------------------------------------ */
/* Server                                                                    */

static void dispatch(struct gs_rpc_server *srv, struct tag *t, bool success)
{
	switch ((enum tag_kind)atomic_load_explicit(&t->kind, memory_order_acquire)) {
	case TAG_REQUEST:
		on_request(srv, t->owner, success);
		break;
	case TAG_CALL_RECV:
		on_recv(t->owner, success);
		break;
	case TAG_CALL_SEND:
		on_send(t->owner, success);
		break;
	case TAG_CALL_CLOSE:
		on_close_event(t->owner);
		break;
	case TAG_SHUTDOWN:
		pthread_mutex_lock(&srv->mu);
		srv->shutdown_done = true;
		pthread_cond_broadcast(&srv->cond);
		pthread_mutex_unlock(&srv->mu);
		break;
	}
}

static void *poll_thread(void *arg)
{
	struct gs_rpc_server *srv = arg;
	if (srv->opts.on_thread_start)
		srv->opts.on_thread_start(srv->opts.thread_arg);
	for (;;) {
		grpc_event ev = gs_rpc_cq_next(srv->cq, srv->opts.busy_poll_us);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(srv, ev.tag, ev.success != 0);
	}
	if (srv->opts.on_thread_stop)
		srv->opts.on_thread_stop(srv->opts.thread_arg);
	return NULL;
}

int gs_rpc_server_create(const struct gs_rpc_server_opts *opts, struct gs_rpc_server **out)
{
	if (out == NULL)
		return GS_EINVAL;
	*out = NULL;
	struct gs_rpc_server_opts o = {0};
	if (opts)
		o = *opts;
	if (o.threads == 0)
		o.threads = 1;
	if (o.armed_per_method == 0)
		o.armed_per_method = 8;
	if (o.max_message_bytes == 0)
		o.max_message_bytes = GS_RPC_DEFAULT_MAX_MESSAGE;
	if (o.threads > MAX_THREADS || o.armed_per_method > MAX_ARMED || o.busy_poll_us > 100000 ||
	    o.max_message_bytes > (size_t)INT32_MAX)
		return GS_EINVAL;
	if (o.max_queue_bytes == 0 || o.max_queue_bytes > o.max_message_bytes)
		o.max_queue_bytes = o.max_message_bytes;

	struct gs_rpc_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return GS_ENOMEM;
	srv->catch_all = calloc(o.armed_per_method, sizeof(struct request));
	if (srv->catch_all == NULL) {
		free(srv);
		return GS_ENOMEM;
	}
	srv->nthreads = o.threads;
	srv->armed_per_method = o.armed_per_method;
	srv->max_message = o.max_message_bytes;
	srv->max_queue = o.max_queue_bytes;
	srv->max_connections = o.max_connections;
	srv->max_streams = o.max_streams;
	if (o.max_connections) {
		srv->peers = calloc(PEER_BUCKETS, sizeof(*srv->peers));
		if (srv->peers == NULL) {
			free(srv->catch_all);
			free(srv);
			return GS_ENOMEM;
		}
	}
	srv->opts = o;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&srv->stopping, false);
	tag_set(&srv->shutdown_tag, TAG_SHUTDOWN, srv);
	for (unsigned i = 0; i < o.armed_per_method; i++) {
		srv->catch_all[i].srv = srv;
		tag_set(&srv->catch_all[i].tag, TAG_REQUEST, &srv->catch_all[i]);
	}

	gs_rpc_lib_ref();
	struct gs_chan_args ca_store;
	gs_chan_args_init(&ca_store, srv->max_message, false, 0);
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	srv->gsrv = grpc_server_create(&ca_store.args, NULL);
	if (srv->cq == NULL || srv->gsrv == NULL) {
		if (srv->gsrv)
			grpc_server_destroy(srv->gsrv);
		if (srv->cq)
			grpc_completion_queue_destroy(srv->cq);
		gs_rpc_lib_unref();
		free(srv->peers);
		free(srv->catch_all);
		free(srv);
		return GS_EIO;
	}
	grpc_server_register_completion_queue(srv->gsrv, srv->cq, NULL);
	*out = srv;
	return GS_OK;
}

int gs_rpc_server_add_method(struct gs_rpc_server *srv, const char *path, enum gs_rpc_kind kind,
                             const struct gs_rpc_method_ops *ops, void *method_ud)
{
	if (srv == NULL || path == NULL || path[0] != '/' || strlen(path) < 2 || ops == NULL ||
	    ops->on_message == NULL ||
	    (kind != GS_RPC_UNARY && kind != GS_RPC_SERVER_STREAM && kind != GS_RPC_BIDI))
		return GS_EINVAL;
	if (srv->started || atomic_load(&srv->stopping))
		return GS_ESTATE;
	for (size_t i = 0; i < srv->nmethods; i++)
		if (strcmp(srv->methods[i]->path, path) == 0)
			return GS_EINVAL;
	struct method **ms = realloc(srv->methods, (srv->nmethods + 1) * sizeof(*ms));
	if (ms == NULL)
		return GS_ENOMEM;
	srv->methods = ms;
	struct method *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return GS_ENOMEM;
	m->path = strdup(path);
	m->reqs = calloc(srv->armed_per_method, sizeof(struct request));
	if (m->path == NULL || m->reqs == NULL) {
		free(m->path);
		free(m->reqs);
		free(m);
		return GS_ENOMEM;
	}
	m->kind = kind;
	m->ops = *ops;
	m->ud = method_ud;
	m->handle = grpc_server_register_method(
	    srv->gsrv, path, NULL,
	    kind == GS_RPC_BIDI ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
	    0);
	if (m->handle == NULL) {
		free(m->path);
		free(m->reqs);
		free(m);
		return GS_EINVAL;
	}
	for (unsigned i = 0; i < srv->armed_per_method; i++) {
		m->reqs[i].srv = srv;
		m->reqs[i].m = m;
		tag_set(&m->reqs[i].tag, TAG_REQUEST, &m->reqs[i]);
	}
	srv->methods[srv->nmethods++] = m;
	return GS_OK;
}

int gs_rpc_server_exempt_method(struct gs_rpc_server *srv, const char *path)
{
	if (srv == NULL || path == NULL)
		return GS_EINVAL;
	if (srv->started || atomic_load(&srv->stopping))
		return GS_ESTATE;
	for (size_t i = 0; i < srv->nmethods; i++) {
		if (strcmp(srv->methods[i]->path, path) == 0) {
			srv->methods[i]->exempt = true;
			return GS_OK;
		}
	}
	return GS_EINVAL;
}

int gs_rpc_server_set_auth(struct gs_rpc_server *srv, gs_rpc_auth_fn fn, void *arg)
{
	if (srv == NULL)
		return GS_EINVAL;
	if (srv->started || atomic_load(&srv->stopping))
		return GS_ESTATE;
	srv->auth = fn;
	srv->auth_arg = arg;
	return GS_OK;
}

static void set_err(char *err, size_t err_len, const char *fmt, const char *a)
{
	if (err && err_len)
		snprintf(err, err_len, fmt, a);
}

/* The server's credentials: insecure without tls, else TLS from the PEM files. */
static grpc_server_credentials *server_creds(const struct gs_rpc_tls *tls, int *rc, char *err,
                                             size_t err_len)
{
	*rc = GS_OK;
	if (tls == NULL)
		return grpc_insecure_server_credentials_create();
	struct gs_tls_pem pem;
	*rc = gs_tls_pem_load(tls, true, &pem, err, err_len);
	if (*rc != GS_OK)
		return NULL;
	grpc_ssl_pem_key_cert_pair pair = {.private_key = pem.key, .cert_chain = pem.cert};
	grpc_ssl_client_certificate_request_type req = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
	if (pem.ca)
		req = tls->require_client_cert
		          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
		          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
	/* gRPC copies the PEM strings: ours are wiped at once. */
	grpc_server_credentials *creds =
	    grpc_ssl_server_credentials_create_ex(pem.ca, &pair, 1, req, NULL);
	gs_tls_pem_free(&pem);
	if (creds == NULL) {
		set_err(err, err_len, "gRPC refused the TLS settings (certificate %s)",
		        tls->cert_file);
		*rc = GS_EIO;
	}
	return creds;
}

int gs_rpc_server_start(struct gs_rpc_server *srv, const char *addr, int *bound_port)
{
	return gs_rpc_server_start_tls(srv, addr, NULL, bound_port, NULL, 0);
}

int gs_rpc_server_start_tls(struct gs_rpc_server *srv, const char *addr,
                            const struct gs_rpc_tls *tls, int *bound_port, char *err,
                            size_t err_len)
{
	if (err && err_len)
		err[0] = 0;
	if (srv == NULL || addr == NULL || *addr == 0)
		return GS_EINVAL;
	if (srv->started || atomic_load(&srv->stopping))
		return GS_ESTATE;
	int rc;
	grpc_server_credentials *creds = server_creds(tls, &rc, err, err_len);
	if (creds == NULL)
		return rc != GS_OK ? rc : GS_EIO;
	int port = grpc_server_add_http2_port(srv->gsrv, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		if (tls)
			set_err(err, err_len,
			        "cannot listen on %s (address in use or not valid, or gRPC "
			        "refused the TLS certificate or key)",
			        addr);
		else
			set_err(err, err_len, "cannot listen on %s (address in use or not valid)",
			        addr);
		return GS_EIO;
	}
	grpc_server_start(srv->gsrv);
	srv->started = true;
	for (unsigned i = 0; i < srv->nthreads; i++) {
		if (pthread_create(&srv->threads[i], NULL, poll_thread, srv) != 0)
			break;
		srv->threads_started++;
	}
	pthread_mutex_lock(&srv->mu);
	for (size_t i = 0; i < srv->nmethods; i++)
		for (unsigned j = 0; j < srv->armed_per_method; j++)
			request_arm_locked(srv, &srv->methods[i]->reqs[j]);
	for (unsigned j = 0; j < srv->armed_per_method; j++)
		request_arm_locked(srv, &srv->catch_all[j]);
	pthread_mutex_unlock(&srv->mu);
	if (srv->threads_started == 0) {
		gs_rpc_server_stop(srv, 0);
		return GS_EIO;
	}
	if (bound_port)
		*bound_port = port;
	return GS_OK;
}

int gs_rpc_server_is_stopping(const struct gs_rpc_server *srv)
{
	return srv ? atomic_load(&((struct gs_rpc_server *)srv)->stopping) : 1;
}

/* Wait until the shutdown tag came back and no call is live, or until
 * deadline (CLOCK_MONOTONIC; NULL: no limit).  Returns true if reached. */
static bool wait_drained(struct gs_rpc_server *srv, const struct timespec *deadline)
{
	bool ok = true;
	pthread_mutex_lock(&srv->mu);
	while (!(srv->shutdown_done && srv->live == 0)) {
		if (deadline == NULL) {
			pthread_cond_wait(&srv->cond, &srv->mu);
		} else if (pthread_cond_timedwait(&srv->cond, &srv->mu, deadline) == ETIMEDOUT) {
			ok = srv->shutdown_done && srv->live == 0;
			break;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	return ok;
}

void gs_rpc_server_stop(struct gs_rpc_server *srv, int grace_ms)
{
	if (srv == NULL)
		return;
	pthread_mutex_lock(&srv->mu);
	if (srv->stopped || atomic_load(&srv->stopping)) {
		pthread_mutex_unlock(&srv->mu);
		return;
	}
	atomic_store(&srv->stopping, true);
	pthread_mutex_unlock(&srv->mu);

	grpc_server_shutdown_and_notify(srv->gsrv, srv->cq, &srv->shutdown_tag);

	if (srv->threads_started == 0) {
		/* Never served: no thread polls the queue, so collect the tag here. */
		for (;;) {
			grpc_event ev = grpc_completion_queue_next(
			    srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
			if (ev.type == GRPC_OP_COMPLETE && ev.tag == &srv->shutdown_tag)
				break;
			if (ev.type == GRPC_OP_COMPLETE)
				dispatch(srv, ev.tag, ev.success != 0);
			if (ev.type == GRPC_QUEUE_SHUTDOWN)
				break;
		}
		srv->shutdown_done = true;
	}

	/* Finish the open calls with UNAVAILABLE, after what they have queued. */
	pthread_mutex_lock(&srv->mu);
	size_t n = srv->live, k = 0;
	struct gs_rpc_call **open = n ? calloc(n, sizeof(*open)) : NULL;
	for (struct gs_rpc_call *c = srv->calls; c && open && k < n; c = c->next) {
		gs_rpc_call_ref(c);
		open[k++] = c;
	}
	pthread_mutex_unlock(&srv->mu);
	for (size_t i = 0; i < k; i++) {
		call_finish_internal(open[i], GS_RPC_UNAVAILABLE, "server shutting down");
		gs_rpc_call_unref(open[i]);
	}
	free(open);

	struct timespec dl = gs_clock_after_ms(CLOCK_MONOTONIC, grace_ms);
	if (!wait_drained(srv, &dl)) {
		grpc_server_cancel_all_calls(srv->gsrv);
		wait_drained(srv, NULL); /* cancelled calls complete promptly */
	}

	pthread_mutex_lock(&srv->mu);
	srv->destroying = true;
	pthread_mutex_unlock(&srv->mu);
	grpc_server_destroy(srv->gsrv);
	srv->gsrv = NULL;
	grpc_completion_queue_shutdown(srv->cq);
	for (unsigned i = 0; i < srv->threads_started; i++)
		pthread_join(srv->threads[i], NULL);
	if (srv->threads_started == 0) {
		for (;;) {
			grpc_event ev = grpc_completion_queue_next(
			    srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
			if (ev.type == GRPC_QUEUE_SHUTDOWN)
				break;
		}
	}
	grpc_completion_queue_destroy(srv->cq);
	srv->cq = NULL;
	pthread_mutex_lock(&srv->mu);
	srv->stopped = true;
	pthread_mutex_unlock(&srv->mu);
}

void gs_rpc_server_destroy(struct gs_rpc_server *srv)
{
	if (srv == NULL)
		return;
	gs_rpc_server_stop(srv, 1000);
	for (size_t i = 0; i < srv->nmethods; i++) {
		struct method *m = srv->methods[i];
		if (m->ops.on_free)
			m->ops.on_free(m->ud);
		free(m->path);
		free(m->reqs);
		free(m);
	}
	free(srv->methods);
	free(srv->catch_all);
	free(srv->peers); /* empty: every call was released by the stop */
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cond);
	free(srv);
	gs_rpc_lib_unref();
}
