/*
 * codec.h - protobuf encoding between the wire and the engine.
 *
 * Owns: a growable byte buffer with the protobuf wire primitives (varint,
 * fixed64, length-delimited) used to write the hot messages by hand
 * (assignments, results, acks) without building protobuf-c structs; task
 * spec validation; the mapping of engine states and reasons to the API's.
 *
 * What the engine stores for a task (opaque to it):
 *   payload = the TaskSpec as the client sent it, packed; the worker gets it
 *             back verbatim as Assignment.spec.
 *   result  = a TaskResult fragment holding only output (4), output_truncated
 *             (5) and error (6).  A full TaskResult is the encoding of the
 *             other fields followed by this fragment (protobuf merges the
 *             concatenation), so a result is never decoded on the server.
 *
 * Thread-safety: functions are pure or work on caller-owned buffers.
 * Errors: GS_ENOMEM; validation returns GS_EINVAL / GS_ETOOBIG with a
 * message.  Buffers: a gs_pb_buf owns its bytes (gs_pb_buf_free).
 */
#ifndef GS_CODEC_H
#define GS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "gsched.pb-c.h"

typedef struct gs_pb_buf {
	uint8_t *data;
	size_t len, cap;
	bool oom; /* a write failed for memory: the buffer is unusable */
} gs_pb_buf;

void gs_pb_buf_init(gs_pb_buf *b);
void gs_pb_buf_free(gs_pb_buf *b);
void gs_pb_buf_reset(gs_pb_buf *b);
void gs_pb_put_varint(gs_pb_buf *b, uint32_t field, uint64_t v);
void gs_pb_put_fixed64(gs_pb_buf *b, uint32_t field, uint64_t v);
void gs_pb_put_bytes(gs_pb_buf *b, uint32_t field, const void *p, size_t len);
/* Opens a length-delimited field whose length is patched by _end. */
size_t gs_pb_begin(gs_pb_buf *b, uint32_t field);
void gs_pb_end(gs_pb_buf *b, size_t mark);
/* Appends raw bytes (already encoded fields, packed values). */
void gs_pb_put_raw(gs_pb_buf *b, const void *p, size_t len);
/* Appends a protobuf-c message packed as field `field`. */
void gs_pb_put_message(gs_pb_buf *b, uint32_t field, const ProtobufCMessage *m);

/*
 * Checks one spec: a body (argv with at least one arg, or a handler with a
 * name known to `handler_known`), priority <= 255, retries <= 100, payload
 * within max_payload.  On error writes why into err.
 */
int gs_codec_spec_check(const Gsched__V1__TaskSpec *spec, uint32_t max_payload,
                        bool (*handler_known)(const char *name, void *arg), void *arg, char *err,
                        size_t err_len);

/* API state of an engine state (TASK_STATE_UNKNOWN for none). */
Gsched__V1__TaskState gs_codec_state(uint32_t engine_state);

/*
 * Appends a full TaskResult for `info` (with its stored result fragment) as
 * field `field` of the message being built in b; include_output false leaves
 * the output out (error stays).
 */
void gs_codec_put_result(gs_pb_buf *b, uint32_t field, const gs_task_info *info,
                         const uint8_t *stored, uint32_t stored_len, bool include_output);

/*
 * Appends a TaskEvent for `info` at at_us as field `field`; with_result adds
 * its TaskResult (as gs_codec_put_result).
 */
void gs_codec_put_event(gs_pb_buf *b, uint32_t field, const gs_task_info *info, uint64_t at_us,
                        const uint8_t *stored, uint32_t stored_len, bool with_result,
                        bool include_output);

/* The stored result fragment of a WorkResult. */
void gs_codec_result_fragment(gs_pb_buf *b, const Gsched__V1__WorkResult *r);

#endif /* GS_CODEC_H */
