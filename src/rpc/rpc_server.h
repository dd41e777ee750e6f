/*
 * rpc_server.h - a gRPC server for opaque-bytes methods (gRPC core adapter).
 *
 * Owns: one grpc_server, its completion queue and polling thread(s), the
 * registered methods and every server-side call.  Methods are registered by
 * path ("/gsched.v1.TaskService/Submit") and kind; bytes in and out are
 * opaque here: encoding and decoding protobuf is the caller's job.
 *
 * Calls.  For each new call, the server's authorizer (gs_rpc_server_set_auth,
 * if set) runs first and may refuse it with a status; then the method's
 * callbacks run on a polling thread:
 *   on_open      - once; returns GS_OK to accept (it may store per-call user
 *                  data in *call_ud) or a gs_status to refuse the call, which
 *                  is then finished with the mapped gRPC code and sees no
 *                  other callback.
 *   on_message   - each received message (unary and server-stream: exactly
 *                  the one request).  The bytes are valid only during the
 *                  callback.  The next message is not read until it returns
 *                  (a slow callback applies flow control to the peer).
 *   on_half_close- bidi only: the peer will send nothing more.
 *   on_close     - last callback: the call is over (status sent, or cancelled
 *                  by the peer, a deadline, the transport or shutdown).
 * Callbacks of one call never run concurrently and never after on_close.
 * They may call gs_rpc_call_send/finish/cancel/unref on their own call, but
 * must not block for long (they run on a polling thread).
 *
 * Sending.  gs_rpc_call_send() copies the bytes into the call's outbound
 * queue and returns.  One SEND_MESSAGE is in flight per call; while it is,
 * further sends are appended to the queue, and when it completes everything
 * queued is written as ONE gRPC message made of the concatenated bytes
 * (protobuf merge semantics; see the batching rule in proto/gsched.proto).
 * Unary calls: everything sent is written as the single response message at
 * gs_rpc_call_finish() (OK status; an empty message if nothing was sent).
 * The queue is bounded (max_queue_bytes; for unary calls max_message_bytes,
 * as the queue is the response): over the bound a send returns
 * GS_EFULL and queues nothing, so the caller decides what a slow peer gets.
 *
 * Limits (gs_rpc_server_opts).  max_streams bounds the streaming calls
 * (server-stream and bidi) open at once, server-wide; max_connections bounds
 * the connections that have a call open at once, a connection being a peer
 * address (gs_rpc_call_peer: "ipv4:127.0.0.1:53412"; every Unix-socket peer
 * counts as one).  A call over either bound is finished at once with
 * RESOURCE_EXHAUSTED ("too many streams" / "too many connections") after the
 * authorizer let it through, before on_open, and is not counted; the calls
 * already open are untouched, and a slot frees when its call is over.  The
 * gRPC 1.51 core cannot refuse a TCP connection itself: an idle connection
 * (no call open) is not counted and is refused nothing until it calls.
 * Methods marked with gs_rpc_server_exempt_method (health probes) are never
 * counted nor refused.  A received message over max_message_bytes is refused
 * by gRPC itself with RESOURCE_EXHAUSTED (the call ends; on_message does not
 * see it).
 *
 * Lifetime.  A call holds two references: one for gRPC (dropped when the call
 * is over and no operation is in flight) and one for the user, given with
 * on_open (also when on_open is NULL).  The user drops it with gs_rpc_call_unref() once it will no
 * longer touch the call (often in on_close); gs_rpc_call_ref() takes more for other threads.  After
 * the call is over, send/finish return GS_EUNAVAIL; the accessors keep working until the last
 * reference goes.
 *
 * Thread-safety: gs_rpc_call_* are safe from any thread.  Server setup
 * (create, add_method, start) is single-threaded; gs_rpc_server_stop and
 * _destroy must not be called from a callback.
 * Errors: gs_status codes (src/engine/gs_error.h); nothing aborts on bad input.
 * Buffers: every function copies what it is given; nothing returned needs
 * freeing except as stated.
 */
#ifndef GS_RPC_SERVER_H
#define GS_RPC_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"
#include "rpc_tls.h"

struct gs_rpc_server;
struct gs_rpc_call;

enum gs_rpc_kind {
	GS_RPC_UNARY = 0,         /* one request, one response */
	GS_RPC_SERVER_STREAM = 1, /* one request, a stream of responses */
	GS_RPC_BIDI = 2,          /* streams both ways */
};

