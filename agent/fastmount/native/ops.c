/* Request handlers of the native fast mount (directory listings are in listing.c). Every path is
 * resolved beneath the source root without following symlinks (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so a symlink swapped into the source cannot lead a request outside it. Every
 * write-type request gets EROFS. */
#define _GNU_SOURCE
#include "fastmount.h"
#include "habits.h"
#include "handlers.h"
#include "listing.h"
#include "passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WRITE_BITS (S_IWUSR | S_IWGRP | S_IWOTH)
#define PREFERRED_IO_SIZE (1024 * 1024) /* st_blksize: tells cp, cat, dd to read in large blocks */
#define MAX_IDLE_BACKINGS 16384         /* ~0.5 KiB of kernel memory each */

struct fastmount *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

struct inode *node_of(struct fastmount *fm, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &fm->inodes.root : (struct inode *)(uintptr_t)ino;
}

void reply_err(struct fastmount *fm, fuse_req_t req, int err)
{
	if (err != ENOENT)
		atomic_fetch_add_explicit(&fm->errors, 1, memory_order_relaxed);
	fuse_reply_err(req, err);
}

static atomic_int no_openat2;

/* Without openat2 (a seccomp filter that predates it answers ENOSYS or EPERM) every component but the
 * last may follow a symlink; the kernel's own checks on the mount still apply. Logged once. */
int open_beneath(struct fastmount *fm, const char *path, int flags)
{
	if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		long fd = syscall(SYS_openat2, fm->root_fd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		if (!atomic_exchange(&no_openat2, 1))
			fprintf(stderr, "{\"event\": \"openat2-unavailable\", \"reason\": \"%s\"}\n", strerror(errno));
	}
	int fd = openat(fm->root_fd, path, flags | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

static int stat_path(struct fastmount *fm, const char *path, struct stat *st)
{
	int fd = open_beneath(fm, path, O_PATH);
	if (fd < 0)
		return fd;
	int res = fstat(fd, st) == 0 ? 0 : -errno;
	close(fd);
	return res;
}

/* The kernel checked the caller's permissions against the attributes of `node`. A source object found at
 * the node's path now but with another identity (a file renamed over it, a FIFO swapped in) is not what
 * was checked: ESTALE, and the kernel looks the name up afresh (and checks again) before it retries. */
static int same_object(const struct inode *node, const struct stat *st)
{
	return (uint64_t)st->st_dev == node->dev && (uint64_t)st->st_ino == node->ino;
}

int open_node(struct fastmount *fm, struct inode *node, int flags)
{
	/* O_NONBLOCK: opening a FIFO or a device put in the source must not block a request thread. */
	int fd = open_beneath(fm, node->path, flags | O_NONBLOCK);
	if (fd < 0)
		return fd;
	struct stat st;
	int err = fstat(fd, &st) != 0 ? errno : !same_object(node, &st) ? ESTALE : 0;
	if (err == 0 && !(flags & O_DIRECTORY) && !S_ISREG(st.st_mode))
		err = EACCES;  /* only regular files are served; the kernel opens special files itself */
	if (err == 0 && !(flags & (O_DIRECTORY | O_PATH)) && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
		err = errno;
	if (err != 0) {
		close(fd);
		return -err;
	}
	return fd;
}

/* Attributes of `node` as the source has them now; ESTALE when its path names another object now. */
static int stat_node(struct fastmount *fm, struct inode *node, struct stat *st)
{
	if (node == &fm->inodes.root)
		return fstat(fm->root_fd, st) == 0 ? 0 : -errno;
	int res = stat_path(fm, node->path, st);
	return res < 0 ? res : same_object(node, st) ? 0 : -ESTALE;
}

/* Attributes of `name` in the directory `dir`, looked up in that very directory: its path is opened and
 * checked to still be `dir` (whose permissions the kernel checked) before the name is looked up in it. */
static int stat_child(struct fastmount *fm, struct inode *dir, const char *name, struct stat *st)
{
	if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
		char path[PATH_MAX];
		if (inodes_child_path(dir, name, path, sizeof(path)) < 0)
			return -ENAMETOOLONG;
		return stat_path(fm, path, st);  /* beneath the source: ".." never climbs out of it */
	}
	int dir_fd = fm->root_fd;
	if (dir != &fm->inodes.root) {
		dir_fd = open_beneath(fm, dir->path, O_PATH | O_DIRECTORY);
		if (dir_fd < 0)
			return dir_fd;
		struct stat dir_st;
		int err = fstat(dir_fd, &dir_st) != 0 ? errno : !same_object(dir, &dir_st) ? ESTALE : 0;
		if (err != 0) {
			close(dir_fd);
			return -err;
		}
	}
	int res = fstatat(dir_fd, name, st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
	if (dir_fd != fm->root_fd)
		close(dir_fd);
	return res;
}

double attrs_valid_for(struct fastmount *fm, const struct timespec *read_at)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double age = (double)(now.tv_sec - read_at->tv_sec) + (double)(now.tv_nsec - read_at->tv_nsec) / 1e9;
	double left = fm->opts.attr_timeout - age;
	return left > 0 ? left : 0;
}

/* FUSE sets the mount's read-ahead from INIT and only lets it be raised afterwards, through sysfs. Any
 * request other than INIT arrives after the kernel applied the INIT reply, so the first one tunes it. */
static void unescape_mountinfo(char *field)
{
	char *out = field;
	for (char *in = field; *in; in++) {
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '7' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' &&
		    in[3] <= '7') {
			*out++ = (char)(((in[1] - '0') << 6) | ((in[2] - '0') << 3) | (in[3] - '0'));
			in += 3;
		} else {
			*out++ = *in;
		}
	}
	*out = '\0';
}

void tune_readahead(struct fastmount *fm)
{
	int expected = 0;
	if (fm->opts.readahead_kib == 0 ||
	    atomic_load_explicit(&fm->readahead_tuned, memory_order_relaxed) ||
	    !atomic_compare_exchange_strong(&fm->readahead_tuned, &expected, 1))
		return;
	FILE *info = fopen("/proc/self/mountinfo", "re");
	if (info == NULL)
		return;
	char line[8192], point[PATH_MAX * 4];
	unsigned major = 0, minor = 0, found = 0;
	while (fgets(line, sizeof(line), info) != NULL) {
		unsigned maj, min;
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &maj, &min, point) != 3)
			continue;
		unescape_mountinfo(point);
		if (strcmp(point, fm->opts.mount_path) == 0) {
			major = maj;
			minor = min;
			found = 1;  /* the last match is the top of the stack */
		}
	}
	fclose(info);
	if (!found) {
		fprintf(stderr, "{\"event\": \"readahead-not-tuned\", \"reason\": \"mount not in mountinfo\"}\n");
		return;
	}
	char knob[64];
	snprintf(knob, sizeof(knob), "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
	FILE *f = fopen(knob, "we");
	if (f == NULL || fprintf(f, "%u\n", fm->opts.readahead_kib) < 0 || fclose(f) != 0) {
		fprintf(stderr, "{\"event\": \"readahead-not-tuned\", \"knob\": \"%s\", \"reason\": \"%s\"}\n", knob,
			strerror(errno));
		if (f != NULL)
			fclose(f);
	}
}

