/* handlers.c - the built-in handler registry and the built-in handlers. */
#include "handlers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"

void gs_handlers_out_init(struct gs_handlers_out *out, size_t max)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	out->max = max;
}

void gs_handlers_out_free(struct gs_handlers_out *out)
{
	if (!out)
		return;
	free(out->data);
	out->data = NULL;
	out->len = 0;
	out->cap = 0;
}

int gs_handlers_out_write(struct gs_handlers_out *out, const void *data, size_t len)
{
	if (!out || (!data && len > 0))
		return GS_EINVAL;
	size_t room = out->max > out->len ? out->max - out->len : 0;
	size_t take = len < room ? len : room;
	if (take < len)
		out->truncated = true;
	if (take == 0)
		return GS_OK;
	if (out->len + take > out->cap) {
		size_t cap = out->cap ? out->cap : 256;
		while (cap < out->len + take)
			cap *= 2;
		if (cap > out->max)
			cap = out->max;
		uint8_t *p = realloc(out->data, cap);
		if (!p) {
			out->truncated = true;
			return GS_ENOMEM;
		}
		out->data = p;
		out->cap = cap;
	}
	memcpy(out->data + out->len, data, take);
	out->len += take;
	return GS_OK;
}

void gs_handlers_out_fail(struct gs_handlers_out *out, const char *fmt, ...)
{
	if (!out || !fmt)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out->error, sizeof(out->error), fmt, ap);
	va_end(ap);
	if (out->error[0] == '\0')
		snprintf(out->error, sizeof(out->error), "handler failed");
}

/* ---- the built-in handlers ---------------------------------------------- */

static void handler_noop(const uint8_t *payload, size_t len, struct gs_handlers_out *out)
{
	(void)payload;
	(void)len;
	(void)out;
}

static void handler_echo(const uint8_t *payload, size_t len, struct gs_handlers_out *out)
{
	if (gs_handlers_out_write(out, payload, len) != GS_OK)
		gs_handlers_out_fail(out, "echo: out of memory");
}

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A printable, bounded rendering of untrusted bytes for error messages. */
static void quote_bytes(char *dst, size_t dstlen, const uint8_t *src, size_t len)
{
	/* dstlen >= 4: room for "..." and the NUL. */
	size_t n = 0, i = 0;
	for (; i < len && n + 4 < dstlen; i++)
		dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	if (i < len) {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
}

static void handler_sleep(const uint8_t *payload, size_t len, struct gs_handlers_out *out)
{
	size_t i = 0, end = len;
	while (i < end && is_space(payload[i]))
		i++;
	while (end > i && is_space(payload[end - 1]))
		end--;
	uint64_t ms = 0;
	bool ok = i < end;
	for (size_t k = i; ok && k < end; k++) {
		if (payload[k] < '0' || payload[k] > '9') {
			ok = false;
			break;
		}
		ms = ms * 10 + (uint64_t)(payload[k] - '0');
		if (ms > GS_HANDLERS_SLEEP_MAX)
			ok = false;
	}
	if (!ok) {
		char shown[40];
		quote_bytes(shown, sizeof(shown), payload, len);
		gs_handlers_out_fail(out,
		                     "sleep: payload must be a decimal number of milliseconds "
		                     "(0..%u), got '%s'",
		                     GS_HANDLERS_SLEEP_MAX, shown);
		return;
	}
	out->delay_ms = ms;
}

/* The registry.  Add a row to add a handler. */
static const struct {
	const char *name;
	gs_handlers_fn fn;
} registry[] = {
    {"noop", handler_noop},
    {"echo", handler_echo},
    {"sleep", handler_sleep},
};

#define REGISTRY_LEN (sizeof(registry) / sizeof(registry[0]))

static gs_handlers_fn lookup(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < REGISTRY_LEN; i++)
		if (strcmp(registry[i].name, name) == 0)
			return registry[i].fn;
	return NULL;
}

bool gs_handlers_exists(const char *name)
{
	return lookup(name) != NULL;
}

const char *gs_handlers_name(size_t i)
{
	return i < REGISTRY_LEN ? registry[i].name : NULL;
}

int gs_handlers_run(const char *name, const void *payload, size_t len, struct gs_handlers_out *out)
{
	if (!name || !out || (!payload && len > 0))
		return GS_EINVAL;
	gs_handlers_fn fn = lookup(name);
	if (!fn) {
		char shown[72];
		quote_bytes(shown, sizeof(shown), (const uint8_t *)name, strlen(name));
		gs_handlers_out_fail(out, "unknown handler '%s'", shown);
		return GS_ENOTFOUND;
	}
	static const uint8_t empty[1];
	fn(len ? (const uint8_t *)payload : empty, len, out);
	return GS_OK;
}
