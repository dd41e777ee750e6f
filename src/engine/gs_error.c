/* gs_error.c - descriptions of the gs_status codes. */
#include "gs_error.h"

const char *gs_strerror(int code)
{
	switch (code) {
	case GS_OK:
		return "ok";
	case GS_EINVAL:
		return "invalid argument";
	case GS_ENOTFOUND:
		return "not found";
	case GS_EFULL:
		return "capacity exhausted";
	case GS_ETOOBIG:
		return "payload over the configured limit";
	case GS_ESTATE:
		return "illegal state transition";
	case GS_EEMPTY:
		return "nothing to do";
	case GS_ENOMEM:
		return "out of memory";
	case GS_EIO:
		return "operating system call failed";
	case GS_ELAYOUT:
		return "segment layout mismatch";
	case GS_EBUSY:
		return "busy, retry";
	case GS_ESTALE:
		return "stale attempt or worker";
	case GS_EUNAVAIL:
		return "unavailable";
	case GS_ETIMEOUT:
		return "timed out";
	case GS_EAUTH:
		return "not authenticated";
	case GS_EPROTO:
		return "malformed message";
	default:
		return "unknown error";
	}
}
