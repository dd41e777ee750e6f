/*
 * fuzz_codec.c - the hand-written protobuf encoder of src/rpc/codec.c and
 * the latency histogram of src/node/histogram.c.
 *
 * Codec: a WorkResult built from the input goes through
 * gs_codec_result_fragment (what the server stores as a task's result) and
 * gs_codec_put_result over a fuzzed gs_task_info (what Wait, Get, Watch and
 * SubmitStream send); protobuf-c must decode the bytes as a WaitResponse
 * whose TaskResult matches field by field.  gs_codec_spec_check runs on any
 * TaskSpec protobuf-c decodes from the input, and put_result's fragment
 * scanner (include_output false) on arbitrary stored bytes.
 *
 * Histogram: fuzzed values recorded (and merged); count, min, max exact,
 * every percentile inside [min, max] and monotone in p, each value inside
 * its bucket's range.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_common.h"
#include "gs_error.h"
#include "histogram.h"

static bool known(const char *name, void *arg)
{
	(void)arg;
	return strcmp(name, "noop") == 0 || strcmp(name, "echo") == 0;
}

static void fuzz_result(struct fz_in *in)
{
	uint8_t f = fz_u8(in);
	Gsched__V1__WorkResult r = GSCHED__V1__WORK_RESULT__INIT;
	size_t olen, elen;
	r.output.data = (uint8_t *)fz_bytes(in, 3000, &olen);
	r.output.len = olen;
	r.output_truncated = f & 1;
	const uint8_t *e = fz_bytes(in, 200, &elen);
	char *err = calloc(1, elen + 1);
	FZ_CHECK(err != NULL, "out of memory");
	memcpy(err, e, elen);
	r.error = err;
	gs_pb_buf frag;
	gs_pb_buf_init(&frag);
	gs_codec_result_fragment(&frag, &r);
	FZ_CHECK(!frag.oom, "oom");

	gs_task_info info;
	memset(&info, 0, sizeof(info));
	info.id = fz_u64(in);
	info.state = fz_u8(in) % 12;
	info.status = (int32_t)fz_u32(in);
	info.reason = fz_u8(in) % 6;
	info.result_dropped = f & 2;
	info.worker = fz_u64(in);
	info.attempt = fz_u32(in);
	info.submitted_us = fz_u64(in);
	info.assigned_us = fz_u64(in);
	info.started_us = fz_u64(in);
	info.finished_us = fz_u64(in);
	bool with_output = f & 4;
	bool stored = !(f & 8);

	gs_pb_buf b;
	gs_pb_buf_init(&b);
	gs_codec_put_result(&b, 1, &info, stored ? frag.data : NULL,
	                    stored ? (uint32_t)frag.len : 0, with_output);
	gs_pb_put_varint(&b, 2, f & 16 ? 1 : 0);
	FZ_CHECK(!b.oom, "oom");
	Gsched__V1__WaitResponse *w = gsched__v1__wait_response__unpack(NULL, b.len, b.data);
	FZ_CHECK(w != NULL, "put_result bytes do not decode");
	FZ_CHECK(w->n_results == 1 && w->complete == !!(f & 16), "shape");
	const Gsched__V1__TaskResult *t = w->results[0];
	FZ_CHECK(t->id == info.id && t->state == gs_codec_state(info.state) &&
	             t->exit_code == info.status && t->worker_id == info.worker &&
	             t->attempts == info.attempt && t->submitted_us == info.submitted_us &&
	             t->assigned_us == info.assigned_us && t->started_us == info.started_us &&
	             t->finished_us == info.finished_us,
	         "TaskResult fields differ");
	if (stored) {
		size_t want = with_output ? r.output.len : 0;
		FZ_CHECK(t->output.len == want &&
		             (!want || memcmp(t->output.data, r.output.data, want) == 0),
		         "output differs (%zu of %zu)", t->output.len, want);
		FZ_CHECK(t->output_truncated == r.output_truncated, "truncated flag");
	} else {
		FZ_CHECK(t->output.len == 0 && !t->output_truncated, "output from nowhere");
	}
	/* The error: the worker's unless the server says why (a later field
	 * wins in protobuf, as the server appends its own after the fragment). */
	const char *want_err = stored ? err : "";
	if (info.state == GS_TASK_FAILED && info.reason == GS_REASON_WORKER_LOST)
		want_err = "worker lost";
	else if (info.state == GS_TASK_CANCELLED && (!stored || frag.len == 0))
		want_err = "cancelled";
	else if (info.result_dropped)
		want_err = "result dropped: server result storage full";
	FZ_CHECK(strcmp(t->error, want_err) == 0, "error '%s', expected '%s'", t->error, want_err);
	gsched__v1__wait_response__free_unpacked(w, NULL);
	gs_pb_buf_free(&b);
	gs_pb_buf_free(&frag);
	free(err);
}

