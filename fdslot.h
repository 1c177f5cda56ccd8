/* fdslot.h: the ABI of fdslot.blob, a flat position-independent image of fdslot's restore path.
 *
 * Load it like this: map header.memory_size bytes (rounded up to a page) readable and writable;
 * copy the file's header.image_size bytes to the start (the rest stays zero); make the first
 * header.exec_size bytes readable and executable (mprotect; never writable again); set up
 * at least header.stack_need bytes of stack; call the entry at base + header.entry_offset with a
 * pointer to a struct fdslot_args. The blob relocates itself against its base on every call, so
 * it runs at any address. It never exits or kills its host: it returns 0, or a negative code
 * (-1 restore failed, -2 bad arguments or plan, -3 a peer failed or timed out, -14 internal
 * error) with one line in args->error. It leaves no fd behind but the planned ones, and unmaps
 * all memory it mapped. Signals should be blocked in the host thread while it runs.
 *
 * The sync fd, if given, belongs to the blob from the call on: it is closed before return.
 * With FDSLOT_FLAG_PRESERVE the host's table is rebuilt transactionally: fds in planned slots
 * are parked, and put back (same numbers, descriptions and FD_CLOEXEC) if the restore fails;
 * with a sync fd the blob, after sending "done", waits for "commit" (then it closes what it
 * parked) or "abort" (then it puts everything back and returns -3).
 */
#ifndef FDSLOT_H
#define FDSLOT_H

#include <stdint.h>

#define FDSLOT_BLOB_MAGIC "FDSLOTB" /* 8 bytes with its NUL */
#define FDSLOT_BLOB_VERSION 2

struct fdslot_blob_header {
	char magic[8];          /* "FDSLOTB\0" */
	uint32_t version;       /* FDSLOT_BLOB_VERSION */
	uint32_t entry_offset;  /* of fdslot_entry_fn, from the image's start */
	uint64_t image_size;    /* bytes in the file */
	uint64_t memory_size;   /* bytes it needs mapped: the image, then zeroes */
	uint64_t stack_need;    /* bytes of stack, with a margin */
	uint64_t exec_size;     /* bytes from the start (page-aligned) to make read+exec; the rest
	                         * stays read+write */
};

struct fdslot_args {
	const char *plan;       /* plan text, format 1 */
	uint64_t plan_len;
	uint32_t task;          /* the task id to restore in this process */
	int32_t sync_fd;        /* a `fdslot restore --sync-fd` channel, or -1: the tasks' own barrier */
	uint32_t timeout_ms;    /* one deadline for the whole restore; 0: 10 s */
	uint32_t batch;         /* fds per message, 1..253; 0: 253 */
	char session[32];       /* 1 to 32 of A-Za-z0-9_-, NUL-padded; the same in every task */
	char *error;            /* receives one NUL-terminated error line */
	uint64_t error_len;
	const uint32_t *keep;   /* host fds to keep open and untouched (at most 64), or NULL */
	uint32_t keep_len;
	uint32_t flags;         /* FDSLOT_FLAG_*; other bits must be 0 */
};

#define FDSLOT_FLAG_PRESERVE    1u /* park displaced fds; put them back on failure or abort */
#define FDSLOT_FLAG_KEEP_OTHERS 2u /* with PRESERVE: leave every unplanned fd open and untouched */

typedef int64_t (*fdslot_entry_fn)(struct fdslot_args *args);

#endif
