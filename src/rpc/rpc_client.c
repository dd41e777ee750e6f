/*
 * rpc_client.c - gRPC core client adapter (see rpc_client.h).
 *
 * Unary calls use a private pluck queue per call.  A stream has its own
 * completion queue polled by its own thread; s->mu guards its state and
 * outbound queue, s->cond signals the end of the stream.
 */
#include "gs_clock.h"
#include "rpc_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "gs_error.h"
#include "rpc_io.h"

#define DEFAULT_UNARY_TIMEOUT_MS 30000

struct gs_rpc_client {
	grpc_channel *ch;
	size_t max_message;
	size_t max_queue;
	unsigned busy_poll_us;
};

enum stag_kind { STAG_SEND, STAG_RECV, STAG_STATUS };

struct stag {
	enum stag_kind kind;
	struct gs_rpc_stream *s;
};

struct gs_rpc_stream {
	grpc_call *call;
	grpc_completion_queue *cq;
	pthread_t thr;
	struct gs_rpc_stream_ops ops;
	void *ud;
	enum gs_rpc_kind kind;
	size_t max_message, max_queue;
	unsigned busy_poll_us;
	struct stag send_tag, recv_tag, status_tag;
	grpc_metadata *out_md;
	size_t n_out_md;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* under mu */
	struct gs_outq q;
	grpc_byte_buffer *send_bb;
	bool initial_md_sent;
	bool send_inflight, recv_inflight;
	bool status_done; /* RECV_STATUS_ON_CLIENT completed */
	bool recv_done;   /* the receive loop ended (end of stream or failure) */
	bool broken;      /* a send failed: no more sends */
	bool half_close_requested, half_close_sent;
	bool close_called; /* on_close has returned */
	bool auto_free;    /* destroyed from its own thread: free at thread exit */
	bool cq_shut;
	struct gs_rpc_io_stats st;

	/* written by the status op, read after it completed */
	grpc_byte_buffer *recv_bb;
	grpc_metadata_array recv_initial_md;
	grpc_metadata_array trailing_md;
	grpc_status_code status;
	grpc_slice status_details;
	int final_code;
};

/* ------------------------------------------------------------------------ */
/* Client                                                                    */

int gs_rpc_client_create(const char *target, const struct gs_rpc_client_opts *opts,
                         struct gs_rpc_client **out)
{
	if (out == NULL)
		return GS_EINVAL;
	*out = NULL;
	if (target == NULL || *target == 0)
		return GS_EINVAL;
	struct gs_rpc_client_opts o = {0};
	if (opts)
		o = *opts;
	if (o.max_message_bytes == 0)
		o.max_message_bytes = GS_RPC_DEFAULT_MAX_MESSAGE;
	if (o.max_message_bytes > (size_t)INT32_MAX || o.reconnect_max_ms < 0)
		return GS_EINVAL;
	if (o.max_queue_bytes == 0 || o.max_queue_bytes > o.max_message_bytes)
		o.max_queue_bytes = o.max_message_bytes;
	struct gs_rpc_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return GS_ENOMEM;
	c->max_message = o.max_message_bytes;
	c->max_queue = o.max_queue_bytes;
	c->busy_poll_us = o.busy_poll_us > 100000 ? 100000 : o.busy_poll_us;
	gs_rpc_lib_ref();
	struct gs_chan_args args;
	gs_chan_args_init(&args, c->max_message, true, o.reconnect_max_ms);
	grpc_channel_credentials *creds;
	if (o.tls == NULL) {
		creds = grpc_insecure_credentials_create();
	} else {
		struct gs_tls_pem pem;
		int rc = gs_tls_pem_load(o.tls, false, &pem, NULL, 0);
		if (rc != GS_OK) {
			gs_rpc_lib_unref();
			free(c);
			return rc;
		}
		grpc_ssl_pem_key_cert_pair pair = {.private_key = pem.key, .cert_chain = pem.cert};
		/* gRPC copies the PEM strings: ours are wiped at once. */
		creds = grpc_ssl_credentials_create(pem.ca, pem.cert ? &pair : NULL, NULL, NULL);
		gs_tls_pem_free(&pem);
		if (o.tls->target_name && o.tls->target_name[0]) {
			grpc_arg *a = &args.arg[args.args.num_args++];
			a->type = GRPC_ARG_STRING;
			a->key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
			a->value.string = (char *)o.tls->target_name;
		}
	}
	c->ch = creds ? grpc_channel_create(target, creds, &args.args) : NULL;
	if (creds)
		grpc_channel_credentials_release(creds);
	if (c->ch == NULL) {
		gs_rpc_lib_unref();
		free(c);
		return GS_EIO;
	}
	*out = c;
	return GS_OK;
}

