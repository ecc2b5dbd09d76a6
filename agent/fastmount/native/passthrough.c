#define _GNU_SOURCE
#include "passthrough.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

/* From the kernel's uapi <linux/fuse.h> (7.40); Debian 12's headers are older. */
#define INIT_EXT (1u << 30)             /* flags: flags2 is valid */
#define PASSTHROUGH_FLAGS2 (1u << 5)    /* FUSE_PASSTHROUGH = 1ULL << 37 */
#define FOPEN_PASSTHROUGH_FLAG (1u << 7)
#define MAX_STACK_DEPTH 2               /* the source may itself be on a stacked fs (overlayfs) */

struct backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define DEV_IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)
#define DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* fuse_init_out / fuse_open_out field offsets (the reply body is iov[1]) */
#define INIT_OUT_FLAGS 12
#define INIT_OUT_FLAGS2 32
#define INIT_OUT_MAX_STACK_DEPTH 36
#define INIT_OUT_MIN_SIZE 40
#define OPEN_OUT_FLAGS 8
#define OPEN_OUT_BACKING_ID 12
#define OPEN_OUT_SIZE 16

static __thread int patch_init;
static __thread int32_t patch_open_backing_id;

static void or_u32(char *base, size_t offset, uint32_t bits)
{
	uint32_t value;
	memcpy(&value, base + offset, sizeof(value));
	value |= bits;
	memcpy(base + offset, &value, sizeof(value));
}

static void set_u32(char *base, size_t offset, uint32_t value)
{
	memcpy(base + offset, &value, sizeof(value));
}

ssize_t passthrough_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (patch_init && count >= 2 && iov[1].iov_len >= INIT_OUT_MIN_SIZE) {
		patch_init = 0;
		or_u32(iov[1].iov_base, INIT_OUT_FLAGS, INIT_EXT);
		or_u32(iov[1].iov_base, INIT_OUT_FLAGS2, PASSTHROUGH_FLAGS2);
		set_u32(iov[1].iov_base, INIT_OUT_MAX_STACK_DEPTH, MAX_STACK_DEPTH);
	} else if (patch_open_backing_id > 0 && count >= 2 && iov[1].iov_len == OPEN_OUT_SIZE) {
		or_u32(iov[1].iov_base, OPEN_OUT_FLAGS, FOPEN_PASSTHROUGH_FLAG);
		set_u32(iov[1].iov_base, OPEN_OUT_BACKING_ID, (uint32_t)patch_open_backing_id);
		patch_open_backing_id = 0;
	}
	return writev(fd, iov, count);
}

void passthrough_offer_in_init_reply(void)
{
	patch_init = 1;
}

int passthrough_backing_open(struct fuse_session *se, int fd)
{
	struct backing_map map = {.fd = fd};
	int id = ioctl(fuse_session_fd(se), DEV_IOC_BACKING_OPEN, &map);
	return id > 0 ? id : -errno;
}

void passthrough_backing_close(struct fuse_session *se, int backing_id)
{
	uint32_t id = (uint32_t)backing_id;
	ioctl(fuse_session_fd(se), DEV_IOC_BACKING_CLOSE, &id);
}

void passthrough_mark_open_reply(int backing_id)
{
	patch_open_backing_id = backing_id;
}
