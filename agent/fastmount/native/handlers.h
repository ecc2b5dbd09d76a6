/* What the request handlers of the native fast mount share (ops.c defines them; listing.c uses them). */
#ifndef BENCH_FASTMOUNT_HANDLERS_H
#define BENCH_FASTMOUNT_HANDLERS_H

#include "fastmount.h"

#include <sys/stat.h>
#include <time.h>

struct fastmount *fs_of(fuse_req_t req);
struct inode *node_of(struct fastmount *fm, fuse_ino_t ino);

/* Source failures are counted (they show in get-mounts); a missing name is an answer, not a failure. */
void reply_err(struct fastmount *fm, fuse_req_t req, int err);

/* Open `path` (relative to the source) beneath the source without following symlinks: an fd or -errno. */
int open_beneath(struct fastmount *fm, const char *path, int flags);

/* Open the source object of `node` (flags | O_NONBLOCK, cleared again for files): an fd, or -ESTALE when
 * its path now names another object than the one the kernel checked permissions on, -EACCES for anything
 * but a regular file (without O_DIRECTORY), else -errno. */
int open_node(struct fastmount *fm, struct inode *node, int flags);

/* How long the kernel may still use attributes read at `read_at` (CLOCK_MONOTONIC): what is left of
 * attr_timeout, so no attributes older than that decide a permission check. */
double attrs_valid_for(struct fastmount *fm, const struct timespec *read_at);

/* Raise the mount's read-ahead to the configured size, once (the first request after INIT does it). */
void tune_readahead(struct fastmount *fm);

/* Drop kernel lookups of `node`; when it goes, so does the idle backing file it kept. */
void forget_node(struct fastmount *fm, struct inode *node, uint64_t nlookup);

/* The reply entry of `node` with the attributes `st`, as this read-only mount presents them. */
void fill_entry(struct fastmount *fm, struct fuse_entry_param *e, struct inode *node, const struct stat *st,
		double attr_timeout);

#endif
