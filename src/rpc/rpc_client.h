/*
 * rpc_client.h - a gRPC client for opaque-bytes methods (gRPC core adapter).
 *
 * Owns: a channel to one target (insecure, or TLS with opts.tls), blocking unary calls, and
 * streams (server-stream or bidi), each stream with its own completion queue
 * and thread.  Bytes in and out are opaque: protobuf encoding is the caller's.
 *
 * Each client has a TCP connection of its own (not shared with other
 * clients of the process), so a server counts and tells them apart.
 *
 * Failing fast: calls do not wait for the connection to become ready
 * (wait_for_ready is off), so an unreachable server fails a call with
 * UNAVAILABLE (GS_EUNAVAIL) as soon as the connection attempt fails, and every
 * unary call has a deadline, so nothing hangs.
 *
 * Streams.  on_message runs on the stream's thread for every received
 * message (bytes valid during the callback; the next message is not read
 * before it returns).  on_close runs once, last, with the final status.
 * Sending follows the server's rule: one message in flight; what is sent
 * meanwhile is queued (bounded: GS_EFULL over max_queue_bytes) and written as
 * ONE message of concatenated bytes when the previous send completes.
 *
 * Thread-safety: gs_rpc_client_unary and gs_rpc_stream_open are safe from any
 * thread on one client; gs_rpc_stream_send/close_send/cancel/wait/stats from
 * any thread.  gs_rpc_stream_destroy once per stream; called from the
 * stream's own callback it cancels the stream and frees it when its thread
 * ends.  A client may be destroyed while streams it opened are alive.
 * Errors: gs_status codes; a call that ended with a non-OK gRPC status
 * returns gs_rpc_status_from_code(code) and reports the code itself too.
 * Buffers: inputs are copied; gs_rpc_reply data is the caller's to free with
 * gs_rpc_reply_free.
 */
#ifndef GS_RPC_CLIENT_H
#define GS_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_server.h" /* enum gs_rpc_kind */
#include "rpc_status.h"
#include "rpc_tls.h"

struct gs_rpc_client;
struct gs_rpc_stream;

struct gs_rpc_client_opts {
	size_t max_message_bytes; /* send and receive limit (0: 4 MiB) */
	size_t max_queue_bytes;   /* per-stream outbound bound (0 or more: max_message_bytes) */
	int reconnect_max_ms;     /* upper bound of the reconnect backoff (0: 2000) */
	unsigned busy_poll_us;    /* stream threads poll without sleeping this long after
	                             each event before they block (0: never; latency mode) */
	/* NULL: insecure.  Else TLS (rpc_tls.h): ca_file verifies the server
	 * (NULL: gRPC's default roots), cert_file + key_file are the client's
	 * own certificate for mutual TLS (optional), target_name overrides the
	 * name checked in the server's certificate.  Read during create. */
	const struct gs_rpc_tls *tls;
};

/* The outcome of a unary call. */
struct gs_rpc_reply {
	int code;      /* enum gs_rpc_code */
	char *details; /* status message, NUL-terminated ("" if none) */
	uint8_t *data; /* response bytes (NULL if none) */
	size_t len;
};

struct gs_rpc_stream_ops {
	void (*on_message)(struct gs_rpc_stream *s, void *ud, const uint8_t *bytes, size_t len);
	/* code: enum gs_rpc_code; details valid during the callback. */
	void (*on_close)(struct gs_rpc_stream *s, void *ud, int code, const char *details);
};

/* target: "127.0.0.1:7070", "dns:///host:port", "unix:/path".  opts may be
 * NULL.  Connecting is lazy: a bad target, or a TLS handshake that fails
 * (UNAVAILABLE), shows up on the first call.  GS_EINVAL (bad options, TLS
 * certificate without key), GS_ENOMEM, GS_EIO (a TLS file cannot be read or
 * is not PEM: gs_rpc_tls_check says why, gRPC refused). */
int gs_rpc_client_create(const char *target, const struct gs_rpc_client_opts *opts,
                         struct gs_rpc_client **out);
void gs_rpc_client_destroy(struct gs_rpc_client *c);

/* Blocking unary call of method ("/pkg.Service/Method") with request bytes
 * and optional metadata, bounded by timeout_ms (<= 0: 30 s).  reply is always
 * filled (free it with gs_rpc_reply_free).  Returns GS_OK if the status was
 * OK; GS_EUNAVAIL (unreachable, shutting down), GS_ETIMEOUT (deadline), or the
 * mapping of the status; GS_EINVAL for bad arguments (reply code INTERNAL). */
int gs_rpc_client_unary(struct gs_rpc_client *c, const char *method, const void *req,
                        size_t req_len, const struct gs_rpc_md *md, size_t n_md, int timeout_ms,
                        struct gs_rpc_reply *reply);
void gs_rpc_reply_free(struct gs_rpc_reply *reply);

/* Open a stream.  kind GS_RPC_SERVER_STREAM sends req (one message) and
 * half-closes at once; GS_RPC_BIDI ignores req (send with gs_rpc_stream_send).
 * timeout_ms bounds the whole stream (<= 0: none).  A failure to connect is
 * reported through on_close (UNAVAILABLE), not here.  GS_EINVAL, GS_ENOMEM,
 * GS_EIO (gRPC refused). */
int gs_rpc_stream_open(struct gs_rpc_client *c, const char *method, enum gs_rpc_kind kind,
                       const void *req, size_t req_len, const struct gs_rpc_md *md, size_t n_md,
                       int timeout_ms, const struct gs_rpc_stream_ops *ops, void *ud,
                       struct gs_rpc_stream **out);

/* Queue bytes (bidi).  GS_EINVAL, GS_ETOOBIG (over max_message_bytes),
 * GS_EFULL (queue bound), GS_ESTATE (half-closed or not bidi), GS_EUNAVAIL
 * (stream over), GS_ENOMEM, GS_EIO. */
int gs_rpc_stream_send(struct gs_rpc_stream *s, const void *bytes, size_t len);
/* Half-close after what is queued.  GS_ESTATE if already half-closed,
 * GS_EUNAVAIL if the stream is over. */
int gs_rpc_stream_close_send(struct gs_rpc_stream *s);
/* Cancel (on_close will see CANCELLED unless the status already came). */
int gs_rpc_stream_cancel(struct gs_rpc_stream *s);
/* Wait up to timeout_ms (< 0: no limit) for on_close to have returned.
 * GS_OK and *code (may be NULL) = the final status, or GS_ETIMEOUT. */
int gs_rpc_stream_wait(struct gs_rpc_stream *s, int timeout_ms, int *code);
void gs_rpc_stream_stats(struct gs_rpc_stream *s, struct gs_rpc_io_stats *out);
/* Cancel if still open, wait for on_close, join the thread, free. */
void gs_rpc_stream_destroy(struct gs_rpc_stream *s);

#endif /* GS_RPC_CLIENT_H */
