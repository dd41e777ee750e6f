/*
 * rpc_tls.c - reading TLS PEM files and bearer tokens (see rpc_tls.h), and
 * the internal loader the server and client adapters use (rpc_io.h).
 */
#include "rpc_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gs_error.h"
#include "rpc_io.h"

static void say(char *err, size_t n, const char *fmt, ...)
{
	if (err == NULL || n == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

static void wipe_free(char *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer.
 * what names the file in messages ("TLS key file"); never its bytes. */
static int read_file(const char *what, const char *path, size_t max, char **out, size_t *len,
                     struct stat *st_out, char *err, size_t err_len)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say(err, err_len, "%s %s: %s", what, path, strerror(errno));
		return GS_EIO;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
		say(err, err_len, "%s %s: %s", what, path,
		    S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
		close(fd);
		return GS_EIO;
	}
	if (st_out)
		*st_out = st;
	char *buf = malloc(max + 2);
	if (buf == NULL) {
		close(fd);
		return GS_ENOMEM;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			say(err, err_len, "%s %s: %s", what, path, strerror(errno));
			close(fd);
			wipe_free(buf, max + 2);
			return GS_EIO;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			say(err, err_len, "%s %s: larger than %zu bytes", what, path, max);
			close(fd);
			wipe_free(buf, max + 2);
			return GS_EIO;
		}
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return GS_OK;
}

static int read_pem(const char *what, const char *path, char **out, size_t *len, char *err,
                    size_t err_len)
{
	int rc = read_file(what, path, GS_RPC_TLS_MAX_FILE, out, len, NULL, err, err_len);
	if (rc != GS_OK)
		return rc;
	if (*len == 0 || strlen(*out) != *len || strstr(*out, "-----BEGIN ") == NULL) {
		say(err, err_len, "%s %s: %s", what, path,
		    *len == 0 ? "empty file" : "not a PEM file (no -----BEGIN line)");
		wipe_free(*out, *len + 1);
		*out = NULL;
		return GS_EIO;
	}
	return GS_OK;
}

void gs_tls_pem_free(struct gs_tls_pem *p)
{
	if (p == NULL)
		return;
	wipe_free(p->cert, p->cert ? strlen(p->cert) : 0);
	wipe_free(p->key, p->key ? strlen(p->key) : 0);
	wipe_free(p->ca, p->ca ? strlen(p->ca) : 0);
	memset(p, 0, sizeof(*p));
}

int gs_tls_pem_load(const struct gs_rpc_tls *tls, bool server, struct gs_tls_pem *out, char *err,
                    size_t err_len)
{
	memset(out, 0, sizeof(*out));
	if (err && err_len)
		err[0] = 0;
	if (tls == NULL) {
		say(err, err_len, "no TLS settings");
		return GS_EINVAL;
	}
	bool has_cert = tls->cert_file && tls->cert_file[0];
	bool has_key = tls->key_file && tls->key_file[0];
	bool has_ca = tls->ca_file && tls->ca_file[0];
	if (has_cert != has_key) {
		say(err, err_len, "a TLS certificate needs its key and a key its certificate");
		return GS_EINVAL;
	}
	if (server && !has_cert) {
		say(err, err_len, "a TLS server needs a certificate and a key");
		return GS_EINVAL;
	}
	if (server && tls->require_client_cert && !has_ca) {
		say(err, err_len, "requiring client certificates needs a CA file to verify them");
		return GS_EINVAL;
	}
	size_t len;
	int rc = GS_OK;
	if (has_cert)
		rc = read_pem("TLS certificate file", tls->cert_file, &out->cert, &len, err,
		              err_len);
	if (rc == GS_OK && has_key)
		rc = read_pem("TLS key file", tls->key_file, &out->key, &len, err, err_len);
	if (rc == GS_OK && has_ca)
		rc = read_pem("TLS CA file", tls->ca_file, &out->ca, &len, err, err_len);
	if (rc != GS_OK)
		gs_tls_pem_free(out);
	return rc;
}

int gs_rpc_tls_check(const struct gs_rpc_tls *tls, int server, char *err, size_t err_len)
{
	struct gs_tls_pem p;
	int rc = gs_tls_pem_load(tls, server != 0, &p, err, err_len);
	gs_tls_pem_free(&p);
	return rc;
}

/* ---- bearer tokens -------------------------------------------------------- */

int gs_rpc_token_read_file(const char *path, char **out, bool *world_readable, char *err,
                           size_t err_len)
{
	if (err && err_len)
		err[0] = 0;
	if (out == NULL || path == NULL || path[0] == 0) {
		say(err, err_len, "no token file given");
		return GS_EINVAL;
	}
	*out = NULL;
	char *buf;
	size_t len;
	struct stat st;
	int rc =
	    read_file("token file", path, GS_RPC_TOKEN_MAX_LEN + 64, &buf, &len, &st, err, err_len);
	if (rc != GS_OK)
		return rc;
	if (world_readable)
		*world_readable = (st.st_mode & S_IROTH) != 0;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
	                   buf[len - 1] == '\t'))
		buf[--len] = 0;
	const char *why = NULL;
	if (len == 0)
		why = "empty token";
	else if (len > GS_RPC_TOKEN_MAX_LEN)
		why = "token longer than 4096 bytes";
	for (size_t i = 0; why == NULL && i < len; i++)
		if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
			why = "the token has a space, a control character or a non-ASCII byte "
			      "(printable ASCII only)";
	if (why) {
		say(err, err_len, "token file %s: %s", path, why);
		wipe_free(buf, GS_RPC_TOKEN_MAX_LEN + 66);
		return GS_EINVAL;
	}
	*out = buf;
	return GS_OK;
}

void gs_rpc_token_free(char *token)
{
	if (token)
		wipe_free(token, strlen(token));
}

char *gs_rpc_bearer_value(const char *token)
{
	if (token == NULL)
		return NULL;
	size_t n = strlen(token);
	char *v = malloc(n + 8);
	if (v == NULL)
		return NULL;
	memcpy(v, "Bearer ", 7);
	memcpy(v + 7, token, n + 1);
	return v;
}

size_t gs_rpc_bearer_parse(const char *value, size_t len, const char **token)
{
	if (value == NULL || len < 8 || strncasecmp(value, "Bearer ", 7) != 0)
		return 0;
	size_t i = 7;
	while (i < len && value[i] == ' ')
		i++;
	if (i == len)
		return 0;
	*token = value + i;
	return len - i;
}

bool gs_rpc_token_equal(const char *presented, size_t len, const char *expected,
                        size_t expected_len)
{
	/* Every byte of the expected token is looked at whatever the presented
	 * one holds: no early exit reveals how much of a guess was right. */
	volatile unsigned char acc = (unsigned char)(len != expected_len);
	for (size_t i = 0; i < expected_len; i++) {
		unsigned char p = i < len ? (unsigned char)presented[i] : 0;
		acc |= p ^ (unsigned char)expected[i];
	}
	return acc == 0;
}
