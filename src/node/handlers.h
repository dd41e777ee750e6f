/*
 * handlers.h - the worker's built-in, in-process task handlers.
 *
 * Owns: the handler registry, a constant table (name -> function) in
 * handlers.c.  To add a handler, write a gs_handlers_fn and add a row to that
 * table.  There is no runtime registration and no mutable global state.
 *
 * Built-ins:
 *   noop   succeeds at once with empty output.
 *   echo   succeeds at once; the output is the payload (bounded like any output).
 *   sleep  the payload is a decimal number of milliseconds (0..86400000,
 *          surrounding ASCII whitespace allowed); the handler asks the runner
 *          to finish the task after that delay, without blocking.  Any other
 *          payload is a handler error.
 *
 * A handler must not block: it runs on the runner's thread.  Work that takes
 * time is expressed as a delay (out->delay_ms) that the runner's event loop
 * waits for.
 *
 * Errors: gs_handlers_run() returns GS_ENOTFOUND for an unknown name and
 * GS_EINVAL for a NULL argument; a handler's own failure is not a return code
 * but a non-empty out->error (the task then fails with that message).
 *
 * Buffer ownership: a struct gs_handlers_out owns its data buffer (malloc'd,
 * at most `max` bytes); gs_handlers_out_free() releases it.  Whoever holds
 * the struct may take the buffer over by copying the pointer and setting
 * data to NULL.
 *
 * Thread-safety: all functions are reentrant and touch only their arguments;
 * any thread may call them on its own gs_handlers_out.
 */
#ifndef GS_HANDLERS_H
#define GS_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GS_HANDLERS_ERRMAX    256       /* error message buffer, NUL included */
#define GS_HANDLERS_SLEEP_MAX 86400000u /* longest `sleep` payload, in ms */

/* What a handler produced.  Fill it through the gs_handlers_out_* functions. */
struct gs_handlers_out {
	uint8_t *data;                  /* output bytes (malloc'd), NULL while empty */
	size_t len;                     /* bytes in data */
	size_t cap;                     /* allocated bytes */
	size_t max;                     /* bound on len; bytes beyond are dropped */
	bool truncated;                 /* a write was cut at max */
	uint64_t delay_ms;              /* > 0: finish the task after this delay */
	char error[GS_HANDLERS_ERRMAX]; /* non-empty: the handler failed */
};

/* A handler: reads payload[0..len) (not NUL-terminated), fills out. */
typedef void (*gs_handlers_fn)(const uint8_t *payload, size_t len, struct gs_handlers_out *out);

/* Empty output bounded to max bytes; no allocation. */
void gs_handlers_out_init(struct gs_handlers_out *out, size_t max);

/* Frees out->data; out is left empty and reusable. NULL is a no-op. */
void gs_handlers_out_free(struct gs_handlers_out *out);

/* Appends up to max - len bytes; the rest is dropped and truncated set.
 * GS_OK, or GS_ENOMEM (nothing appended, truncated set), GS_EINVAL on NULL. */
int gs_handlers_out_write(struct gs_handlers_out *out, const void *data, size_t len);

/* Marks the handler failed with a printf-style message (cut to fit). */
void gs_handlers_out_fail(struct gs_handlers_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* True when a handler of this name exists (NULL -> false). */
bool gs_handlers_exists(const char *name);

/* The i-th handler's name (static string), NULL when i is past the end. */
const char *gs_handlers_name(size_t i);

/* Runs handler `name` on the payload into out (initialised by the caller with
 * gs_handlers_out_init).  GS_OK: the handler ran (check out->error and
 * out->delay_ms).  GS_ENOTFOUND: no such handler, out->error says so.
 * GS_EINVAL: name or out is NULL, or payload is NULL with len > 0. */
int gs_handlers_run(const char *name, const void *payload, size_t len, struct gs_handlers_out *out);

#endif /* GS_HANDLERS_H */
