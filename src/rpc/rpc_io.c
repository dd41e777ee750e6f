/* rpc_io.c - internal helpers of the RPC layer (see rpc_io.h). */
#include "rpc_io.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "gs_error.h"

void gs_rpc_lib_ref(void)
{
	grpc_init(); /* refcounted by gRPC itself */
}

void gs_rpc_lib_unref(void)
{
	grpc_shutdown();
}

int gs_outq_append(struct gs_outq *q, const void *bytes, size_t n, size_t limit)
{
	if (n > limit || q->len > limit - n)
		return GS_EFULL;
	if (q->len + n > q->cap || q->data == NULL) {
		size_t cap = q->cap ? q->cap : 256;
		while (cap < q->len + n)
			cap *= 2;
		uint8_t *p = realloc(q->data, cap);
		if (p == NULL)
			return GS_ENOMEM;
		q->data = p;
		q->cap = cap;
	}
	if (n)
		memcpy(q->data + q->len, bytes, n);
	q->len += n;
	q->entries++;
	return GS_OK;
}

grpc_byte_buffer *gs_outq_take(struct gs_outq *q)
{
	grpc_slice s;
	if (q->len == 0) {
		s = grpc_empty_slice();
		free(q->data);
	} else {
		/* The slice takes the queue's memory: no copy. */
		s = grpc_slice_new(q->data, q->len, free);
	}
	q->data = NULL;
	q->len = 0;
	q->cap = 0;
	q->entries = 0;
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1); /* takes its own ref */
	grpc_slice_unref(s);
	return bb;
}

void gs_outq_clear(struct gs_outq *q)
{
	free(q->data);
	memset(q, 0, sizeof(*q));
}

int gs_bb_flatten(grpc_byte_buffer *bb, grpc_slice *out)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return GS_EPROTO; /* e.g. undecompressible */
	*out = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return GS_OK;
}

char *gs_slice_dup(grpc_slice s, size_t *len)
{
	size_t n = GRPC_SLICE_LENGTH(s);
	char *t = grpc_slice_to_c_string(s);
	char *p = t ? malloc(n + 1) : NULL;
	if (p)
		memcpy(p, t, n + 1);
	gpr_free(t);
	if (len)
		*len = p ? n : 0;
	return p;
}

