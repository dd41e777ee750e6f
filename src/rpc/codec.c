/* codec.c - hand-written protobuf for the hot messages, and spec checks. */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2 };

void gs_pb_buf_init(gs_pb_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void gs_pb_buf_free(gs_pb_buf *b)
{
	free(b->data);
	gs_pb_buf_init(b);
}

void gs_pb_buf_reset(gs_pb_buf *b)
{
	b->len = 0;
	b->oom = false;
}

static bool reserve(gs_pb_buf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *d = realloc(b->data, cap);
	if (!d) {
		b->oom = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

static void raw_varint(gs_pb_buf *b, uint64_t v)
{
	if (!reserve(b, 10))
		return;
	while (v >= 0x80) {
		b->data[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->data[b->len++] = (uint8_t)v;
}

void gs_pb_put_varint(gs_pb_buf *b, uint32_t field, uint64_t v)
{
	if (v == 0)
		return; /* proto3: zero is the default and is not written */
	raw_varint(b, ((uint64_t)field << 3) | WT_VARINT);
	raw_varint(b, v);
}

void gs_pb_put_fixed64(gs_pb_buf *b, uint32_t field, uint64_t v)
{
	if (v == 0)
		return;
	raw_varint(b, ((uint64_t)field << 3) | WT_FIXED64);
	if (!reserve(b, 8))
		return;
	for (int i = 0; i < 8; i++)
		b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

void gs_pb_put_bytes(gs_pb_buf *b, uint32_t field, const void *p, size_t len)
{
	raw_varint(b, ((uint64_t)field << 3) | WT_LEN);
	raw_varint(b, len);
	if (len && reserve(b, len)) {
		memcpy(b->data + b->len, p, len);
		b->len += len;
	}
}

/* A length slot of 5 bytes (a padded varint) is patched by gs_pb_end. */
size_t gs_pb_begin(gs_pb_buf *b, uint32_t field)
{
	raw_varint(b, ((uint64_t)field << 3) | WT_LEN);
	if (!reserve(b, 5))
		return 0;
	size_t mark = b->len;
	b->len += 5;
	return mark;
}

void gs_pb_end(gs_pb_buf *b, size_t mark)
{
	if (b->oom)
		return;
	uint32_t n = (uint32_t)(b->len - mark - 5);
	for (int i = 0; i < 5; i++) {
		uint8_t byte = (uint8_t)((n >> (7 * i)) & 0x7f);
		b->data[mark + i] = i < 4 ? (uint8_t)(byte | 0x80) : byte;
	}
}

void gs_pb_put_raw(gs_pb_buf *b, const void *p, size_t len)
{
	if (len && reserve(b, len)) {
		memcpy(b->data + b->len, p, len);
		b->len += len;
	}
}

void gs_pb_put_message(gs_pb_buf *b, uint32_t field, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	raw_varint(b, ((uint64_t)field << 3) | WT_LEN);
	raw_varint(b, n);
	if (reserve(b, n))
		b->len += protobuf_c_message_pack(m, b->data + b->len);
}

int gs_codec_spec_check(const Gsched__V1__TaskSpec *spec, uint32_t max_payload,
                        bool (*handler_known)(const char *name, void *arg), void *arg, char *err,
                        size_t err_len)
{
	if (!spec) {
		snprintf(err, err_len, "task spec missing");
		return GS_EINVAL;
	}
	if (spec->priority > 255) {
		snprintf(err, err_len, "priority %u out of range 0..255", spec->priority);
		return GS_EINVAL;
	}
	if (spec->retries > GS_MAX_RETRIES) {
		snprintf(err, err_len, "retries %u out of range 0..%u", spec->retries,
		         GS_MAX_RETRIES);
		return GS_EINVAL;
	}
	switch (spec->body_case) {
	case GSCHED__V1__TASK_SPEC__BODY_ARGV:
		if (!spec->argv || spec->argv->n_args == 0 || !spec->argv->args[0][0]) {
			snprintf(err, err_len, "argv is empty");
			return GS_EINVAL;
		}
		break;
	case GSCHED__V1__TASK_SPEC__BODY_HANDLER:
		if (!spec->handler || !spec->handler->name[0]) {
			snprintf(err, err_len, "handler name is empty");
			return GS_EINVAL;
		}
		if (handler_known && !handler_known(spec->handler->name, arg)) {
			snprintf(err, err_len, "unknown handler '%.64s'", spec->handler->name);
			return GS_EINVAL;
		}
		break;
	default:
		snprintf(err, err_len, "task has neither argv nor handler");
		return GS_EINVAL;
	}
	size_t packed = protobuf_c_message_get_packed_size(&spec->base);
	if (packed > max_payload) {
		snprintf(err, err_len, "task spec is %zu bytes, over the limit of %u", packed,
		         max_payload);
		return GS_ETOOBIG;
	}
	return GS_OK;
}

Gsched__V1__TaskState gs_codec_state(uint32_t s)
{
	switch (s) {
	case GS_TASK_DELAYED:
		return GSCHED__V1__TASK_STATE__TASK_STATE_DELAYED;
	case GS_TASK_QUEUED:
		return GSCHED__V1__TASK_STATE__TASK_STATE_QUEUED;
	case GS_TASK_ASSIGNED:
		return GSCHED__V1__TASK_STATE__TASK_STATE_ASSIGNED;
	case GS_TASK_RUNNING:
	case GS_TASK_COMPLETING:
		return GSCHED__V1__TASK_STATE__TASK_STATE_RUNNING;
	case GS_TASK_DONE:
		return GSCHED__V1__TASK_STATE__TASK_STATE_DONE;
	case GS_TASK_FAILED:
		return GSCHED__V1__TASK_STATE__TASK_STATE_FAILED;
	case GS_TASK_CANCELLED:
		return GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED;
	default:
		return GSCHED__V1__TASK_STATE__TASK_STATE_UNKNOWN;
	}
}

/* Copies the stored fragment, leaving out field 4 (output) if asked. */
static void put_fragment(gs_pb_buf *b, const uint8_t *p, uint32_t n, bool include_output)
{
	if (include_output) {
		if (n && reserve(b, n)) {
			memcpy(b->data + b->len, p, n);
			b->len += n;
		}
		return;
	}
	size_t i = 0;
	while (i < n) {
		size_t start = i;
		uint64_t key = 0, len = 0;
		for (int sh = 0; i < n && sh < 64; sh += 7) {
			key |= (uint64_t)(p[i] & 0x7f) << sh;
			if (!(p[i++] & 0x80))
				break;
		}
		uint32_t wt = key & 7;
		if (wt == WT_LEN) {
			for (int sh = 0; i < n && sh < 64; sh += 7) {
				len |= (uint64_t)(p[i] & 0x7f) << sh;
				if (!(p[i++] & 0x80))
					break;
			}
			if (len > n - i)
				return; /* runs past the end (i += len could wrap) */
			i += len;
		} else if (wt == WT_VARINT) {
			while (i < n && (p[i++] & 0x80))
				;
		} else {
			return; /* our fragments hold nothing else */
		}
		if (i > n)
			return;
		if ((key >> 3) != 4 && reserve(b, i - start)) {
			memcpy(b->data + b->len, p + start, i - start);
			b->len += i - start;
		}
	}
}

void gs_codec_put_result(gs_pb_buf *b, uint32_t field, const gs_task_info *info,
                         const uint8_t *stored, uint32_t stored_len, bool include_output)
{
	size_t m = gs_pb_begin(b, field);
	gs_pb_put_fixed64(b, 1, info->id);
	gs_pb_put_varint(b, 2, (uint64_t)gs_codec_state(info->state));
	gs_pb_put_varint(b, 3, (uint64_t)(int64_t)info->status);
	put_fragment(b, stored, stored_len, include_output);
	if (info->state == GS_TASK_FAILED && info->reason == GS_REASON_WORKER_LOST) {
		static const char lost[] = "worker lost";
		gs_pb_put_bytes(b, 6, lost, sizeof(lost) - 1);
	} else if (info->state == GS_TASK_CANCELLED && stored_len == 0) {
		static const char c[] = "cancelled";
		gs_pb_put_bytes(b, 6, c, sizeof(c) - 1);
	} else if (info->result_dropped) {
		static const char d[] = "result dropped: server result storage full";
		gs_pb_put_bytes(b, 6, d, sizeof(d) - 1);
	}
	gs_pb_put_fixed64(b, 7, info->worker);
	gs_pb_put_varint(b, 8, info->attempt);
	gs_pb_put_varint(b, 9, info->submitted_us);
	gs_pb_put_varint(b, 10, info->assigned_us);
	gs_pb_put_varint(b, 11, info->started_us);
	gs_pb_put_varint(b, 12, info->finished_us);
	gs_pb_end(b, m);
}

void gs_codec_put_event(gs_pb_buf *b, uint32_t field, const gs_task_info *info, uint64_t at_us,
                        const uint8_t *stored, uint32_t stored_len, bool with_result,
                        bool include_output)
{
	size_t m = gs_pb_begin(b, field);
	gs_pb_put_fixed64(b, 1, info->id);
	gs_pb_put_varint(b, 2, (uint64_t)gs_codec_state(info->state));
	gs_pb_put_varint(b, 3, info->attempt);
	gs_pb_put_fixed64(b, 4, info->worker);
	gs_pb_put_varint(b, 5, at_us);
	if (with_result)
		gs_codec_put_result(b, 6, info, stored, stored_len, include_output);
	gs_pb_end(b, m);
}

void gs_codec_result_fragment(gs_pb_buf *b, const Gsched__V1__WorkResult *r)
{
	if (r->output.len)
		gs_pb_put_bytes(b, 4, r->output.data, r->output.len);
	gs_pb_put_varint(b, 5, r->output_truncated ? 1 : 0);
	if (r->error && r->error[0])
		gs_pb_put_bytes(b, 6, r->error, strlen(r->error));
}
