/* Kernel FUSE passthrough (Linux >= 6.9) with libfuse 3.14, which predates it.
 *
 * With passthrough, an opened file's reads go from the kernel straight to the source file: no READ
 * request, no copy through this process, the source's own page cache. libfuse 3.14 cannot negotiate it,
 * so a small transport shim (libfuse's custom-io hook) patches two replies on their way to the kernel:
 * INIT (offer FUSE_PASSTHROUGH) and OPEN (FOPEN_PASSTHROUGH + the backing id). Each handler that wants
 * a patch sets it for its own thread just before replying, because libfuse writes the reply from the
 * handler's thread. When the kernel declines, nothing changes: reads are served by the READ handler. */
#ifndef BENCH_FASTMOUNT_PASSTHROUGH_H
#define BENCH_FASTMOUNT_PASSTHROUGH_H

#include "fastmount.h"

#include <sys/uio.h>

/* The shim: libfuse's custom-io writev (serve.c installs it on the mounted session). */
ssize_t passthrough_writev(int fd, struct iovec *iov, int count, void *userdata);

/* Called from the init handler: the INIT reply this thread sends next offers passthrough. */
void passthrough_offer_in_init_reply(void);

/* Register `fd` as a backing file; > 0 backing id, or -errno (EOPNOTSUPP/EPERM: kernel declined). */
int passthrough_backing_open(struct fuse_session *se, int fd);
void passthrough_backing_close(struct fuse_session *se, int backing_id);

/* The OPEN reply this thread sends next asks the kernel to pass reads through to `backing_id`. */
void passthrough_mark_open_reply(int backing_id);

#endif
