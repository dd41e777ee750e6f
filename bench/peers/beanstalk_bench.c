/*
 * beanstalk_bench.c - beanstalkd peer driver over its text protocol (no
 * library), one binary, three modes:
 *   --worker                 watches tube "jobs"; for each job: reserve, then
 *                            one write of "delete" + "put" of the same 16 bytes
 *                            into "res-<clientid>" + the next "reserve"
 *                            (pipelined: one round trip per job).
 *   --mode latency|throughput --window W
 *                            the client puts into "jobs" and reserves from its
 *                            own "res-<id>" (plain blocking reserve, bounded by
 *                            the socket timeout), keeping W jobs in flight (latency:
 *                            W = 1); each result is deleted in the same write
 *                            as the next put and reserve.
 *   --mode fill              N puts with no worker (memory test), then prints
 *                            the tube's current-jobs-ready.
 * The 16-byte payload is submit time + (client id << 48 | sequence).
 * Prints one JSON line (peer_stats.h).  Every loop is bounded by --timeout and
 * every read by a 10 s socket timeout.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "peer_stats.h"

#define SEQ_MASK ((1ull << 48) - 1)

struct conn {
	int fd;
	size_t pos, len;
	char buf[1 << 16];
};

struct opts {
	const char *host, *mode;
	unsigned port, window, timeout_s, client_id;
	unsigned long tasks;
	int worker;
};

static void die(const char *what)
{
	fprintf(stderr, "beanstalk_bench: %s\n", what);
	exit(1);
}

static void bs_connect(struct conn *c, const struct opts *o)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	struct timeval tv = {.tv_sec = 10};
	int one = 1;
	c->pos = c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || inet_pton(AF_INET, o->host, &a.sin_addr) != 1 ||
	    connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("cannot connect");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void bs_send(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(c->fd, p, n);
		if (w <= 0)
			die("write failed");
		p += w;
		n -= (size_t)w;
	}
}

/* Reads exactly n bytes. */
static void bs_read(struct conn *c, char *out, size_t n)
{
	while (n > 0) {
		if (c->pos == c->len) {
			ssize_t r = read(c->fd, c->buf, sizeof(c->buf));
			if (r <= 0)
				die("read failed or timed out");
			c->pos = 0;
			c->len = (size_t)r;
		}
		size_t k = c->len - c->pos < n ? c->len - c->pos : n;
		memcpy(out, c->buf + c->pos, k);
		c->pos += k;
		out += k;
		n -= k;
	}
}

/* Reads one "\r\n"-terminated reply line (without the terminator). */
static void bs_line(struct conn *c, char *line, size_t cap)
{
	size_t n = 0;
	for (;;) {
		if (n + 1 >= cap)
			die("reply line too long");
		bs_read(c, line + n, 1);
		if (n > 0 && line[n - 1] == '\r' && line[n] == '\n') {
			line[n - 1] = '\0';
			return;
		}
		n++;
	}
}

static void bs_expect(struct conn *c, const char *prefix)
{
	char line[256];
	bs_line(c, line, sizeof(line));
	if (strncmp(line, prefix, strlen(prefix)) != 0) {
		fprintf(stderr, "beanstalk_bench: expected %s, got \"%s\"\n", prefix, line);
		exit(1);
	}
}

/* Reads a RESERVED reply with a 16-byte body; 0 if TIMED_OUT. */
static int bs_reserved(struct conn *c, unsigned long long *id, unsigned char *data)
{
	char line[256], crlf[2];
	unsigned bytes = 0;
	bs_line(c, line, sizeof(line));
	if (!strcmp(line, "TIMED_OUT"))
		return 0;
	if (sscanf(line, "RESERVED %llu %u", id, &bytes) != 2 || bytes != PEER_PAYLOAD) {
		fprintf(stderr, "beanstalk_bench: bad reserve reply \"%s\"\n", line);
		exit(1);
	}
	bs_read(c, (char *)data, PEER_PAYLOAD);
	bs_read(c, crlf, 2);
	return 1;
}