static void fuzz_stored(struct fz_in *in)
{
	/* Arbitrary stored bytes: the scanner must stay inside them. */
	size_t n;
	const uint8_t *p = fz_bytes(in, 512, &n);
	uint8_t *copy = malloc(n ? n : 1);
	FZ_CHECK(copy != NULL, "out of memory");
	memcpy(copy, p, n);
	gs_task_info info;
	memset(&info, 0, sizeof(info));
	info.state = GS_TASK_DONE;
	gs_pb_buf b;
	gs_pb_buf_init(&b);
	gs_codec_put_result(&b, 1, &info, copy, (uint32_t)n, false);
	gs_pb_buf_free(&b);
	free(copy);
}

static void fuzz_spec(struct fz_in *in)
{
	size_t n;
	const uint8_t *p = fz_bytes(in, 2048, &n);
	Gsched__V1__TaskSpec *sp = gsched__v1__task_spec__unpack(NULL, n, p);
	if (!sp)
		return;
	char err[256];
	int rc =
	    gs_codec_spec_check(sp, 1024, fz_u8(in) & 1 ? known : NULL, NULL, err, sizeof(err));
	if (rc == GS_OK)
		FZ_CHECK(sp->priority <= 255 && sp->retries <= GS_MAX_RETRIES &&
		             gsched__v1__task_spec__get_packed_size(sp) <= 1024 &&
		             (sp->body_case == GSCHED__V1__TASK_SPEC__BODY_ARGV ||
		              sp->body_case == GSCHED__V1__TASK_SPEC__BODY_HANDLER),
		         "a bad spec passed the check");
	else
		FZ_CHECK(err[0] != 0, "an error without a message");
	gsched__v1__task_spec__free_unpacked(sp, NULL);
}

static gs_histogram h1, h2;

static void fuzz_histogram(struct fz_in *in)
{
	gs_histogram_init(&h1);
	gs_histogram_init(&h2);
	size_t n = fz_u8(in) % 64;
	uint64_t mn = UINT64_MAX, mx = 0, cnt = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t f = fz_u8(in);
		uint64_t v = f & 1 ? fz_u64(in) : f & 2 ? fz_u32(in) : fz_u16(in);
		uint64_t k = f & 4 ? fz_u8(in) : 1;
		gs_histogram *h = f & 8 ? &h2 : &h1;
		FZ_CHECK(gs_histogram_record_n(h, v, k) == GS_OK, "record");
		if (k) {
			mn = v < mn ? v : mn;
			mx = v > mx ? v : mx;
			cnt += k;
		}
		unsigned b = gs_histogram_bucket_of(v);
		FZ_CHECK(b < GS_HIST_BUCKETS, "bucket %u", b);
		uint64_t lo, hi;
		gs_histogram_bucket_range(b, &lo, &hi);
		FZ_CHECK(lo <= v && v <= hi, "%llu outside its bucket [%llu, %llu]",
		         (unsigned long long)v, (unsigned long long)lo, (unsigned long long)hi);
	}
	FZ_CHECK(gs_histogram_merge(&h1, &h2) == GS_OK, "merge");
	FZ_CHECK(h1.count == cnt, "count %llu, expected %llu", (unsigned long long)h1.count,
	         (unsigned long long)cnt);
	uint64_t out;
	if (!cnt) {
		FZ_CHECK(gs_histogram_percentile(&h1, 50, &out) == GS_EEMPTY, "empty percentile");
		return;
	}
	FZ_CHECK(h1.min == mn && h1.max == mx, "min/max");
	uint64_t prev = 0;
	for (int i = 0; i <= 8; i++) {
		double p = i == 8 ? 100.0 : (double)fz_u16(in) / 65535.0 * 100.0;
		if (i < 8 && i > 0)
			p = p < 0 ? 0 : p;
		FZ_CHECK(gs_histogram_percentile(&h1, p, &out) == GS_OK, "percentile %f", p);
		FZ_CHECK(out >= mn && out <= mx, "percentile %f = %llu outside [min, max]", p,
		         (unsigned long long)out);
		if (i == 8)
			FZ_CHECK(out == mx, "p100 is not max");
		(void)prev;
	}
	/* Monotone in p. */
	prev = 0;
	for (int i = 0; i <= 20; i++) {
		FZ_CHECK(gs_histogram_percentile(&h1, i * 5.0, &out) == GS_OK, "percentile");
		FZ_CHECK(out >= prev, "percentile not monotone at %d%%", i * 5);
		prev = out;
	}
	FZ_CHECK(gs_histogram_percentile(&h1, 100.5, &out) == GS_EINVAL, "p over 100");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size, 0};
	for (int steps = 0; fz_more(&in) && steps < 16; steps++) {
		switch (fz_u8(&in) % 4) {
		case 0:
			fuzz_result(&in);
			break;
		case 1:
			fuzz_stored(&in);
			break;
		case 2:
			fuzz_spec(&in);
			break;
		default:
			fuzz_histogram(&in);
			break;
		}
	}
	return 0;
}
