/*
 * peer_stats.h - helpers shared by the peer drivers (gearman_bench,
 * beanstalk_bench): monotonic clock, the 16-byte workload, latency
 * percentiles and the one-line JSON result.
 */
#ifndef GS_PEER_STATS_H
#define GS_PEER_STATS_H

#include <stddef.h>
#include <stdint.h>

#define PEER_PAYLOAD 16u /* bytes of every job and every result */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t peer_now_ns(void);

/* Fills buf[16] with the submit time (8 bytes) and the sequence number (8). */
void peer_payload(unsigned char *buf, uint64_t t_ns, uint64_t seq);

/* Reads the submit time and sequence number back from a 16-byte payload. */
void peer_payload_read(const unsigned char *buf, uint64_t *t_ns, uint64_t *seq);

/*
 * Prints {"peer":..,"mode":..,"tasks":n,"workers":w,"window":win,
 * "tasks_per_s":..,"p50_us":..,...,"max_us":..,"measure":..} on stdout.
 * lat_ns (n entries, sorted here) may be NULL when n_lat is 0.
 */
void peer_report(const char *peer, const char *mode, const char *measure, uint64_t tasks,
                 unsigned window, double elapsed_s, uint64_t *lat_ns, size_t n_lat);

/* Parses a positive integer option value or exits with a message. */
unsigned long peer_parse_ulong(const char *opt, const char *val);

#endif
