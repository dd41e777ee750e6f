/* fake_rpc.c - see fake_rpc.h. */
#include "fake_rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"
#include "health.h"

atomic_long fake_rpc_live_calls;

int gs_rpc_server_add_method(struct gs_rpc_server *srv, const char *path, enum gs_rpc_kind kind,
                             const struct gs_rpc_method_ops *ops, void *method_ud)
{
	if (srv->n == sizeof(srv->m) / sizeof(srv->m[0]) || !ops || !ops->on_message)
		return GS_EINVAL;
	struct fake_method *m = &srv->m[srv->n++];
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->kind = kind;
	m->ops = ops;
	m->ud = method_ud;
	return GS_OK;
}

/* Health: accepted and ignored. */
struct gs_rpc_health {
	int unused;
};
static struct gs_rpc_health the_health;

int gs_rpc_health_register(struct gs_rpc_server *srv, struct gs_rpc_health **out)
{
	(void)srv;
	*out = &the_health;
	return GS_OK;
}

int gs_rpc_health_set(struct gs_rpc_health *h, const char *service, bool serving)
{
	(void)h;
	(void)service;
	(void)serving;
	return GS_OK;
}

const struct fake_method *fake_rpc_method(struct gs_rpc_server *srv, const char *path)
{
	for (size_t i = 0; i < srv->n; i++)
		if (strcmp(srv->m[i].path, path) == 0)
			return &srv->m[i];
	return NULL;
}

static void call_free(struct gs_rpc_call *c)
{
	free(c->out);
	free(c);
	atomic_fetch_sub(&fake_rpc_live_calls, 1);
}

void gs_rpc_call_ref(struct gs_rpc_call *call)
{
	atomic_fetch_add(&call->refs, 1);
}

void gs_rpc_call_unref(struct gs_rpc_call *call)
{
	if (!call)
		return;
	int old = atomic_fetch_sub(&call->refs, 1);
	if (old <= 0) {
		fprintf(stderr, "fake_rpc: gs_rpc_call_unref on a call with %d references\n", old);
		abort();
	}
	if (old == 1)
		call_free(call);
}

int gs_rpc_server_set_auth(struct gs_rpc_server *srv, gs_rpc_auth_fn fn, void *arg)
{
	if (!srv)
		return GS_EINVAL;
	srv->auth = fn;
	srv->auth_arg = arg;
	return GS_OK;
}

const char *gs_rpc_call_method(const struct gs_rpc_call *call)
{
	return call->m->path;
}

int gs_rpc_call_metadata(const struct gs_rpc_call *call, const char *key, const char **value,
                         size_t *len)
{
	(void)call;
	(void)key;
	(void)value;
	(void)len;
	return GS_ENOTFOUND; /* the fuzzed calls carry no metadata */
}

struct gs_rpc_call *fake_rpc_open(struct gs_rpc_server *srv, const struct fake_method *m)
{
	struct gs_rpc_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	atomic_fetch_add(&fake_rpc_live_calls, 1);
	atomic_init(&c->refs, 2);
	c->m = m;
	c->srv = srv;
	c->ud = m->ud;
	c->max_queue = 4u << 20; /* GS_RPC_DEFAULT_MAX_MESSAGE */
	const char *why = NULL;
	if ((srv->auth && srv->auth(c, srv->auth_arg, &why) != GS_OK) ||
	    (m->ops->on_open && m->ops->on_open(c, m->ud, &c->ud) != GS_OK)) {
		/* Refused: finished by the server, no other callback, both
		 * references dropped by it. */
		call_free(c);
		return NULL;
	}
	return c;
}

bool fake_rpc_over(const struct gs_rpc_call *c)
{
	return c->finished || c->cancelled;
}

void fake_rpc_message(struct gs_rpc_call *c, const uint8_t *bytes, size_t len)
{
	if (fake_rpc_over(c))
		return;
	/* The bytes are valid only during the callback: give the handler a
	 * copy of its own so that ASan sees any use after it. */
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return;
	if (len)
		memcpy(copy, bytes, len);
	c->m->ops->on_message(c, c->ud, copy, len);
	free(copy);
}

void fake_rpc_half_close(struct gs_rpc_call *c)
{
	if (!fake_rpc_over(c) && c->m->ops->on_half_close)
		c->m->ops->on_half_close(c, c->ud);
}

void fake_rpc_peer_cancel(struct gs_rpc_call *c)
{
	c->cancelled = true;
}

void fake_rpc_close(struct gs_rpc_call *c)
{
	if (c->closed) {
		fprintf(stderr, "fake_rpc: call closed twice\n");
		abort();
	}
	c->closed = true;
	int cancelled = !c->finished || c->cancelled;
	c->m->ops->on_close(c, c->ud, cancelled);
	gs_rpc_call_unref(c); /* gRPC's */
}

int gs_rpc_call_send(struct gs_rpc_call *call, const void *bytes, size_t len)
{
	if (call->closed) {
		fprintf(stderr, "fake_rpc: send after on_close\n");
		abort();
	}
	if (fake_rpc_over(call))
		return GS_EUNAVAIL;
	if (call->out_len + len > call->max_queue)
		return GS_EFULL;
	if (call->out_len + len > call->out_cap) {
		size_t cap = call->out_cap ? call->out_cap : 256;
		while (cap < call->out_len + len)
			cap *= 2;
		uint8_t *d = realloc(call->out, cap);
		if (!d)
			return GS_ENOMEM;
		call->out = d;
		call->out_cap = cap;
	}
	if (len)
		memcpy(call->out + call->out_len, bytes, len);
	call->out_len += len;
	return GS_OK;
}

int gs_rpc_call_finish(struct gs_rpc_call *call, int code, const char *message)
{
	(void)message;
	if (call->closed) {
		fprintf(stderr, "fake_rpc: finish after on_close\n");
		abort();
	}
	if (fake_rpc_over(call))
		return GS_EUNAVAIL;
	call->finished = true;
	call->code = code;
	return GS_OK;
}

int gs_rpc_call_cancel(struct gs_rpc_call *call)
{
	if (!fake_rpc_over(call))
		call->cancelled = true;
	return GS_OK;
}

const char *gs_rpc_call_peer(const struct gs_rpc_call *call)
{
	(void)call;
	return "ipv4:127.0.0.1:1";
}

int64_t gs_rpc_call_deadline_left_ms(const struct gs_rpc_call *call)
{
	(void)call;
	return -1; /* no deadline */
}
