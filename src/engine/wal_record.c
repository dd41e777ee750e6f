/*
 * wal_record.c - log records: checks one before it is appended, encodes it
 * (header, payload, CRC-32C) and decodes a payload read back.  The layout of
 * each type is in wal.h.  No state: any thread.
 */
#include "wal.h"

#include <string.h>

#include "gs_error.h"
#include "wal_impl.h"

/* --- decoding a payload -------------------------------------------------- */

/* A bounds-checked reader of one payload. */
struct cur {
	const uint8_t *p;
	size_t n;
	bool bad;
};

static const uint8_t *cur_take(struct cur *c, size_t k)
{
	if (c->bad || c->n < k) {
		c->bad = true;
		return NULL;
	}
	const uint8_t *p = c->p;
	c->p += k;
	c->n -= k;
	return p;
}

static uint64_t cur64(struct cur *c)
{
	const uint8_t *p = cur_take(c, 8);
	return p ? wal_get64(p) : 0;
}

static uint32_t cur32(struct cur *c)
{
	const uint8_t *p = cur_take(c, 4);
	return p ? wal_get32(p) : 0;
}

static uint16_t cur16(struct cur *c)
{
	const uint8_t *p = cur_take(c, 2);
	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint8_t cur8(struct cur *c)
{
	const uint8_t *p = cur_take(c, 1);
	return p ? p[0] : 0;
}

/* --- records ------------------------------------------------------------- */

const char *gs_wal_type_name(uint32_t type)
{
	switch (type) {
	case GS_WAL_SUBMIT:
		return "SUBMIT";
	case GS_WAL_ASSIGN:
		return "ASSIGN";
	case GS_WAL_COMPLETE:
		return "COMPLETE";
	case GS_WAL_CANCEL:
		return "CANCEL";
	case GS_WAL_RELEASE:
		return "RELEASE";
	case GS_WAL_SNAPSHOT_BEGIN:
		return "SNAPSHOT_BEGIN";
	case GS_WAL_SNAPSHOT_END:
		return "SNAPSHOT_END";
	case GS_WAL_KEY:
		return "KEY";
	default:
		return "?";
	}
}

/*
 * Checks a record and computes its payload size.  Markers only when
 * `markers` (compaction writes them, callers may not).
 */
int wal_rec_check(const gs_wal_rec *r, uint32_t max_record, bool markers, uint32_t *payload)
{
	uint64_t n;
	size_t qlen;
	switch (r->type) {
	case GS_WAL_SUBMIT:
		if (!r->queue)
			return GS_EINVAL;
		qlen = strnlen(r->queue, GS_WAL_MAX_QUEUE_NAME + 1);
		if (qlen == 0 || qlen > GS_WAL_MAX_QUEUE_NAME)
			return GS_EINVAL;
		if (r->data_len && !r->data)
			return GS_EINVAL;
		n = 8 + 8 + 8 + 4 + 4 + 4 + 2 + qlen + 1 + 4 + (uint64_t)r->data_len;
		break;
	case GS_WAL_ASSIGN:
		n = 8 + 8 + 8 + 4;
		break;
	case GS_WAL_COMPLETE:
		if (r->state != GS_TASK_DONE && r->state != GS_TASK_FAILED)
			return GS_EINVAL;
		if (r->reason > 255 || (r->data_len && !r->data))
			return GS_EINVAL;
		n = 8 + 8 + 4 + 1 + 1 + 4 + 4 + (uint64_t)r->data_len;
		break;
	case GS_WAL_CANCEL:
		n = 16;
		break;
	case GS_WAL_RELEASE:
		n = 8;
		break;
	case GS_WAL_KEY:
		if (!r->key || r->key_len == 0 || r->key_len > GS_WAL_MAX_KEY || r->n_ids == 0 ||
		    !r->ids || r->flags > 255)
			return GS_EINVAL;
		n = 1 + 8 + 8 + 2 + (uint64_t)r->key_len + 4 + 8 * (uint64_t)r->n_ids;
		break;
	case GS_WAL_SNAPSHOT_BEGIN:
	case GS_WAL_SNAPSHOT_END:
		if (!markers)
			return GS_EINVAL;
		n = r->type == GS_WAL_SNAPSHOT_END ? 20 : 16;
		break;
	default:
		return GS_EINVAL;
	}
	if (GS_WAL_RECORD_HEADER + n > max_record)
		return GS_ETOOBIG;
	*payload = (uint32_t)n;
	return GS_OK;
}

/* Writes header and payload (GS_WAL_RECORD_HEADER + payload bytes) at dst. */
void wal_rec_encode(const gs_wal_rec *r, uint32_t payload, uint8_t *dst)
{
	uint8_t *p = dst + GS_WAL_RECORD_HEADER;
	size_t qlen;
	wal_put32(dst, payload);
	dst[8] = (uint8_t)r->type;
	switch (r->type) {
	case GS_WAL_SUBMIT:
		qlen = strlen(r->queue);
		wal_put64(p, r->task);
		wal_put64(p + 8, r->time_us);
		wal_put64(p + 16, r->not_before_us);
		wal_put32(p + 24, r->priority);
		wal_put32(p + 28, r->max_retries);
		wal_put32(p + 32, r->timeout_ms);
		wal_put16(p + 36, (uint16_t)qlen);
		memcpy(p + 38, r->queue, qlen);
		p[38 + qlen] = 0;
		p += 39 + qlen;
		wal_put32(p, r->data_len);
		if (r->data_len)
			memcpy(p + 4, r->data, r->data_len);
		break;
	case GS_WAL_ASSIGN:
		wal_put64(p, r->task);
		wal_put64(p + 8, r->time_us);
		wal_put64(p + 16, r->worker);
		wal_put32(p + 24, r->attempt);
		break;
	case GS_WAL_COMPLETE:
		wal_put64(p, r->task);
		wal_put64(p + 8, r->time_us);
		wal_put32(p + 16, (uint32_t)r->status);
		p[20] = (uint8_t)r->state;
		p[21] = (uint8_t)r->reason;
		wal_put32(p + 22, r->attempt);
		wal_put32(p + 26, r->data_len);
		if (r->data_len)
			memcpy(p + 30, r->data, r->data_len);
		break;
	case GS_WAL_CANCEL:
		wal_put64(p, r->task);
		wal_put64(p + 8, r->time_us);
		break;
	case GS_WAL_RELEASE:
		wal_put64(p, r->task);
		break;
	case GS_WAL_SNAPSHOT_BEGIN:
		wal_put64(p, r->seq);
		wal_put64(p + 8, r->time_us);
		break;
	case GS_WAL_SNAPSHOT_END:
		wal_put64(p, r->seq);
		wal_put64(p + 8, r->count);
		wal_put32(p + 16, r->gen_high);
		break;
	case GS_WAL_KEY:
		p[0] = (uint8_t)r->flags;
		wal_put64(p + 1, r->time_us);
		wal_put64(p + 9, r->digest);
		wal_put16(p + 17, (uint16_t)r->key_len);
		memcpy(p + 19, r->key, r->key_len);
		p += 19 + r->key_len;
		wal_put32(p, r->n_ids);
		for (uint32_t i = 0; i < r->n_ids; i++)
			wal_put64(p + 4 + 8 * (size_t)i, r->ids[i]);
		break;
	}
	uint32_t crc = gs_wal_crc32c(0, dst, 4);
	crc = gs_wal_crc32c(crc, dst + 8, 1 + (size_t)payload);
	wal_put32(dst + 4, crc);
}

/* Decodes a payload whose checksum held; false if it is malformed. */
bool wal_rec_decode(uint32_t type, const uint8_t *p, size_t n, gs_wal_rec *r)
{
	struct cur c = {p, n, false};
	uint16_t qlen;
	const uint8_t *q;
	memset(r, 0, sizeof(*r));
	r->type = type;
	switch (type) {
	case GS_WAL_SUBMIT:
		r->task = cur64(&c);
		r->time_us = cur64(&c);
		r->not_before_us = cur64(&c);
		r->priority = cur32(&c);
		r->max_retries = cur32(&c);
		r->timeout_ms = cur32(&c);
		qlen = cur16(&c);
		q = cur_take(&c, (size_t)qlen + 1);
		if (!q || qlen == 0 || qlen > GS_WAL_MAX_QUEUE_NAME || q[qlen] != 0 ||
		    memchr(q, 0, qlen))
			return false;
		r->queue = (const char *)q;
		r->data_len = cur32(&c);
		r->data = cur_take(&c, r->data_len);
		break;
	case GS_WAL_ASSIGN:
		r->task = cur64(&c);
		r->time_us = cur64(&c);
		r->worker = cur64(&c);
		r->attempt = cur32(&c);
		break;
	case GS_WAL_COMPLETE:
		r->task = cur64(&c);
		r->time_us = cur64(&c);
		r->status = (int32_t)cur32(&c);
		r->state = cur8(&c);
		r->reason = cur8(&c);
		r->attempt = cur32(&c);
		r->data_len = cur32(&c);
		r->data = cur_take(&c, r->data_len);
		if (r->state != GS_TASK_DONE && r->state != GS_TASK_FAILED)
			return false;
		break;
	case GS_WAL_CANCEL:
		r->task = cur64(&c);
		r->time_us = cur64(&c);
		break;
	case GS_WAL_RELEASE:
		r->task = cur64(&c);
		break;
	case GS_WAL_SNAPSHOT_BEGIN:
		r->seq = cur64(&c);
		r->time_us = cur64(&c);
		break;
	case GS_WAL_SNAPSHOT_END:
		r->seq = cur64(&c);
		r->count = cur64(&c);
		if (c.n == 4) /* version 2; a version-1 END has no gen_high */
			r->gen_high = cur32(&c);
		break;
	case GS_WAL_KEY:
		r->flags = cur8(&c);
		r->time_us = cur64(&c);
		r->digest = cur64(&c);
		r->key_len = cur16(&c);
		r->key = cur_take(&c, r->key_len);
		r->n_ids = cur32(&c);
		if (c.bad || r->key_len == 0 || r->key_len > GS_WAL_MAX_KEY || r->n_ids == 0 ||
		    r->n_ids > c.n / 8)
			return false;
		r->ids_le = cur_take(&c, 8 * (size_t)r->n_ids);
		break;
	default:
		return false;
	}
	if (r->data_len == 0)
		r->data = NULL;
	return !c.bad && c.n == 0;
}

uint64_t gs_wal_rec_id(const gs_wal_rec *r, uint32_t i)
{
	if (!r || i >= r->n_ids)
		return 0;
	if (r->ids)
		return r->ids[i];
	return r->ids_le ? wal_get64(r->ids_le + 8 * (size_t)i) : 0;
}