void gs_rpc_client_destroy(struct gs_rpc_client *c)
{
	if (c == NULL)
		return;
	grpc_channel_destroy(c->ch); /* live calls keep what they need */
	free(c);
	gs_rpc_lib_unref();
}

static char *slice_to_cstr(grpc_slice s)
{
	return gs_slice_dup(s, NULL);
}

void gs_rpc_reply_free(struct gs_rpc_reply *reply)
{
	if (reply == NULL)
		return;
	free(reply->details);
	free(reply->data);
	reply->details = NULL;
	reply->data = NULL;
	reply->len = 0;
}

static int reply_fail(struct gs_rpc_reply *reply, int code, const char *msg, int rc)
{
	reply->code = code;
	reply->details = strdup(msg);
	return rc;
}

static bool method_ok(const char *method)
{
	return method != NULL && method[0] == '/' && method[1] != 0;
}

int gs_rpc_client_unary(struct gs_rpc_client *c, const char *method, const void *req,
                        size_t req_len, const struct gs_rpc_md *md, size_t n_md, int timeout_ms,
                        struct gs_rpc_reply *reply)
{
	if (reply == NULL)
		return GS_EINVAL;
	memset(reply, 0, sizeof(*reply));
	if (c == NULL || !method_ok(method) || (req == NULL && req_len > 0))
		return reply_fail(reply, GS_RPC_INTERNAL, "invalid arguments", GS_EINVAL);
	if (req_len > c->max_message)
		return reply_fail(reply, GS_RPC_RESOURCE_EXHAUSTED, "request too big", GS_ETOOBIG);
	grpc_metadata *out_md = NULL;
	int rc = gs_md_out_build(md, n_md, &out_md);
	if (rc != GS_OK)
		return reply_fail(reply, GS_RPC_INTERNAL, "invalid metadata", rc);

	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice path = grpc_slice_from_copied_string(method);
	gpr_timespec deadline =
	    gs_deadline_ms(timeout_ms > 0 ? timeout_ms : DEFAULT_UNARY_TIMEOUT_MS);
	grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path,
	                                           NULL, deadline, NULL);
	grpc_slice_unref(path);
	if (call == NULL) {
		gs_md_out_free(out_md, n_md);
		grpc_completion_queue_shutdown(cq);
		grpc_completion_queue_destroy(cq);
		return reply_fail(reply, GS_RPC_INTERNAL, "cannot create call", GS_EIO);
	}

	grpc_slice s = req_len ? grpc_slice_from_copied_buffer(req, req_len) : grpc_empty_slice();
	grpc_byte_buffer *send_bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_byte_buffer *recv_bb = NULL;
	grpc_metadata_array init_md, trail_md;
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();

	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = n_md;
	ops[0].data.send_initial_metadata.metadata = out_md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;

	void *tag = &status;
	grpc_call_error err = grpc_call_start_batch(call, ops, 6, tag, NULL);
	if (err == GRPC_CALL_OK) {
		/* The call's deadline bounds this wait. */
		grpc_event ev =
		    grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
			status = GRPC_STATUS_INTERNAL;
			grpc_slice_unref(details);
			details = grpc_slice_from_static_string("call failed");
		}
		reply->code = (int)status;
		reply->details = slice_to_cstr(details);
		if (status == GRPC_STATUS_OK && recv_bb) {
			grpc_slice flat;
			if (gs_bb_flatten(recv_bb, &flat) == GS_OK) {
				reply->len = GRPC_SLICE_LENGTH(flat);
				reply->data = malloc(reply->len ? reply->len : 1);
				if (reply->data)
					memcpy(reply->data, GRPC_SLICE_START_PTR(flat), reply->len);
				else
					reply->len = 0;
				grpc_slice_unref(flat);
				rc = reply->data ? GS_OK : GS_ENOMEM;
			} else {
				reply->code = GS_RPC_INTERNAL;
				rc = GS_EPROTO;
			}
		} else {
			/* OK without a message counts as an empty response. */
			rc = gs_rpc_status_from_code(reply->code);
		}
	} else {
		rc = reply_fail(reply, GS_RPC_INTERNAL, grpc_call_error_to_string(err), GS_EIO);
	}
	if (reply->details == NULL)
		rc = GS_ENOMEM;

	grpc_byte_buffer_destroy(send_bb);
	if (recv_bb)
		grpc_byte_buffer_destroy(recv_bb);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_slice_unref(details);
	grpc_call_unref(call);
	gs_md_out_free(out_md, n_md);
	grpc_completion_queue_shutdown(cq);
	for (;;) { /* drain to the shutdown event (nothing else is pending) */
		grpc_event ev =
		    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
	}
	grpc_completion_queue_destroy(cq);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */

