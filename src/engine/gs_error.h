/*
 * gs_error.h - the error codes every gsched function returns.
 *
 * Owns: the error vocabulary shared by the engine, the RPC layer and the
 * processes.  Functions return GS_OK (0) or one of the negative codes below;
 * none aborts on bad input.  Where an OS call failed, the code is GS_EIO and
 * errno is left as the call set it.
 *
 * Thread-safety: gs_strerror() returns static strings; safe from any thread.
 */
#ifndef GS_ERROR_H
#define GS_ERROR_H

enum gs_status {
	GS_OK = 0,
	GS_EINVAL = -1,    /* an argument is malformed or out of range */
	GS_ENOTFOUND = -2, /* no such task, worker or queue (includes stale IDs) */
	GS_EFULL = -3,     /* task table, worker table, queue list or arena is full */
	GS_ETOOBIG = -4,   /* payload or result over the configured maximum */
	GS_ESTATE = -5,    /* the object is not in a state that allows the operation */
	GS_EEMPTY = -6,    /* nothing to pop or dispatch */
	GS_ENOMEM = -7,    /* process memory allocation failed */
	GS_EIO = -8,       /* an OS call failed; errno says why */
	GS_ELAYOUT = -9,   /* the segment has another magic, version or geometry */
	GS_EBUSY = -10,    /* transient conflict (e.g. result being recorded); retry */
	GS_ESTALE = -11,   /* a stale attempt or worker: the report is ignored */
	GS_EUNAVAIL = -12, /* shutting down, or the peer is not reachable */
	GS_ETIMEOUT = -13, /* a bounded wait ran out */
	GS_EAUTH = -14,    /* missing or wrong credentials */
	GS_EPROTO = -15,   /* malformed bytes from a peer */
};

/* A short, static, human-readable description of a gs_status code. */
const char *gs_strerror(int code);

#endif /* GS_ERROR_H */
