/*
 * rpc_tls.h - TLS settings for the RPC server and client, and bearer tokens.
 *
 * Owns: the description of a TLS configuration (PEM files by path) shared by
 * gs_rpc_server_start_tls() and gs_rpc_client_opts.tls, a pre-flight check
 * that reads those files and says clearly what is wrong with one, and the
 * bearer-token helpers (reading a token file, building and comparing the
 * "authorization: Bearer <token>" header).  This header includes no grpc
 * header.
 *
 * Secrets: key files and tokens are read into memory that is wiped before it
 * is freed; no function here puts a secret's bytes in a message (messages
 * name the file, never its contents).
 *
 * Thread-safety: every function is reentrant (no global state).
 * Errors: gs_status codes; err buffers (may be NULL) get one line, no newline.
 */
#ifndef GS_RPC_TLS_H
#define GS_RPC_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* Largest PEM or token file read (anything larger is refused). */
#define GS_RPC_TLS_MAX_FILE  (1u << 20)
#define GS_RPC_TOKEN_MAX_LEN 4096

struct gs_rpc_tls {
	/* Server: its certificate chain and private key (both required).
	 * Client: its own certificate and key for mutual TLS (both or neither). */
	const char *cert_file;
	const char *key_file;
	/* Client: the CA certificates that verify the server (NULL: gRPC's
	 * default roots).  Server: the CA certificates that verify client
	 * certificates (NULL: client certificates are not asked for). */
	const char *ca_file;
	/* Server: refuse a client without a certificate signed by ca_file
	 * (needs ca_file).  With ca_file and 0, a certificate is verified if
	 * the client presents one. */
	int require_client_cert;
	/* Client: the name checked against the server's certificate instead of
	 * the target's host (NULL: the host; tests use IP SANs instead). */
	const char *target_name;
};

/* Reads every file tls names, as the server (server != 0) or the client will,
 * and checks what can be checked without gRPC: readable, not empty, not over
 * GS_RPC_TLS_MAX_FILE, PEM ("-----BEGIN"), cert and key given together, a
 * server has both, require_client_cert has a ca_file.  GS_OK, GS_EINVAL (a
 * missing or contradictory setting), GS_EIO (a file cannot be read or is not
 * PEM: err names the file and the reason), GS_ENOMEM. */
int gs_rpc_tls_check(const struct gs_rpc_tls *tls, int server, char *err, size_t err_len);

/* Reads a bearer token from path: the file's content with trailing
 * whitespace (the newline) removed.  *out is malloc'd: free it with
 * gs_rpc_token_free.  Refused (GS_EINVAL, err says why without the content):
 * an empty token, one over GS_RPC_TOKEN_MAX_LEN bytes, or one with bytes
 * outside printable ASCII 0x21..0x7e.  GS_EIO if the file cannot be read.
 * *world_readable (may be NULL) is set when others may read the file (the
 * caller warns). */
int gs_rpc_token_read_file(const char *path, char **out, bool *world_readable, char *err,
                           size_t err_len);
/* Wipes and frees a token (NULL is fine). */
void gs_rpc_token_free(char *token);

/* The authorization header value for token: "Bearer <token>", malloc'd
 * (free with gs_rpc_token_free); NULL if out of memory. */
char *gs_rpc_bearer_value(const char *token);

/* If value (len bytes) is "Bearer <token>" (scheme case-insensitive), points
 * *token at the token inside value and returns its length; else returns 0. */
size_t gs_rpc_bearer_parse(const char *value, size_t len, const char **token);

/* Compares a presented secret (len bytes) with the expected one in time that
 * depends only on the expected length.  True if equal. */
bool gs_rpc_token_equal(const char *presented, size_t len, const char *expected,
                        size_t expected_len);

#endif /* GS_RPC_TLS_H */