/* Appends "put 1024 0 60 16\r\n<data>\r\n" to buf at *n. */
static void put_cmd(char *buf, size_t *n, const unsigned char *data)
{
	*n += (size_t)sprintf(buf + *n, "put 1024 0 60 %u\r\n", PEER_PAYLOAD);
	memcpy(buf + *n, data, PEER_PAYLOAD);
	*n += PEER_PAYLOAD;
	memcpy(buf + *n, "\r\n", 2);
	*n += 2;
}

static int run_worker(const struct opts *o, struct conn *c)
{
	const char *hello = "watch jobs\r\nignore default\r\nreserve-with-timeout 1\r\n";
	bs_send(c, hello, strlen(hello));
	bs_expect(c, "WATCHING");
	bs_expect(c, "WATCHING");
	long cur = -1; /* client id of the tube in use */
	uint64_t deadline = peer_now_ns() + (uint64_t)o->timeout_s * 1000000000u;
	while (peer_now_ns() < deadline) {
		unsigned long long id;
		unsigned char data[PEER_PAYLOAD];
		char out[512];
		size_t n = 0;
		if (!bs_reserved(c, &id, data)) {
			bs_send(c, "reserve-with-timeout 1\r\n", 24);
			continue;
		}
		uint64_t t, seq;
		peer_payload_read(data, &t, &seq);
		long cid = (long)(seq >> 48);
		n += (size_t)sprintf(out + n, "delete %llu\r\n", id);
		if (cid != cur)
			n += (size_t)sprintf(out + n, "use res-%ld\r\n", cid);
		put_cmd(out, &n, data);
		n += (size_t)sprintf(out + n, "reserve-with-timeout 1\r\n");
		bs_send(c, out, n);
		bs_expect(c, "DELETED");
		if (cid != cur)
			bs_expect(c, "USING");
		cur = cid;
		bs_expect(c, "INSERTED");
	}
	return 0;
}

static int run_client(const struct opts *o, struct conn *c)
{
	uint64_t *lat = calloc(o->tasks, sizeof(uint64_t));
	uint64_t *start = calloc(o->tasks, sizeof(uint64_t));
	char *out = malloc((size_t)o->window * 64 + 256);
	if (!lat || !start || !out)
		die("out of memory");
	size_t n =
	    (size_t)sprintf(out, "use jobs\r\nwatch res-%u\r\nignore default\r\n", o->client_id);
	bs_send(c, out, n);
	bs_expect(c, "USING");
	bs_expect(c, "WATCHING");
	bs_expect(c, "WATCHING");
	uint64_t cid = (uint64_t)o->client_id << 48, sent = 0, done = 0;
	unsigned char data[PEER_PAYLOAD];
	uint64_t t0 = peer_now_ns(), deadline = t0 + (uint64_t)o->timeout_s * 1000000000u;
	n = 0;
	for (; sent < o->tasks && sent < o->window; sent++) {
		start[sent] = peer_now_ns();
		peer_payload(data, start[sent], cid | sent);
		put_cmd(out, &n, data);
	}
	n += (size_t)sprintf(out + n, "reserve\r\n");
	bs_send(c, out, n);
	for (uint64_t i = 0; i < sent; i++)
		bs_expect(c, "INSERTED");
	while (done < o->tasks && peer_now_ns() < deadline) {
		unsigned long long id;
		uint64_t t, seq;
		if (!bs_reserved(c, &id, data))
			die("unexpected TIMED_OUT");
		uint64_t now = peer_now_ns();
		peer_payload_read(data, &t, &seq);
		if ((seq & ~SEQ_MASK) != cid || (seq & SEQ_MASK) >= o->tasks)
			die("result for another client");
		lat[done++] = now - start[seq & SEQ_MASK];
		n = (size_t)sprintf(out, "delete %llu\r\n", id);
		int put = sent < o->tasks;
		if (put) {
			start[sent] = peer_now_ns();
			peer_payload(data, start[sent], cid | sent);
			put_cmd(out, &n, data);
			sent++;
		}
		if (done < o->tasks)
			n += (size_t)sprintf(out + n, "reserve\r\n");
		bs_send(c, out, n);
		bs_expect(c, "DELETED");
		if (put)
			bs_expect(c, "INSERTED");
	}
	double el = (double)(peer_now_ns() - t0) / 1e9;
	peer_report("beanstalkd", o->mode, "round_trip", done, o->window, el, lat, done);
	free(lat);
	free(start);
	free(out);
	return done == o->tasks ? 0 : 1;
}