void forget_node(struct fastmount *fm, struct inode *node, uint64_t nlookup)
{
	int backing_id = inodes_forget(&fm->inodes, node, nlookup);
	if (backing_id > 0) {
		passthrough_backing_close(fm->se, backing_id);
		pthread_mutex_lock(&fm->backing_lock);
		fm->idle_backings--;
		pthread_mutex_unlock(&fm->backing_lock);
	}
}

void fill_entry(struct fastmount *fm, struct fuse_entry_param *e, struct inode *node, const struct stat *st,
		double attr_timeout)
{
	memset(e, 0, sizeof(*e));
	e->ino = (fuse_ino_t)(uintptr_t)node;
	e->attr = *st;
	e->attr.st_mode &= ~WRITE_BITS;  /* permission checks and tools agree with the read-only mount */
	e->attr.st_blksize = PREFERRED_IO_SIZE;
	e->attr_timeout = attr_timeout;
	e->entry_timeout = fm->opts.entry_timeout;
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fastmount *fm = userdata;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (atomic_load(&fm->passthrough))
		passthrough_offer_in_init_reply();
	/* zero-message open and passthrough exclude each other: a backing file is handed over in OPEN */
	fm->no_open = fm->opts.zero_message_open && !atomic_load(&fm->passthrough) &&
		      (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);
	if (fm->opts.readdirplus_always)
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/* Sequential read-ahead is sent as background requests: allow enough of them in flight. */
	if (fm->opts.max_request_kib > 0)
		conn->max_write = fm->opts.max_request_kib * 1024;  /* also bounds read requests (max_pages) */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

/* metadata */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fastmount *fm = fs_of(req);
	tune_readahead(fm);
	struct inode *dir = node_of(fm, parent);
	habits_note_lookup(dir->dev, dir->ino);
	struct stat st;
	int res = stat_child(fm, dir, name, &st);
	if (res == -ENOENT) {
		/* node id 0 lets the kernel keep the miss for negative_timeout without asking again */
		struct fuse_entry_param e = {.ino = 0, .entry_timeout = fm->opts.negative_timeout};
		fuse_reply_entry(req, &e);
		return;
	}
	if (res < 0) {
		reply_err(fm, req, -res);
		return;
	}
	struct inode *node = inodes_remember(&fm->inodes, dir, name, &st);
	if (node == NULL) {
		reply_err(fm, req, errno);
		return;
	}
	struct fuse_entry_param e;
	fill_entry(fm, &e, node, &st, fm->opts.attr_timeout);
	if (fuse_reply_entry(req, &e) != 0)
		forget_node(fm, node, 1);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fastmount *fm = fs_of(req);
	forget_node(fm, node_of(fm, ino), nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fastmount *fm = fs_of(req);
	for (size_t i = 0; i < count; i++)
		forget_node(fm, node_of(fm, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct fastmount *fm = fs_of(req);
	tune_readahead(fm);
	struct stat st;
	int res = stat_node(fm, node_of(fm, ino), &st);
	if (res < 0) {
		reply_err(fm, req, -res);
		return;
	}
	st.st_mode &= ~WRITE_BITS;
	st.st_blksize = PREFERRED_IO_SIZE;
	fuse_reply_attr(req, &st, fm->opts.attr_timeout);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fastmount *fm = fs_of(req);
	int fd = open_beneath(fm, node_of(fm, ino)->path, O_PATH);
	if (fd < 0) {
		reply_err(fm, req, -fd);
		return;
	}
	char target[PATH_MAX + 1];
	ssize_t len = readlinkat(fd, "", target, PATH_MAX);
	int err = errno;
	close(fd);
	if (len < 0) {
		reply_err(fm, req, err);
		return;
	}
	target[len] = '\0';
	fuse_reply_readlink(req, target);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct fastmount *fm = fs_of(req);
	tune_readahead(fm);
	struct statvfs sv;
	if (fstatvfs(fm->root_fd, &sv) != 0) {
		reply_err(fm, req, errno);
		return;
	}
	fuse_reply_statfs(req, &sv);
}

/* files */

static int open_passthrough(struct fastmount *fm, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

static int wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT | O_APPEND));
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fastmount *fm = fs_of(req);
	if (wants_write(fi->flags)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (fm->no_open) {
		/* ENOSYS tells the kernel to open files itself from now on (with its page cache kept), so an
		 * open costs no round trip and reads come with the node id alone. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (atomic_load_explicit(&fm->passthrough, memory_order_relaxed) && open_passthrough(fm, req, ino, fi))
		return;
	int fd = open_node(fm, node_of(fm, ino), O_RDONLY);
	if (fd < 0) {
		reply_err(fm, req, -fd);
		return;
	}
	fi->fh = (uint64_t)fd + 1;  /* 0 means "no handle": passthrough and zero-message-open files */
	fi->keep_cache = 1;         /* the source does not change under a read-only mount */
	atomic_fetch_add_explicit(&fm->opens, 1, memory_order_relaxed);
	if (fuse_reply_open(req, fi) != 0)
		close(fd);
}

/* Drop one passthrough open of `node`. The backing file stays for the next open (which then needs no
 * source open and no ioctl, and RELEASE none either) until the kernel forgets the inode, unless
 * MAX_IDLE_BACKINGS are already kept: each is an open file of the source in the kernel. */
static void release_backing(struct fastmount *fm, struct inode *node)
{
	pthread_mutex_lock(&fm->backing_lock);
	if (node->opens > 0 && --node->opens == 0 && node->backing_id > 0) {
		if (fm->idle_backings < MAX_IDLE_BACKINGS) {
			fm->idle_backings++;
		} else {
			passthrough_backing_close(fm->se, node->backing_id);
			node->backing_id = 0;
		}
	}
	pthread_mutex_unlock(&fm->backing_lock);
}

/* Open `ino` with its reads passed through to the source file. One backing id per inode is shared by
 * all its opens and kept until the last release: closing it right after the reply would race the
 * opener, which looks the id up only when it wakes. Returns 0 when the kernel declined passthrough
 * (the caller opens the plain way), 1 when the request was answered. */
static int open_passthrough(struct fastmount *fm, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct inode *node = node_of(fm, ino);
	pthread_mutex_lock(&fm->backing_lock);
	int id = node->backing_id;
	if (id > 0) {
		if (node->opens++ == 0)
			fm->idle_backings--;  /* an idle backing file is in use again */
	}
	pthread_mutex_unlock(&fm->backing_lock);
	if (id == 0) {
		/* Opened and registered with no lock held: a slow source (or a FIFO swapped in) holds up this
		 * request only. The backing file is the very inode the kernel checked (open_node). */
		int fd = open_node(fm, node, O_RDONLY);
		if (fd < 0) {
			reply_err(fm, req, -fd);
			return 1;
		}
		int fresh = passthrough_backing_open(fm->se, fd);
		close(fd);  /* the backing file keeps its own reference */
		if (fresh < 0) {
			atomic_store(&fm->passthrough, 0);
			fprintf(stderr, "{\"event\": \"passthrough-declined\", \"reason\": \"%s\"}\n", strerror(-fresh));
			return 0;
		}
		pthread_mutex_lock(&fm->backing_lock);
		if (node->backing_id == 0) {
			node->backing_id = fresh;
			fresh = 0;
		} else if (node->opens == 0) {
			fm->idle_backings--;  /* another open registered one meanwhile: use it, drop ours */
		}
		node->opens++;
		id = node->backing_id;
		pthread_mutex_unlock(&fm->backing_lock);
		if (fresh > 0)
			passthrough_backing_close(fm->se, fresh);
	}
	fi->fh = 0;
	atomic_fetch_add_explicit(&fm->opens, 1, memory_order_relaxed);
	passthrough_mark_open_reply(id);
	if (fuse_reply_open(req, fi) != 0) {
		passthrough_mark_open_reply(0);
		release_backing(fm, node);
	}
	return 1;
}

/* One read buffer per request thread, kept for the thread's lifetime: a fresh 1 MiB allocation per
 * request is a new mapping each time, and its page faults and unmapping cost more than the copy
 * (measured: first reads at half the speed). */
struct read_buffer {
	size_t size;
	char data[];
};

static pthread_key_t buffer_key;
static pthread_once_t buffer_key_once = PTHREAD_ONCE_INIT;

static void make_buffer_key(void)
{
	pthread_key_create(&buffer_key, free);
}

static char *read_buffer(size_t size)
{
	pthread_once(&buffer_key_once, make_buffer_key);
	struct read_buffer *buf = pthread_getspecific(buffer_key);
	if (buf == NULL || buf->size < size) {
		struct read_buffer *bigger = realloc(buf, sizeof(*buf) + size);
		if (bigger == NULL)
			return NULL;
		bigger->size = size;
		pthread_setspecific(buffer_key, bigger);
		buf = bigger;
	}
	return buf->data;
}

/* Reads of files opened without passthrough (an older kernel, or one that declined). */
static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fastmount *fm = fs_of(req);
	tune_readahead(fm);
	int fd, own = fi->fh == 0;
	if (own) {
		fd = open_node(fm, node_of(fm, ino), O_RDONLY);
		if (fd < 0) {
			reply_err(fm, req, -fd);
			return;
		}
		if (off == 0)
			atomic_fetch_add_explicit(&fm->opens, 1, memory_order_relaxed);
	} else {
		fd = (int)(fi->fh - 1);
	}
	char *buf = read_buffer(size);
	ssize_t got = buf == NULL ? -1 : pread(fd, buf, size, off);
	int err = buf == NULL ? ENOMEM : errno;
	if (own)
		close(fd);
	if (got < 0) {
		reply_err(fm, req, err);
		return;
	}
	if (fuse_reply_buf(req, buf, (size_t)got) == 0)
		atomic_fetch_add_explicit(&fm->bytes_read, (uint64_t)got, memory_order_relaxed);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (fi->fh != 0)
		close((int)(fi->fh - 1));
	else  /* zero-message opens send no RELEASE, so a handle-less one is a passthrough open */
		release_backing(fs_of(req), node_of(fs_of(req), ino));
	fuse_reply_err(req, 0);
}

/* every write-type request */

static void erofs(fuse_req_t req)
{
	fuse_reply_err(req, EROFS);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	erofs(req);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	erofs(req);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	erofs(req);
}

static void fs_remove(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	erofs(req);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	erofs(req);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	erofs(req);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	erofs(req);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	erofs(req);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	erofs(req);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	erofs(req);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	erofs(req);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	erofs(req);
}

static void fs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
			       fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len,
			       int flags)
{
	(void)ino_in, (void)off_in, (void)fi_in, (void)ino_out, (void)off_out, (void)fi_out, (void)len, (void)flags;
	erofs(req);
}

/* No flush handler: libfuse answers ENOSYS and the kernel stops sending FLUSH on every close. */
const struct fuse_lowlevel_ops fastmount_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.statfs = fs_statfs,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.setattr = fs_setattr,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_remove,
	.rmdir = fs_remove,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.write = fs_write,
	.create = fs_create,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
	.fallocate = fs_fallocate,
	.copy_file_range = fs_copy_file_range,
};
