/*
 * wal_file.c - the log's files: their names, their 32-byte headers, writes
 * and fsyncs that retry EINTR, creating a segment atomically, and the LOCK
 * that keeps one writer per directory.  No state: any thread.
 */
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "gs_error.h"
#include "wal_impl.h"

/* --- files --------------------------------------------------------------- */

void wal_file_header(uint8_t h[GS_WAL_FILE_HEADER], const char *magic, uint64_t seq)
{
	memset(h, 0, GS_WAL_FILE_HEADER);
	memcpy(h, magic, 8);
	wal_put32(h + 8, WAL_FILE_VERSION);
	wal_put64(h + 16, seq);
	wal_put32(h + 28, gs_wal_crc32c(0, h, 28));
}

bool wal_file_header_ok(const uint8_t *h, const char *magic, uint64_t seq)
{
	uint32_t v = wal_get32(h + 8);
	return memcmp(h, magic, 8) == 0 && v >= 1 && v <= WAL_FILE_VERSION &&
	       wal_get64(h + 16) == seq && wal_get32(h + 28) == gs_wal_crc32c(0, h, 28);
}

void wal_seg_name(char *out, size_t n, uint64_t seq, bool tmp)
{
	snprintf(out, n, "wal-%016" PRIx64 ".log%s", seq, tmp ? ".tmp" : "");
}

void wal_snap_name(char *out, size_t n, uint64_t seq, bool tmp)
{
	snprintf(out, n, "snap-%016" PRIx64 ".log%s", seq, tmp ? ".tmp" : "");
}

/* "wal-<16 hex>.log" -> seq; false for any other name. */
bool wal_parse_name(const char *name, const char *prefix, uint64_t *seq)
{
	size_t pl = strlen(prefix);
	if (strlen(name) != pl + 16 + 4 || strncmp(name, prefix, pl) != 0 ||
	    strcmp(name + pl + 16, ".log") != 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < 16; i++) {
		char ch = name[pl + i];
		int d;
		if (ch >= '0' && ch <= '9')
			d = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			d = ch - 'a' + 10;
		else
			return false;
		v = v << 4 | (uint64_t)d;
	}
	if (v == 0)
		return false;
	*seq = v;
	return true;
}

bool wal_is_tmp_name(const char *name)
{
	size_t l = strlen(name);
	return l > 4 && strcmp(name + l - 4, ".tmp") == 0 &&
	       (strncmp(name, "wal-", 4) == 0 || strncmp(name, "snap-", 5) == 0);
}

int wal_write_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t k = pwrite(fd, p, n, (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0) {
			errno = EIO;
			return -1;
		}
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

int wal_fsync_fd(int fd)
{
	while (fsync(fd) != 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

int wal_fdatasync_fd(int fd)
{
	while (fdatasync(fd) != 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

/*
 * Creates segment `seq` whole or not at all: header into <name>.tmp, fsync,
 * rename, fsync the directory.  Returns its fd, open for writing, or -1
 * with errno.
 */
int wal_create_segment(int dfd, uint64_t seq)
{
	char tmp[64], fin[64];
	uint8_t h[GS_WAL_FILE_HEADER];
	wal_seg_name(tmp, sizeof(tmp), seq, true);
	wal_seg_name(fin, sizeof(fin), seq, false);
	int fd = openat(dfd, tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	wal_file_header(h, WAL_SEG_MAGIC, seq);
	if (wal_write_all(fd, h, sizeof(h), 0) != 0 || wal_fsync_fd(fd) != 0 ||
	    renameat(dfd, tmp, dfd, fin) != 0 || wal_fsync_fd(dfd) != 0) {
		int e = errno;
		close(fd);
		unlinkat(dfd, tmp, 0);
		errno = e;
		return -1;
	}
	return fd;
}

/* Takes the directory lock: GS_EBUSY if held; *fd -1 if the file cannot exist here. */
int wal_lock_dir(int dfd, bool create, int *fd)
{
	*fd = openat(dfd, "LOCK", (create ? O_CREAT | O_RDWR : O_RDONLY) | O_CLOEXEC, 0644);
	if (*fd < 0)
		return create ? GS_EIO : GS_OK;
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		errno = e;
		return e == EWOULDBLOCK ? GS_EBUSY : GS_EIO;
	}
	return GS_OK;
}