/* Everything due in one batch: initial metadata, the queued bytes as one
 * message, the half-close.  Caller holds s->mu and checked !send_inflight. */
static int stream_start_send_locked(struct gs_rpc_stream *s)
{
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	bool with_msg = s->q.entries > 0;
	bool with_close = s->half_close_requested && !s->half_close_sent;
	if (!with_msg && !with_close && s->initial_md_sent)
		return GS_OK;
	if (!s->initial_md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[n].data.send_initial_metadata.count = s->n_out_md;
		ops[n].data.send_initial_metadata.metadata = s->out_md;
		n++;
	}
	grpc_byte_buffer *bb = NULL;
	size_t bytes = s->q.len;
	if (with_msg) {
		bb = gs_outq_take(&s->q);
		if (bb == NULL)
			return GS_ENOMEM;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = bb;
		n++;
	}
	if (with_close) {
		ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		n++;
	}
	grpc_call_error err = grpc_call_start_batch(s->call, ops, n, &s->send_tag, NULL);
	if (err != GRPC_CALL_OK) {
		if (bb)
			grpc_byte_buffer_destroy(bb);
		s->broken = true;
		gs_outq_clear(&s->q);
		grpc_call_cancel(s->call, NULL);
		return GS_EIO;
	}
	s->initial_md_sent = true;
	if (with_close)
		s->half_close_sent = true;
	s->send_bb = bb;
	s->send_inflight = true;
	if (with_msg) {
		s->st.msgs_sent++;
		s->st.bytes_sent += bytes;
	}
	return GS_OK;
}

static void stream_arm_recv_locked(struct gs_rpc_stream *s, bool with_initial_md)
{
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (with_initial_md) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->recv_initial_md;
		n++;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n].data.recv_message.recv_message = &s->recv_bb;
	n++;
	s->recv_bb = NULL;
	if (grpc_call_start_batch(s->call, ops, n, &s->recv_tag, NULL) == GRPC_CALL_OK) {
		s->recv_inflight = true;
	} else {
		s->recv_done = true;
		grpc_call_cancel(s->call, NULL);
	}
}

static bool stream_quiet_locked(const struct gs_rpc_stream *s)
{
	return s->status_done && s->close_called && !s->recv_inflight && !s->send_inflight;
}

static void stream_maybe_close(struct gs_rpc_stream *s)
{
	pthread_mutex_lock(&s->mu);
	bool due = s->status_done && s->recv_done && !s->close_called;
	pthread_mutex_unlock(&s->mu);
	if (!due)
		return;
	/* Only this thread delivers callbacks: no lock needed around it. */
	char *details = slice_to_cstr(s->status_details);
	if (s->ops.on_close)
		s->ops.on_close(s, s->ud, s->final_code, details ? details : "");
	free(details);
	pthread_mutex_lock(&s->mu);
	s->close_called = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

static void stream_on_recv(struct gs_rpc_stream *s, bool success)
{
	grpc_byte_buffer *bb = s->recv_bb;
	s->recv_bb = NULL;
	bool more = false;
	if (success && bb) {
		grpc_slice flat;
		if (gs_bb_flatten(bb, &flat) == GS_OK) {
			size_t len = GRPC_SLICE_LENGTH(flat);
			pthread_mutex_lock(&s->mu);
			s->st.msgs_received++;
			s->st.bytes_received += len;
			pthread_mutex_unlock(&s->mu);
			if (s->ops.on_message)
				s->ops.on_message(s, s->ud, GRPC_SLICE_START_PTR(flat), len);
			grpc_slice_unref(flat);
			more = true;
		} else {
			grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL,
			                             "cannot read a received message", NULL);
		}
		grpc_byte_buffer_destroy(bb);
	}
	pthread_mutex_lock(&s->mu);
	s->recv_inflight = false;
	if (more)
		stream_arm_recv_locked(s, false);
	else
		s->recv_done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	stream_maybe_close(s);
}