gpr_timespec gs_deadline_ms(int ms)
{
	if (ms <= 0)
		return gpr_inf_future(GPR_CLOCK_REALTIME);
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int64_t gs_ms_until(gpr_timespec t)
{
	if (gpr_time_cmp(t, gpr_inf_future(t.clock_type)) == 0)
		return INT64_MAX;
	gpr_timespec now = gpr_now(t.clock_type);
	gpr_timespec d = gpr_time_sub(t, now);
	return (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
}

void gs_chan_args_init(struct gs_chan_args *st, size_t max_message, bool client,
                       int reconnect_max_ms)
{
	int lim = max_message > INT_MAX ? INT_MAX : (int)max_message;
	size_t n = 0;
	st->arg[n].type = GRPC_ARG_INTEGER;
	st->arg[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	st->arg[n++].value.integer = lim;
	st->arg[n].type = GRPC_ARG_INTEGER;
	st->arg[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	st->arg[n++].value.integer = lim;
	if (client) {
		/* No retry filter: it would buffer every stream message. */
		st->arg[n].type = GRPC_ARG_INTEGER;
		st->arg[n].key = (char *)GRPC_ARG_ENABLE_RETRIES;
		st->arg[n++].value.integer = 0;
		int rmax = reconnect_max_ms > 0 ? reconnect_max_ms : 2000;
		int rinit = rmax < 200 ? rmax : 200;
		st->arg[n].type = GRPC_ARG_INTEGER;
		st->arg[n].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
		st->arg[n++].value.integer = rinit;
		/* gRPC core 29 uses this one as the minimum connect timeout (TCP,
		 * TLS handshake and the first SETTINGS), not as a backoff: 200 ms
		 * made TLS connects fail on a loaded machine.  A refused
		 * connection still fails at once; calls keep their deadlines. */
		st->arg[n].type = GRPC_ARG_INTEGER;
		st->arg[n].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
		st->arg[n++].value.integer = 5000;
		st->arg[n].type = GRPC_ARG_INTEGER;
		st->arg[n].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
		st->arg[n++].value.integer = rmax;
		/* One connection per channel: without this, channels of one
		 * process with equal arguments share one TCP connection (gRPC's
		 * global subchannel pool), and a server could not tell them
		 * apart (its connection limit, its peer addresses). */
		st->arg[n].type = GRPC_ARG_INTEGER;
		st->arg[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
		st->arg[n++].value.integer = 1;
	}
	st->args.num_args = n;
	st->args.args = st->arg;
}

int gs_md_copy_from(struct gs_md_copy *dst, const grpc_metadata_array *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->count == 0)
		return GS_OK;
	dst->keys = calloc(src->count, sizeof(char *));
	dst->vals = calloc(src->count, sizeof(char *));
	dst->val_lens = calloc(src->count, sizeof(size_t));
	if (!dst->keys || !dst->vals || !dst->val_lens)
		goto nomem;
	for (size_t i = 0; i < src->count; i++) {
		const grpc_metadata *m = &src->metadata[i];
		size_t vl;
		char *k = gs_slice_dup(m->key, NULL), *v = gs_slice_dup(m->value, &vl);
		if (!k || !v) {
			free(k);
			free(v);
			goto nomem;
		}
		dst->keys[i] = k;
		dst->vals[i] = v;
		dst->val_lens[i] = vl;
		dst->n = i + 1;
	}
	return GS_OK;
nomem:
	gs_md_copy_free(dst);
	return GS_ENOMEM;
}

void gs_md_copy_free(struct gs_md_copy *md)
{
	for (size_t i = 0; i < md->n; i++) {
		free(md->keys[i]);
		free(md->vals[i]);
	}
	free(md->keys);
	free(md->vals);
	free(md->val_lens);
	memset(md, 0, sizeof(*md));
}

int gs_md_out_build(const struct gs_rpc_md *md, size_t n, grpc_metadata **out)
{
	*out = NULL;
	if (n == 0)
		return GS_OK;
	if (md == NULL)
		return GS_EINVAL;
	grpc_metadata *m = calloc(n, sizeof(*m));
	if (m == NULL)
		return GS_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (md[i].key == NULL || md[i].value == NULL) {
			gs_md_out_free(m, i);
			return GS_EINVAL;
		}
		m[i].key = grpc_slice_from_copied_string(md[i].key);
		m[i].value = grpc_slice_from_copied_string(md[i].value);
		if (!grpc_header_key_is_legal(m[i].key) ||
		    (!grpc_is_binary_header(m[i].key) &&
		     !grpc_header_nonbin_value_is_legal(m[i].value))) {
			gs_md_out_free(m, i + 1);
			return GS_EINVAL;
		}
	}
	*out = m;
	return GS_OK;
}

void gs_md_out_free(grpc_metadata *md, size_t n)
{
	if (md == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		grpc_slice_unref(md[i].key);
		grpc_slice_unref(md[i].value);
	}
	free(md);
}

grpc_event gs_rpc_cq_next(grpc_completion_queue *cq, unsigned spin_us)
{
	if (spin_us > 0) {
		gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
		                                  gpr_time_from_micros(spin_us, GPR_TIMESPAN));
		for (;;) {
			gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
			grpc_event ev = grpc_completion_queue_next(cq, now, NULL);
			if (ev.type != GRPC_QUEUE_TIMEOUT)
				return ev;
			if (gpr_time_cmp(now, until) >= 0)
				break;
		}
	}
	return grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
}
