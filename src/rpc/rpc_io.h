/*
 * rpc_io.h - internal helpers shared by rpc_server.c and rpc_client.c.
 * Not for use outside src/rpc (it includes grpc headers).
 *
 * Owns: gRPC library init/shutdown refcounting (the only global state of the
 * RPC layer, kept by gRPC itself), the outbound byte queue that batches stream
 * sends by concatenation, reading received byte buffers (several slices,
 * compressed), deadline and channel-argument helpers.
 *
 * Thread-safety: gs_rpc_lib_* are safe from any thread.  A gs_outq is not
 * locked: its owner (a call or stream) guards it with its own mutex.
 * Errors: gs_status codes.
 */
#ifndef GS_RPC_IO_H
#define GS_RPC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc_status.h"
#include "rpc_tls.h"

/* The build passes GS_GRPC_CORE_MAJOR from pkg-config's grpc version; the
 * adapter is written against gRPC core 29 (gRPC 1.51). */
#ifndef GS_GRPC_CORE_MAJOR
#error "GS_GRPC_CORE_MAJOR not defined: build src/rpc through its CMakeLists.txt"
#elif GS_GRPC_CORE_MAJOR != 29
#error "src/rpc is written for gRPC core 29 (gRPC 1.51); check the adapter against this version"
#endif

#define GS_RPC_DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)

/* grpc_init()/grpc_shutdown() by reference: each server, client and stream
 * holds one reference for its lifetime. */
void gs_rpc_lib_ref(void);
void gs_rpc_lib_unref(void);

/* Outbound queue: the concatenated encodings of the sends not yet written. */
struct gs_outq {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t entries; /* sends appended since the last take */
};

/* Append n bytes; GS_EFULL if the queue would exceed limit bytes (nothing is
 * appended), GS_ENOMEM if growing failed. */
int gs_outq_append(struct gs_outq *q, const void *bytes, size_t n, size_t limit);
/* Move the queue's bytes into a new byte buffer (ownership of the memory goes
 * to the buffer's slice) and empty the queue.  NULL on allocation failure;
 * the queue is then emptied too. */
grpc_byte_buffer *gs_outq_take(struct gs_outq *q);
void gs_outq_clear(struct gs_outq *q);

/* A received message as one contiguous slice (decompressed, merged).
 * Returns GS_OK and a slice the caller unrefs, or GS_EPROTO if the buffer
 * cannot be read. */
int gs_bb_flatten(grpc_byte_buffer *bb, grpc_slice *out);

/* A malloc'd, NUL-terminated copy of a slice (*len, may be NULL: its length).
 * The slice's bytes are read by gRPC's own code (grpc_slice_to_c_string):
 * slices made on gRPC's threads are then never read by ours, which
 * ThreadSanitizer could not order (libgrpc is not instrumented).  NULL if
 * out of memory. */
char *gs_slice_dup(grpc_slice s, size_t *len);

/* now + ms as a realtime deadline; ms <= 0 gives "no deadline". */
gpr_timespec gs_deadline_ms(int ms);
/* Milliseconds from now until t (INT64_MAX for an infinite time, negative
 * if past). */
int64_t gs_ms_until(gpr_timespec t);

/* Channel args for the message size limits (send and receive); a client's
 * also turn retries off, set the reconnect backoff and give the channel a
 * connection of its own (a local subchannel pool).  `store` must outlive
 * the use of the returned args.  Two entries are left free for the caller
 * to append (args.num_args++). */
struct gs_chan_args {
	grpc_arg arg[12];
	grpc_channel_args args;
};
void gs_chan_args_init(struct gs_chan_args *store, size_t max_message, bool client,
                       int reconnect_max_ms);

/* A copied list of metadata (key, value) pairs. */
struct gs_md_copy {
	size_t n;
	char **keys;
	char **vals;
	size_t *val_lens;
};
int gs_md_copy_from(struct gs_md_copy *dst, const grpc_metadata_array *src);
void gs_md_copy_free(struct gs_md_copy *md);

/* Build a grpc_metadata array from gs_rpc_md pairs (slices the caller
 * releases with gs_md_out_free).  GS_EINVAL for an illegal key/value. */
int gs_md_out_build(const struct gs_rpc_md *md, size_t n, grpc_metadata **out);
void gs_md_out_free(grpc_metadata *md, size_t n);

/* The PEM contents a TLS configuration names (rpc_tls.c): NULL where not
 * set.  Loaded by gs_tls_pem_load (checks as gs_rpc_tls_check; err names the
 * file, never its bytes); gs_tls_pem_free wipes the memory and frees it. */
struct gs_tls_pem {
	char *cert, *key, *ca;
};
int gs_tls_pem_load(const struct gs_rpc_tls *tls, bool server, struct gs_tls_pem *out, char *err,
                    size_t err_len);
void gs_tls_pem_free(struct gs_tls_pem *p);

/*
 * grpc_completion_queue_next, polling without sleeping for up to spin_us
 * first (0: block at once).  A thread that spins picks up an event that
 * arrives within spin_us without the cost of being woken (tens of
 * microseconds on a virtual machine), at the price of that CPU time.
 */
grpc_event gs_rpc_cq_next(grpc_completion_queue *cq, unsigned spin_us);

#endif /* GS_RPC_IO_H */