static void stream_on_send(struct gs_rpc_stream *s, bool success)
{
	pthread_mutex_lock(&s->mu);
	s->send_inflight = false;
	if (s->send_bb) {
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
	}
	if (!success) {
		s->broken = true;
		gs_outq_clear(&s->q);
	} else if (!s->status_done && !s->broken) {
		stream_start_send_locked(s);
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

static void stream_on_status(struct gs_rpc_stream *s)
{
	pthread_mutex_lock(&s->mu);
	s->status_done = true;
	s->final_code = (int)s->status;
	gs_outq_clear(&s->q);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	stream_maybe_close(s);
}

static void stream_free(struct gs_rpc_stream *s)
{
	gs_outq_clear(&s->q);
	grpc_metadata_array_destroy(&s->recv_initial_md);
	grpc_metadata_array_destroy(&s->trailing_md);
	grpc_slice_unref(s->status_details);
	gs_md_out_free(s->out_md, s->n_out_md);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s);
	gs_rpc_lib_unref();
}

static void *stream_thread(void *arg)
{
	struct gs_rpc_stream *s = arg;
	for (;;) {
		grpc_event ev = gs_rpc_cq_next(s->cq, s->busy_poll_us);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct stag *t = ev.tag;
		switch (t->kind) {
		case STAG_SEND:
			stream_on_send(s, ev.success != 0);
			break;
		case STAG_RECV:
			stream_on_recv(s, ev.success != 0);
			break;
		case STAG_STATUS:
			stream_on_status(s);
			break;
		}
		pthread_mutex_lock(&s->mu);
		bool self_free = s->auto_free && stream_quiet_locked(s) && !s->cq_shut;
		if (self_free)
			s->cq_shut = true;
		pthread_mutex_unlock(&s->mu);
		if (self_free) {
			grpc_call_unref(s->call);
			s->call = NULL;
			grpc_completion_queue_shutdown(s->cq);
		}
	}
	if (s->auto_free) {
		grpc_completion_queue_destroy(s->cq);
		pthread_detach(pthread_self());
		stream_free(s);
	}
	return NULL;
}

int gs_rpc_stream_open(struct gs_rpc_client *c, const char *method, enum gs_rpc_kind kind,
                       const void *req, size_t req_len, const struct gs_rpc_md *md, size_t n_md,
                       int timeout_ms, const struct gs_rpc_stream_ops *ops, void *ud,
                       struct gs_rpc_stream **out)
{
	if (out == NULL)
		return GS_EINVAL;
	*out = NULL;
	if (c == NULL || !method_ok(method) || ops == NULL ||
	    (kind != GS_RPC_SERVER_STREAM && kind != GS_RPC_BIDI) ||
	    (kind == GS_RPC_SERVER_STREAM && req == NULL && req_len > 0))
		return GS_EINVAL;
	if (kind == GS_RPC_SERVER_STREAM && req_len > c->max_message)
		return GS_ETOOBIG;
	struct gs_rpc_stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return GS_ENOMEM;
	int rc = gs_md_out_build(md, n_md, &s->out_md);
	if (rc != GS_OK) {
		free(s);
		return rc;
	}
	s->n_out_md = n_md;
	s->ops = *ops;
	s->ud = ud;
	s->kind = kind;
	s->max_message = c->max_message;
	s->max_queue = c->max_queue;
	s->busy_poll_us = c->busy_poll_us;
	s->send_tag = (struct stag){STAG_SEND, s};
	s->recv_tag = (struct stag){STAG_RECV, s};
	s->status_tag = (struct stag){STAG_STATUS, s};
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	grpc_metadata_array_init(&s->recv_initial_md);
	grpc_metadata_array_init(&s->trailing_md);
	s->status_details = grpc_empty_slice();
	s->status = GRPC_STATUS_UNKNOWN;
	gs_rpc_lib_ref(); /* released by stream_free */

	if (kind == GS_RPC_SERVER_STREAM) {
		rc = gs_outq_append(&s->q, req, req_len, s->max_message);
		s->half_close_requested = true;
		if (rc != GS_OK) {
			stream_free(s);
			return rc;
		}
	}

	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_slice path = grpc_slice_from_copied_string(method);
	s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, path, NULL,
	                                   gs_deadline_ms(timeout_ms), NULL);
	grpc_slice_unref(path);
	if (s->call == NULL) {
		grpc_completion_queue_shutdown(s->cq);
		grpc_completion_queue_destroy(s->cq);
		stream_free(s);
		return GS_EIO;
	}

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
	op.data.recv_status_on_client.status = &s->status;
	op.data.recv_status_on_client.status_details = &s->status_details;
	pthread_mutex_lock(&s->mu);
	grpc_call_error err = grpc_call_start_batch(s->call, &op, 1, &s->status_tag, NULL);
	if (err == GRPC_CALL_OK) {
		rc = stream_start_send_locked(s); /* initial metadata (+ request, half-close) */
		if (rc == GS_OK)
			stream_arm_recv_locked(s, true);
	} else {
		rc = GS_EIO;
	}
	pthread_mutex_unlock(&s->mu);

	if (rc == GS_OK && pthread_create(&s->thr, NULL, stream_thread, s) != 0)
		rc = GS_EIO;
	if (rc != GS_OK) {
		/* Drain what was started, on this thread, then free. */
		grpc_call_cancel(s->call, NULL);
		grpc_call_unref(s->call);
		grpc_completion_queue_shutdown(s->cq);
		for (;;) {
			grpc_event ev = grpc_completion_queue_next(
			    s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
			if (ev.type == GRPC_QUEUE_SHUTDOWN)
				break;
			if (ev.type == GRPC_OP_COMPLETE && ev.tag == &s->send_tag && s->send_bb) {
				grpc_byte_buffer_destroy(s->send_bb);
				s->send_bb = NULL;
			}
			if (ev.type == GRPC_OP_COMPLETE && ev.tag == &s->recv_tag && s->recv_bb) {
				grpc_byte_buffer_destroy(s->recv_bb);
				s->recv_bb = NULL;
			}
		}
		grpc_completion_queue_destroy(s->cq);
		stream_free(s);
		return rc;
	}
	*out = s;
	return GS_OK;
}

int gs_rpc_stream_send(struct gs_rpc_stream *s, const void *bytes, size_t len)
{
	if (s == NULL || (bytes == NULL && len > 0))
		return GS_EINVAL;
	if (len > s->max_message)
		return GS_ETOOBIG;
	if (s->kind != GS_RPC_BIDI)
		return GS_ESTATE;
	int rc;
	pthread_mutex_lock(&s->mu);
	if (s->status_done || s->broken) {
		rc = GS_EUNAVAIL;
	} else if (s->half_close_requested) {
		rc = GS_ESTATE;
	} else {
		rc = gs_outq_append(&s->q, bytes, len, s->max_queue);
		if (rc == GS_OK) {
			s->st.sends++;
			if (!s->send_inflight)
				rc = stream_start_send_locked(s);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gs_rpc_stream_close_send(struct gs_rpc_stream *s)
{
	if (s == NULL)
		return GS_EINVAL;
	int rc = GS_OK;
	pthread_mutex_lock(&s->mu);
	if (s->half_close_requested)
		rc = GS_ESTATE;
	else if (s->status_done || s->broken)
		rc = GS_EUNAVAIL;
	else {
		s->half_close_requested = true;
		if (!s->send_inflight)
			rc = stream_start_send_locked(s);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gs_rpc_stream_cancel(struct gs_rpc_stream *s)
{
	if (s == NULL)
		return GS_EINVAL;
	pthread_mutex_lock(&s->mu);
	bool over = s->status_done;
	if (!over)
		grpc_call_cancel(s->call, NULL);
	pthread_mutex_unlock(&s->mu);
	return over ? GS_EUNAVAIL : GS_OK;
}

int gs_rpc_stream_wait(struct gs_rpc_stream *s, int timeout_ms, int *code)
{
	if (s == NULL)
		return GS_EINVAL;
	struct timespec dl = gs_clock_after_ms(CLOCK_MONOTONIC, timeout_ms);
	int rc = GS_OK;
	pthread_mutex_lock(&s->mu);
	while (!s->close_called) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&s->cond, &s->mu);
		} else if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) == ETIMEDOUT) {
			rc = s->close_called ? GS_OK : GS_ETIMEOUT;
			break;
		}
	}
	if (rc == GS_OK && code)
		*code = s->final_code;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void gs_rpc_stream_stats(struct gs_rpc_stream *s, struct gs_rpc_io_stats *out)
{
	if (s == NULL || out == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}

void gs_rpc_stream_destroy(struct gs_rpc_stream *s)
{
	if (s == NULL)
		return;
	if (pthread_equal(pthread_self(), s->thr)) {
		/* From a callback: the stream's thread frees it when it is quiet. */
		pthread_mutex_lock(&s->mu);
		s->auto_free = true;
		if (!s->status_done)
			grpc_call_cancel(s->call, NULL);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (!s->status_done)
		grpc_call_cancel(s->call, NULL);
	while (!stream_quiet_locked(s))
		pthread_cond_wait(&s->cond, &s->mu); /* cancellation completes promptly */
	pthread_mutex_unlock(&s->mu);
	grpc_call_unref(s->call);
	s->call = NULL;
	grpc_completion_queue_shutdown(s->cq);
	pthread_join(s->thr, NULL);
	grpc_completion_queue_destroy(s->cq);
	stream_free(s);
}
