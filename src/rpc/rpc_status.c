/* rpc_status.c - gs_status <-> gRPC status code mapping. */
#include "rpc_status.h"

#include <grpc/status.h>

#include "gs_error.h"

/* Our numbers are gRPC's numbers: the mapping below relies on it. */
_Static_assert(GS_RPC_OK == (int)GRPC_STATUS_OK, "code mismatch");
_Static_assert(GS_RPC_CANCELLED == (int)GRPC_STATUS_CANCELLED, "code mismatch");
_Static_assert(GS_RPC_UNKNOWN == (int)GRPC_STATUS_UNKNOWN, "code mismatch");
_Static_assert(GS_RPC_INVALID_ARGUMENT == (int)GRPC_STATUS_INVALID_ARGUMENT, "code mismatch");
_Static_assert(GS_RPC_DEADLINE_EXCEEDED == (int)GRPC_STATUS_DEADLINE_EXCEEDED, "code mismatch");
_Static_assert(GS_RPC_NOT_FOUND == (int)GRPC_STATUS_NOT_FOUND, "code mismatch");
_Static_assert(GS_RPC_ALREADY_EXISTS == (int)GRPC_STATUS_ALREADY_EXISTS, "code mismatch");
_Static_assert(GS_RPC_PERMISSION_DENIED == (int)GRPC_STATUS_PERMISSION_DENIED, "code mismatch");
_Static_assert(GS_RPC_RESOURCE_EXHAUSTED == (int)GRPC_STATUS_RESOURCE_EXHAUSTED, "code mismatch");
_Static_assert(GS_RPC_FAILED_PRECONDITION == (int)GRPC_STATUS_FAILED_PRECONDITION, "code mismatch");
_Static_assert(GS_RPC_ABORTED == (int)GRPC_STATUS_ABORTED, "code mismatch");
_Static_assert(GS_RPC_OUT_OF_RANGE == (int)GRPC_STATUS_OUT_OF_RANGE, "code mismatch");
_Static_assert(GS_RPC_UNIMPLEMENTED == (int)GRPC_STATUS_UNIMPLEMENTED, "code mismatch");
_Static_assert(GS_RPC_INTERNAL == (int)GRPC_STATUS_INTERNAL, "code mismatch");
_Static_assert(GS_RPC_UNAVAILABLE == (int)GRPC_STATUS_UNAVAILABLE, "code mismatch");
_Static_assert(GS_RPC_DATA_LOSS == (int)GRPC_STATUS_DATA_LOSS, "code mismatch");
_Static_assert(GS_RPC_UNAUTHENTICATED == (int)GRPC_STATUS_UNAUTHENTICATED, "code mismatch");

int gs_rpc_code_from_status(int gs_status)
{
	switch (gs_status) {
	case GS_OK:
		return GS_RPC_OK;
	case GS_EINVAL:
	case GS_EPROTO:
		return GS_RPC_INVALID_ARGUMENT;
	case GS_ENOTFOUND:
		return GS_RPC_NOT_FOUND;
	case GS_EFULL:
	case GS_ETOOBIG:
	case GS_ENOMEM:
		return GS_RPC_RESOURCE_EXHAUSTED;
	case GS_ESTATE:
	case GS_ESTALE:
	case GS_EEMPTY:
	case GS_ELAYOUT:
		return GS_RPC_FAILED_PRECONDITION;
	case GS_EBUSY:
		return GS_RPC_ABORTED;
	case GS_EUNAVAIL:
		return GS_RPC_UNAVAILABLE;
	case GS_ETIMEOUT:
		return GS_RPC_DEADLINE_EXCEEDED;
	case GS_EAUTH:
		return GS_RPC_UNAUTHENTICATED;
	case GS_EIO:
	default:
		return GS_RPC_INTERNAL;
	}
}

int gs_rpc_status_from_code(int code)
{
	switch (code) {
	case GS_RPC_OK:
		return GS_OK;
	case GS_RPC_INVALID_ARGUMENT:
	case GS_RPC_OUT_OF_RANGE:
		return GS_EINVAL;
	case GS_RPC_NOT_FOUND:
		return GS_ENOTFOUND;
	case GS_RPC_RESOURCE_EXHAUSTED:
		return GS_EFULL;
	case GS_RPC_FAILED_PRECONDITION:
	case GS_RPC_ALREADY_EXISTS:
		return GS_ESTATE;
	case GS_RPC_ABORTED:
		return GS_EBUSY;
	case GS_RPC_UNAVAILABLE:
	case GS_RPC_CANCELLED:
		return GS_EUNAVAIL;
	case GS_RPC_DEADLINE_EXCEEDED:
		return GS_ETIMEOUT;
	case GS_RPC_UNAUTHENTICATED:
	case GS_RPC_PERMISSION_DENIED:
		return GS_EAUTH;
	case GS_RPC_UNIMPLEMENTED:
	case GS_RPC_DATA_LOSS:
		return GS_EPROTO;
	default:
		return GS_EIO;
	}
}

const char *gs_rpc_code_name(int code)
{
	static const char *const names[] = {
	    "OK",
	    "CANCELLED",
	    "UNKNOWN",
	    "INVALID_ARGUMENT",
	    "DEADLINE_EXCEEDED",
	    "NOT_FOUND",
	    "ALREADY_EXISTS",
	    "PERMISSION_DENIED",
	    "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION",
	    "ABORTED",
	    "OUT_OF_RANGE",
	    "UNIMPLEMENTED",
	    "INTERNAL",
	    "UNAVAILABLE",
	    "DATA_LOSS",
	    "UNAUTHENTICATED",
	};
	if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
		return "UNKNOWN_CODE";
	return names[code];
}