struct gs_rpc_server_opts {
	unsigned threads;          /* completion-queue polling threads, 1..16 (0: 1) */
	unsigned armed_per_method; /* calls kept requested per method, 1..256 (0: 8) */
	size_t max_message_bytes;  /* receive and send limit per message (0: 4 MiB) */
	size_t max_queue_bytes;    /* outbound queue bound per call (0 or more than
	                              max_message_bytes: max_message_bytes) */
	unsigned max_connections;  /* connections with a call open at once (0: no limit) */
	unsigned max_streams;      /* streaming calls open at once, server-wide (0: no limit) */
	/* Run first and last on each polling thread (may be NULL), e.g. to
	 * register the thread with an RCU flavor its callbacks use. */
	unsigned busy_poll_us; /* polling threads poll without sleeping this long after
	                          each event before they block (0: never; latency mode) */
	void (*on_thread_start)(void *thread_arg);
	void (*on_thread_stop)(void *thread_arg);
	void *thread_arg;
	/* NULL, or a lock held for reading around every on_open, on_message,
	 * on_half_close and on_close: whoever takes it for writing knows that
	 * no callback runs until it lets go (the server's role processes use
	 * it to stop at a safe point, roles.h).  Not owned; outlives the server.
	 * A callback must not take it itself. */
	pthread_rwlock_t *gate;
};

struct gs_rpc_method_ops {
	/* May be NULL: accept, with call_ud = method_ud. */
	int (*on_open)(struct gs_rpc_call *call, void *method_ud, void **call_ud);
	void (*on_message)(struct gs_rpc_call *call, void *call_ud, const uint8_t *bytes,
	                   size_t len);
	void (*on_half_close)(struct gs_rpc_call *call, void *call_ud); /* may be NULL */
	/* cancelled: 0 if the status was sent normally, 1 otherwise.  The user's
	 * reference is still held: drop it here or later with gs_rpc_call_unref. */
	void (*on_close)(struct gs_rpc_call *call, void *call_ud, int cancelled);
	/* May be NULL: called with method_ud when the server is destroyed. */
	void (*on_free)(void *method_ud);
};

/* Create a server (not listening yet).  opts may be NULL for defaults.
 * GS_EINVAL on bad options, GS_ENOMEM, GS_EIO if gRPC refused. */
int gs_rpc_server_create(const struct gs_rpc_server_opts *opts, struct gs_rpc_server **out);

/* Register a method before gs_rpc_server_start.  path like
 * "/pkg.Service/Method"; ops copied.  GS_EINVAL (bad path, duplicate path,
 * missing on_message, bad kind), GS_ESTATE (already started), GS_ENOMEM. */
int gs_rpc_server_add_method(struct gs_rpc_server *srv, const char *path, enum gs_rpc_kind kind,
                             const struct gs_rpc_method_ops *ops, void *method_ud);

/* Exempt a registered method (e.g. health checks) from max_connections and
 * max_streams: its calls are neither counted nor refused.  Before
 * gs_rpc_server_start.  GS_EINVAL (NULL, or path not registered),
 * GS_ESTATE (already started). */
int gs_rpc_server_exempt_method(struct gs_rpc_server *srv, const char *path);

/* Calls open now that count against the limits: streams (server-stream and
 * bidi) and connections (distinct peers).  Either pointer may be NULL.
 * Connections are counted only when max_connections is set (else 0). */
void gs_rpc_server_counts(struct gs_rpc_server *srv, size_t *streams, size_t *connections);

/* Checks every call (registered or not) before anything else: returns
 * GS_RPC_OK to let it through, or the gRPC code (enum gs_rpc_code) to finish
 * it with, with *message (a static string; never a secret) as its details.
 * Runs on a polling thread; reads the call's metadata and path only. */
typedef int (*gs_rpc_auth_fn)(const struct gs_rpc_call *call, void *arg, const char **message);

/* Install the authorizer (fn NULL: none, every call goes on) before
 * gs_rpc_server_start.  GS_EINVAL (srv NULL), GS_ESTATE (already started). */
int gs_rpc_server_set_auth(struct gs_rpc_server *srv, gs_rpc_auth_fn fn, void *arg);