static long tube_ready(struct conn *c)
{
	char line[256], body[8192];
	unsigned bytes = 0;
	bs_send(c, "stats-tube jobs\r\n", 17);
	bs_line(c, line, sizeof(line));
	if (sscanf(line, "OK %u", &bytes) != 1 || bytes + 2 > sizeof(body))
		return -1;
	bs_read(c, body, bytes + 2);
	body[bytes] = '\0';
	char *p = strstr(body, "current-jobs-ready:");
	return p ? strtol(p + 19, NULL, 10) : -1;
}

static int run_fill(const struct opts *o, struct conn *c)
{
	enum { BATCH = 1000 };
	char *out = malloc(BATCH * 64);
	unsigned char data[PEER_PAYLOAD];
	if (!out)
		die("out of memory");
	bs_send(c, "use jobs\r\n", 10);
	bs_expect(c, "USING");
	uint64_t sent = 0, t0 = peer_now_ns();
	uint64_t deadline = t0 + (uint64_t)o->timeout_s * 1000000000u;
	while (sent < o->tasks && peer_now_ns() < deadline) {
		size_t n = 0, k = 0;
		for (; k < BATCH && sent < o->tasks; k++, sent++) {
			peer_payload(data, peer_now_ns(), sent);
			put_cmd(out, &n, data);
		}
		bs_send(c, out, n);
		for (size_t i = 0; i < k; i++)
			bs_expect(c, "INSERTED");
	}
	double el = (double)(peer_now_ns() - t0) / 1e9;
	printf("{\"peer\":\"beanstalkd\",\"mode\":\"fill\",\"tasks\":%llu,\"queued\":%ld,"
	       "\"tasks_per_s\":%.0f}\n",
	       (unsigned long long)sent, tube_ready(c), (double)sent / el);
	free(out);
	return sent == o->tasks ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: beanstalk_bench --port P [--host H] (--worker | --mode "
	                "latency|throughput|fill --tasks N [--window W] [--client-id C]) "
	                "[--timeout S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = {.host = "127.0.0.1",
	                 .mode = "latency",
	                 .window = 1,
	                 .timeout_s = 300,
	                 .tasks = 10000,
	                 .client_id = (unsigned)getpid() & 0xffffu};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--worker")) {
			o.worker = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--host"))
			o.host = v;
		else if (!strcmp(a, "--port"))
			o.port = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--mode"))
			o.mode = v;
		else if (!strcmp(a, "--tasks"))
			o.tasks = peer_parse_ulong(a, v);
		else if (!strcmp(a, "--window"))
			o.window = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--timeout"))
			o.timeout_s = (unsigned)peer_parse_ulong(a, v);
		else if (!strcmp(a, "--client-id"))
			o.client_id = (unsigned)peer_parse_ulong(a, v) & 0xffffu;
		else
			usage();
	}
	if (o.port == 0 || o.port > 65535 || o.tasks > SEQ_MASK)
		usage();
	static struct conn c;
	bs_connect(&c, &o);
	if (o.worker)
		return run_worker(&o, &c);
	if (!strcmp(o.mode, "latency") || !strcmp(o.mode, "throughput"))
		return run_client(&o, &c);
	if (!strcmp(o.mode, "fill"))
		return run_fill(&o, &c);
	usage();
	return 2;
}
