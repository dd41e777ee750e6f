/*
 * health.h - the standard gRPC health service (grpc.health.v1.Health/Check)
 * served on a gs_rpc_server, so that standard probes work.
 *
 * Owns: a small table of service names and their serving state.  Check with
 * service "" asks about the server as a whole.  The answer is SERVING or
 * NOT_SERVING as set, and NOT_SERVING for everything once the server is
 * stopping; an unknown service name gets status NOT_FOUND (as the health
 * protocol says).  Watch is not served (clients then see UNIMPLEMENTED, which
 * the protocol treats as "health checking not supported").  Check is exempt
 * from the server's connection and stream limits (rpc_server.h, "Limits").
 *
 * Thread-safety: gs_rpc_health_set is safe from any thread, concurrently with
 * Check calls.  Errors: gs_status codes.  The gs_rpc_health object is owned by
 * the server (freed by gs_rpc_server_destroy).
 */
#ifndef GS_RPC_HEALTH_H
#define GS_RPC_HEALTH_H

#include <stdbool.h>

#include "rpc_server.h"

#define GS_RPC_HEALTH_CHECK_PATH   "/grpc.health.v1.Health/Check"
#define GS_RPC_HEALTH_MAX_SERVICES 32

struct gs_rpc_health;

/* Register Check on srv (before gs_rpc_server_start).  The overall service ""
 * starts SERVING.  *out (may be NULL) receives the handle for
 * gs_rpc_health_set.  GS_EINVAL, GS_ESTATE (server started), GS_ENOMEM. */
int gs_rpc_health_register(struct gs_rpc_server *srv, struct gs_rpc_health **out);

/* Set (adding if new) a service's state; "" is the server as a whole.
 * GS_EINVAL (NULL or name over 200 bytes), GS_EFULL (too many services). */
int gs_rpc_health_set(struct gs_rpc_health *h, const char *service, bool serving);

#endif /* GS_RPC_HEALTH_H */
