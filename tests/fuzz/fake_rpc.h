/*
 * fake_rpc.h - an in-process stand-in for the gRPC server adapter
 * (src/rpc/rpc_server.h), for fuzzing the real service handlers.
 *
 * fake_rpc.c defines every gs_rpc_server_* / gs_rpc_call_* / gs_rpc_health_*
 * symbol the service objects (task_service.c, worker_service.c, ...) use, so
 * the fuzz harness links those objects without rpc_server.c and gRPC.  A
 * method registered with gs_rpc_server_add_method is kept by path; the harness
 * opens calls on it and delivers messages exactly as rpc_server.c would:
 * on_open, on_message*, on_half_close, then on_close once the call is over.
 * Everything a handler sends is kept (concatenated, as the real outbound queue
 * does) until the harness takes it and decodes it.
 */
#ifndef GS_FUZZ_FAKE_RPC_H
#define GS_FUZZ_FAKE_RPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_server.h"

struct fake_method {
	char path[96];
	enum gs_rpc_kind kind;
	const struct gs_rpc_method_ops *ops;
	void *ud;
};

struct gs_rpc_server {
	struct fake_method m[32];
	size_t n;
	gs_rpc_auth_fn auth; /* gs_rpc_server_set_auth: runs before on_open */
	void *auth_arg;
};

struct gs_rpc_call {
	atomic_int refs; /* gRPC's + the user's (+ gs_rpc_call_ref) */
	const struct fake_method *m;
	struct gs_rpc_server *srv;
	void *ud;       /* call_ud from on_open */
	bool finished;  /* gs_rpc_call_finish was called */
	bool cancelled; /* gs_rpc_call_cancel, or by the harness (peer) */
	bool closed;    /* on_close delivered */
	int code;       /* finish status */
	uint8_t *out;   /* everything sent, not yet taken */
	size_t out_len, out_cap;
	size_t max_queue; /* bound on out_len: over it send is GS_EFULL */
};

/* The method of that path, or NULL. */
const struct fake_method *fake_rpc_method(struct gs_rpc_server *srv, const char *path);
/* Opens a call (on_open); NULL if refused or out of memory. */
struct gs_rpc_call *fake_rpc_open(struct gs_rpc_server *srv, const struct fake_method *m);
/* Delivers one message / the half-close, unless the call is over. */
void fake_rpc_message(struct gs_rpc_call *c, const uint8_t *bytes, size_t len);
void fake_rpc_half_close(struct gs_rpc_call *c);
/* The peer goes away: the call is over, cancelled. */
void fake_rpc_peer_cancel(struct gs_rpc_call *c);
/* True once finish or cancel happened and on_close is due. */
bool fake_rpc_over(const struct gs_rpc_call *c);
/* Delivers on_close and drops gRPC's reference (the harness must not touch c
 * after this unless it holds a reference of its own). */
void fake_rpc_close(struct gs_rpc_call *c);
/* Live calls (for leak checks). */
extern atomic_long fake_rpc_live_calls;

#endif
