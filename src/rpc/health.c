/* health.c - grpc.health.v1.Health/Check over gs_rpc_server (see health.h). */
#include "health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "gs_error.h"
#include "rpc_status.h"

#define NAME_MAX_LEN 200

struct gs_rpc_health {
	struct gs_rpc_server *srv;
	pthread_mutex_t mu;
	size_t n;
	char names[GS_RPC_HEALTH_MAX_SERVICES][NAME_MAX_LEN + 1];
	bool serving[GS_RPC_HEALTH_MAX_SERVICES];
};

/* -1 unknown, 0 not serving, 1 serving. */
static int health_lookup(struct gs_rpc_health *h, const char *service)
{
	int st = -1;
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->n; i++) {
		if (strcmp(h->names[i], service) == 0) {
			st = h->serving[i] ? 1 : 0;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	return st;
}

static void check_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *bytes, size_t len)
{
	struct gs_rpc_health *h = ud;
	Grpc__Health__V1__HealthCheckRequest *req =
	    grpc__health__v1__health_check_request__unpack(NULL, len, bytes);
	if (req == NULL) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed HealthCheckRequest");
		return;
	}
	int st = health_lookup(h, req->service ? req->service : "");
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
	if (st < 0) {
		gs_rpc_call_finish(call, GS_RPC_NOT_FOUND, "unknown service");
		return;
	}
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = (st == 1 && !gs_rpc_server_is_stopping(h->srv))
	                  ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	                  : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	uint8_t buf[16];
	size_t n = grpc__health__v1__health_check_response__pack(&resp, buf);
	int rc = gs_rpc_call_send(call, buf, n);
	if (rc == GS_OK)
		gs_rpc_call_finish(call, GS_RPC_OK, NULL);
	else
		gs_rpc_call_finish(call, gs_rpc_code_from_status(rc), gs_strerror(rc));
}

static void check_on_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	(void)ud;
	(void)cancelled;
	gs_rpc_call_unref(call);
}

static void health_free(void *ud)
{
	struct gs_rpc_health *h = ud;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

int gs_rpc_health_set(struct gs_rpc_health *h, const char *service, bool serving)
{
	if (h == NULL || service == NULL || strlen(service) > NAME_MAX_LEN)
		return GS_EINVAL;
	int rc = GS_OK;
	pthread_mutex_lock(&h->mu);
	size_t i;
	for (i = 0; i < h->n; i++)
		if (strcmp(h->names[i], service) == 0)
			break;
	if (i == h->n) {
		if (h->n == GS_RPC_HEALTH_MAX_SERVICES) {
			rc = GS_EFULL;
		} else {
			strcpy(h->names[i], service);
			h->n++;
		}
	}
	if (rc == GS_OK)
		h->serving[i] = serving;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int gs_rpc_health_register(struct gs_rpc_server *srv, struct gs_rpc_health **out)
{
	if (out)
		*out = NULL;
	if (srv == NULL)
		return GS_EINVAL;
	struct gs_rpc_health *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return GS_ENOMEM;
	h->srv = srv;
	pthread_mutex_init(&h->mu, NULL);
	gs_rpc_health_set(h, "", true);
	static const struct gs_rpc_method_ops ops = {
	    .on_message = check_on_message,
	    .on_close = check_on_close,
	    .on_free = health_free,
	};
	int rc = gs_rpc_server_add_method(srv, GS_RPC_HEALTH_CHECK_PATH, GS_RPC_UNARY, &ops, h);
	if (rc != GS_OK) {
		health_free(h);
		return rc;
	}
	/* Probes are answered whatever the connection and stream limits (cannot
	 * fail: the method was registered just now). */
	gs_rpc_server_exempt_method(srv, GS_RPC_HEALTH_CHECK_PATH);
	if (out)
		*out = h;
	return GS_OK;
}
