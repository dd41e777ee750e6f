/*
 * rpc_status.h - gRPC status codes and the small types shared by the RPC
 * server and client.
 *
 * Owns: the mapping between gsched's gs_status codes (src/engine/gs_error.h)
 * and gRPC's canonical status codes, the metadata pair type and the I/O
 * counters type.  This header does not include any grpc header: code outside
 * src/rpc uses these numbers instead.  The gs_rpc_code values are gRPC's own
 * numbers (checked at compile time in rpc_status.c).
 *
 * Thread-safety: pure functions over static data; safe from any thread.
 * Errors: none; unknown inputs map to a documented default.
 */
#ifndef GS_RPC_STATUS_H
#define GS_RPC_STATUS_H

#include <stddef.h>
#include <stdint.h>

/* gRPC canonical status codes (same numbers as grpc_status_code). */
enum gs_rpc_code {
	GS_RPC_OK = 0,
	GS_RPC_CANCELLED = 1,
	GS_RPC_UNKNOWN = 2,
	GS_RPC_INVALID_ARGUMENT = 3,
	GS_RPC_DEADLINE_EXCEEDED = 4,
	GS_RPC_NOT_FOUND = 5,
	GS_RPC_ALREADY_EXISTS = 6,
	GS_RPC_PERMISSION_DENIED = 7,
	GS_RPC_RESOURCE_EXHAUSTED = 8,
	GS_RPC_FAILED_PRECONDITION = 9,
	GS_RPC_ABORTED = 10,
	GS_RPC_OUT_OF_RANGE = 11,
	GS_RPC_UNIMPLEMENTED = 12,
	GS_RPC_INTERNAL = 13,
	GS_RPC_UNAVAILABLE = 14,
	GS_RPC_DATA_LOSS = 15,
	GS_RPC_UNAUTHENTICATED = 16,
};

/* One metadata entry (header) sent with a call.  Keys are lowercase ASCII
 * ([0-9a-z_.-]); values printable ASCII (keys ending in "-bin" take any bytes
 * up to the NUL).  Both are copied by the call that takes them. */
struct gs_rpc_md {
	const char *key;
	const char *value;
};

/* Per call / per stream counters.  `sends` counts gs_rpc_*_send() calls that
 * were accepted; `msgs_sent` counts gRPC messages actually written (fewer than
 * sends when the outbound queue concatenated entries). */
struct gs_rpc_io_stats {
	uint64_t sends;
	uint64_t msgs_sent;
	uint64_t bytes_sent;
	uint64_t msgs_received;
	uint64_t bytes_received;
};

/* The gRPC code that reports a gs_status: GS_OK -> OK, GS_EINVAL/GS_EPROTO ->
 * INVALID_ARGUMENT, GS_ENOTFOUND -> NOT_FOUND, GS_EFULL/GS_ETOOBIG/GS_ENOMEM ->
 * RESOURCE_EXHAUSTED, GS_ESTATE/GS_ESTALE/GS_EEMPTY/GS_ELAYOUT ->
 * FAILED_PRECONDITION, GS_EBUSY -> ABORTED, GS_EUNAVAIL -> UNAVAILABLE,
 * GS_ETIMEOUT -> DEADLINE_EXCEEDED, GS_EAUTH -> UNAUTHENTICATED, GS_EIO and
 * anything unknown -> INTERNAL. */
int gs_rpc_code_from_status(int gs_status);

/* The gs_status a client reports for a gRPC code: OK -> GS_OK,
 * INVALID_ARGUMENT/OUT_OF_RANGE -> GS_EINVAL, NOT_FOUND -> GS_ENOTFOUND,
 * RESOURCE_EXHAUSTED -> GS_EFULL, FAILED_PRECONDITION/ALREADY_EXISTS ->
 * GS_ESTATE, ABORTED -> GS_EBUSY, UNAVAILABLE/CANCELLED -> GS_EUNAVAIL,
 * DEADLINE_EXCEEDED -> GS_ETIMEOUT, UNAUTHENTICATED/PERMISSION_DENIED ->
 * GS_EAUTH, UNIMPLEMENTED/DATA_LOSS -> GS_EPROTO, others -> GS_EIO. */
int gs_rpc_status_from_code(int code);

/* "OK", "INVALID_ARGUMENT", ...; "UNKNOWN_CODE" for numbers out of range. */
const char *gs_rpc_code_name(int code);

#endif /* GS_RPC_STATUS_H */