/* Listen on addr ("127.0.0.1:0", "[::]:7070", "unix:/path"), insecure, and
 * start serving.  *bound_port (may be NULL) receives the port bound (port 0
 * asks for a free one).  Unknown methods are answered UNIMPLEMENTED.
 * GS_EIO if the address cannot be bound, GS_ESTATE if started or stopped. */
int gs_rpc_server_start(struct gs_rpc_server *srv, const char *addr, int *bound_port);

/* Like gs_rpc_server_start, over TLS when tls is not NULL (see rpc_tls.h:
 * certificate and key required; ca_file and require_client_cert for client
 * certificates).  The PEM files are read here.  GS_EINVAL (bad settings),
 * GS_EIO (a file cannot be read or is not PEM, gRPC refused the
 * certificate or key, or the address cannot be bound: err, which may be
 * NULL, says which, naming files but never their contents), GS_ESTATE. */
int gs_rpc_server_start_tls(struct gs_rpc_server *srv, const char *addr,
                            const struct gs_rpc_tls *tls, int *bound_port, char *err,
                            size_t err_len);

/* 1 once gs_rpc_server_stop has begun, else 0. */
int gs_rpc_server_is_stopping(const struct gs_rpc_server *srv);

/* Stop: refuse new calls, finish every open call with UNAVAILABLE "server
 * shutting down" (after what is already queued), wait up to grace_ms for the
 * calls to end, then cancel the rest and wait for them.  Every on_close has
 * run when this returns.  Idempotent. */
void gs_rpc_server_stop(struct gs_rpc_server *srv, int grace_ms);

/* Stop (with a 1 s grace period if not stopped yet) and free the server and
 * its methods (on_free).  Calls the user still references stay valid objects
 * (send/finish return GS_EUNAVAIL) until their last gs_rpc_call_unref. */
void gs_rpc_server_destroy(struct gs_rpc_server *srv);

/* Queue bytes for sending (see "Sending").  GS_EINVAL (bytes NULL with len
 * > 0), GS_ETOOBIG (len over max_message_bytes), GS_EFULL (queue bound),
 * GS_ESTATE (finish already requested), GS_EUNAVAIL (call over), GS_ENOMEM,
 * GS_EIO (gRPC refused the operation; the call is then cancelled). */
int gs_rpc_call_send(struct gs_rpc_call *call, const void *bytes, size_t len);

/* End the call: send what is queued, then status code (enum gs_rpc_code) with
 * message (may be NULL).  Unary: with GS_RPC_OK the queued bytes are the
 * response; with another code they are dropped.  GS_EINVAL (bad code),
 * GS_ESTATE (already finished), GS_EUNAVAIL (call over). */
int gs_rpc_call_finish(struct gs_rpc_call *call, int code, const char *message);

/* Cancel the call (peer sees CANCELLED).  GS_EUNAVAIL if already over. */
int gs_rpc_call_cancel(struct gs_rpc_call *call);

void gs_rpc_call_ref(struct gs_rpc_call *call);
void gs_rpc_call_unref(struct gs_rpc_call *call);

/* The per-call user data set by on_open (or method_ud). */
void *gs_rpc_call_user(const struct gs_rpc_call *call);
/* The method path and kind. */
const char *gs_rpc_call_method(const struct gs_rpc_call *call);
enum gs_rpc_kind gs_rpc_call_kind(const struct gs_rpc_call *call);
/* The peer address, e.g. "ipv4:127.0.0.1:53412" ("" if unknown). */
const char *gs_rpc_call_peer(const struct gs_rpc_call *call);
/* Look up a request header (e.g. "authorization"; case-insensitive key).
 * *value points into the call (NUL-terminated, *len bytes without the NUL;
 * len may be NULL), valid while the caller holds a reference.
 * GS_ENOTFOUND if absent, GS_EINVAL on NULL arguments. */
int gs_rpc_call_metadata(const struct gs_rpc_call *call, const char *key, const char **value,
                         size_t *len);
/* Milliseconds left before the client's deadline (INT64_MAX: none). */
int64_t gs_rpc_call_deadline_left_ms(const struct gs_rpc_call *call);
/* Bytes queued and not yet handed to gRPC. */
size_t gs_rpc_call_queued_bytes(struct gs_rpc_call *call);
void gs_rpc_call_stats(struct gs_rpc_call *call, struct gs_rpc_io_stats *out);

#endif /* GS_RPC_SERVER_H */
