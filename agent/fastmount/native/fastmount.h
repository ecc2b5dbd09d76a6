/* The native engine of a fast mount: a read-only pass-through FUSE filesystem over a local source,
 * served by libfuse's multi-threaded low-level loop, so no request goes through Python.
 *
 * Why it exists: profiling the pyfuse3 engine showed ~80 % of the time per small file and per directory
 * entry spent in the per-request path (pyfuse3 -> trio -> Python handler), not in the handlers. Here
 * each request costs a few microseconds, opened files are read by the kernel straight from the source
 * (FUSE passthrough, see passthrough.h) and directory listings are cached by the kernel. */
#ifndef BENCH_FASTMOUNT_H
#define BENCH_FASTMOUNT_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdint.h>

#include "inodes.h"

struct fastmount_options {
	const char *source;
	const char *mount_path;
	const char *mount_options;   /* the -o list: ro, fsname=..., subtype=..., allow_other, ... */
	unsigned threads;
	unsigned spin_us;            /* poll for requests this long before sleeping (receive.h); 0: never */
	unsigned readahead_kib;      /* 0: leave the kernel's read-ahead alone */
	unsigned max_request_kib;    /* largest read request the kernel sends; 0: libfuse's (1 MiB) */
	int passthrough;             /* let the kernel read opened files straight from the source (when it can) */
	int zero_message_open;       /* otherwise let the kernel open files without asking (when it can) */
	int readdirplus_always;      /* attributes with every listing batch, not only the first */
	int adaptive_attrs;          /* ... unless the directory's listings are used for names only (habits.h) */
	int dir_read_ahead;          /* stat the next listing batch while the kernel takes in the last (dirstream.h) */
	int debug;
	double entry_timeout;
	double attr_timeout;
	double negative_timeout;
	/* Called once the mount is up, in the mounting thread, before any request thread starts (they inherit
	 * what it leaves, e.g. reduced capabilities); nonzero fails the serve. NULL: none. */
	int (*on_mounted)(void *ctx);
	void *on_mounted_ctx;
};

struct fastmount {
	struct fastmount_options opts;
	int root_fd;
	struct fuse_session *se;
	struct inode_table inodes;
	atomic_int passthrough;      /* 1 while the kernel accepts backing files (cleared on its first refusal) */
	pthread_mutex_t backing_lock;
	unsigned idle_backings;      /* backing files kept with no open, for the next open; backing_lock */
	int no_open;                 /* negotiated: the kernel supports zero-message open and we want it */
	atomic_int readahead_tuned;
	atomic_uint_fast64_t bytes_read;
	atomic_uint_fast64_t errors;
	atomic_uint_fast64_t opens;
};

extern const struct fuse_lowlevel_ops fastmount_ops;

/* Open the source and mount; serve until unmounted or SIGTERM/SIGINT/SIGHUP, then unmount.
 * Returns 0, or -errno with a message on stderr. */
int fastmount_serve(struct fastmount *fm);

#endif
