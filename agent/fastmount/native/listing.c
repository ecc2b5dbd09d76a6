/* Directory listings of the native fast mount (listing.h). */
#define _GNU_SOURCE
#include "listing.h"

#include "dirstream.h"
#include "habits.h"
#include "handlers.h"
#include "receive.h"

#include <dirent.h>
#include <errno.h>
#include <linux/fuse.h>  /* FUSE_NAME_OFFSET_DIRENTPLUS: the smallest entry of a READDIRPLUS reply */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A prepared reply's attributes are handed out with PREPARED_MAX_AGE_S less validity than their age
 * leaves (attrs_valid_for), so one sent up to that much later still ages out in time; older ones are
 * rebuilt from the entries (then with what their own age leaves). */
#define PREPARED_MAX_AGE_S 0.1

/* A READDIRPLUS reply built before the kernel asks for it (see readdir_common). Each entry in it with
 * attributes was counted as a lookup when it was built: the kernel's when it is sent, undone when not. */
struct prepared_reply {
	char *buf;              /* NULL: none */
	struct timespec built;  /* CLOCK_MONOTONIC; one kept longer than PREPARED_MAX_AGE_S is rebuilt */
	size_t len;             /* bytes of entries in buf */
	off_t offset;           /* the listing position it continues from */
	int plus, attrs;        /* READDIRPLUS or READDIR; with attributes or names only */
	size_t count;           /* entries in it */
	struct inode **nodes;   /* the count entries' nodes (NULL for "." and "..") */
};

struct dirhandle {
	pthread_mutex_t lock;
	struct dirstream *stream;
	struct listing_pass pass;  /* the listing from offset 0 under way, when adaptive_attrs */
	int pass_started;
	struct prepared_reply next;
};

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fastmount *fm = fs_of(req);
	tune_readahead(fm);
	int fd = open_node(fm, node_of(fm, ino), O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		reply_err(fm, req, -fd);
		return;
	}
	struct dirhandle *d = calloc(1, sizeof(*d));
	if (d == NULL || (d->stream = dirstream_open(fd)) == NULL) {
		int err = d == NULL ? ENOMEM : errno;
		free(d);
		close(fd);
		reply_err(fm, req, err);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	fi->fh = (uint64_t)(uintptr_t)d;
	fi->cache_readdir = 1;  /* the kernel keeps the listing in its page cache ... */
	fi->keep_cache = 1;     /* ... across opens, until the directory's mtime changes */
	if (fuse_reply_open(req, fi) != 0) {
		dirstream_close(d->stream);
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
}

/* Add `e` to the reply at `p` (`left` bytes): the bytes used, more than `left` when it did not fit.
 * With attributes the kernel instantiates the entry's inode, which counts as a lookup: `*node` is the
 * node looked up (NULL for none). */
static size_t add_entry(struct fastmount *fm, struct inode *dir, char *p, size_t left, const struct dir_entry *e,
			int plus, double reserve_s, struct inode **node, int *err)
{
	*node = NULL;
	if (!plus) {
		struct stat st = {.st_ino = e->ino, .st_mode = (mode_t)DTTOIF(e->type)};
		return fuse_add_direntry(NULL, p, left, e->name, &st, e->next);  /* libfuse ignores the request */
	}
	struct fuse_entry_param entry = {0};
	if (!e->has_attrs) {
		/* node id 0: a name without attributes, the kernel instantiates nothing */
		entry.attr.st_ino = e->ino;
		entry.attr.st_mode = (mode_t)DTTOIF(e->type);
	} else {
		*node = inodes_remember(&fm->inodes, dir, e->name, &e->attrs);
		if (*node == NULL) {
			*err = errno;
			return left + 1;
		}
		double valid = attrs_valid_for(fm, &e->read_at) - reserve_s;
		fill_entry(fm, &entry, *node, &e->attrs, valid > 0 ? valid : 0);
	}
	size_t used = fuse_add_direntry_plus(NULL, p, left, e->name, &entry, e->next);
	if (used > left && *node != NULL) {
		forget_node(fm, *node, 1);  /* did not fit: the kernel never saw this lookup */
		*node = NULL;
	}
	return used;
}

/* A reply the kernel never took: each node it named (NULL: none) loses the lookup the reply counted. */
static void undo_lookups(struct fastmount *fm, struct inode **nodes, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (nodes[i] != NULL)
			forget_node(fm, nodes[i], 1);
}

/* Drop the prepared reply, undoing its lookups (a seek, a different request size, a closed directory). */
static void discard_prepared(struct fastmount *fm, struct prepared_reply *r)
{
	undo_lookups(fm, r->nodes, r->count);
	free(r->buf);
	free(r->nodes);
	*r = (struct prepared_reply){0};
}

/* Build the reply to the next request of `size` bytes from the entries read ahead. It stops before an
 * entry whose attributes could not be read: the request itself retries and reports. */
static void prepare_reply(struct fastmount *fm, struct dirhandle *d, struct inode *dir, size_t size, int plus,
			  int attrs)
{
	struct prepared_reply *r = &d->next;
	size_t queued = 0;
	while (dirstream_queued(d->stream, queued) != NULL)
		queued++;
	if (queued == 0 || (r->buf = malloc(size)) == NULL || (r->nodes = calloc(queued, sizeof(*r->nodes))) == NULL) {
		free(r->buf);
		r->buf = NULL;
		return;
	}
	r->offset = dirstream_position(d->stream);
	clock_gettime(CLOCK_MONOTONIC, &r->built);
	r->plus = plus;
	r->attrs = attrs;
	int err = 0;
	for (const struct dir_entry *e; (e = dirstream_queued(d->stream, r->count)) != NULL; r->count++) {
		if (attrs && !e->has_attrs && !e->is_dot)
			break;
		size_t used = add_entry(fm, dir, r->buf + r->len, size - r->len, e, plus, PREPARED_MAX_AGE_S,
					&r->nodes[r->count], &err);
		if (used > size - r->len)
			break;
		r->len += used;
	}
	if (r->count == 0)
		discard_prepared(fm, r);
}

/* Send the prepared reply when it answers this request: 1 when it did. */
static int send_prepared(struct fastmount *fm, fuse_req_t req, struct dirhandle *d, size_t size, off_t offset,
			 int plus, int attrs)
{
	struct prepared_reply *r = &d->next;
	if (r->buf == NULL)
		return 0;
	if (offset != r->offset || size < r->len || plus != r->plus || attrs != r->attrs ||
	    attrs_valid_for(fm, &r->built) < fm->opts.attr_timeout - PREPARED_MAX_AGE_S) {
		discard_prepared(fm, r);
		return 0;
	}
	if (fuse_reply_buf(req, r->buf, r->len) != 0) {
		discard_prepared(fm, r);  /* interrupted: the kernel took none of it and will ask again */
		return 1;
	}
	for (size_t i = 0; i < r->count; i++)
		dirstream_consume(d->stream);
	free(r->buf);
	free(r->nodes);
	*r = (struct prepared_reply){0};
	return 1;
}

/* A listing batch. The kernel takes a batch in, in the lister (with attributes, `ls -l`: an inode and a
 * dentry for every entry), before it asks for the next one. So once a batch is answered, the next one is
 * read (and stat'ed) and built into a reply here meanwhile, on another CPU; the request for it then only
 * has to send it. */
static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi,
			   int plus)
{
	struct fastmount *fm = fs_of(req);
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;
	struct inode *dir = node_of(fm, ino);
	pthread_mutex_lock(&d->lock);
	int attrs = plus;
	if (plus && fm->opts.adaptive_attrs) {
		if (offset == 0) {
			habits_begin_pass(&d->pass, dir->dev, dir->ino);
			d->pass_started = 1;
		}
		attrs = !d->pass_started || habits_want_attrs(&d->pass);
	}
	size_t sent = d->next.count;
	int err = 0, at_end = 0;
	if (!send_prepared(fm, req, d, size, offset, plus, attrs)) {
		discard_prepared(fm, &d->next);
		sent = 0;
		char *buf = malloc(size);
		/* the nodes this reply looks up, to undo should the kernel not take it */
		struct inode **nodes = plus ? calloc(size / FUSE_NAME_OFFSET_DIRENTPLUS + 1, sizeof(*nodes)) : NULL;
		if (buf == NULL || (plus && nodes == NULL)) {
			free(buf);
			pthread_mutex_unlock(&d->lock);
			reply_err(fm, req, ENOMEM);
			return;
		}
		size_t left = size;
		dirstream_seek(d->stream, offset);
		for (;;) {
			const struct dir_entry *e = dirstream_peek(d->stream, attrs);
			if (e == NULL) {
				err = errno;
				at_end = err == 0;
				if (at_end && d->pass_started) {
					habits_end_pass(&d->pass);
					d->pass_started = 0;
				}
				break;
			}
			struct inode *node;
			size_t used = add_entry(fm, dir, buf + size - left, left, e, plus, 0, &node, &err);
			if (used > left)
				break;
			if (plus)
				nodes[sent] = node;
			dirstream_consume(d->stream);
			left -= used;
			sent++;
		}
		/* An error after some entries were added still returns those; the next call reports it. */
		if (err != 0 && left == size) {
			reply_err(fm, req, err);
		} else if (fuse_reply_buf(req, buf, size - left) != 0 && plus) {
			undo_lookups(fm, nodes, sent);  /* interrupted */
		}
		free(buf);
		free(nodes);
	}
	if (fm->opts.dir_read_ahead && !at_end && err == 0 && sent > 0) {
		receive_background_begin();  /* stats of a cold disk can take a while: other requests go on */
		dirstream_read_ahead(d->stream, sent, attrs);
		prepare_reply(fm, d, dir, size, plus, attrs);
		receive_background_done();
	}
	pthread_mutex_unlock(&d->lock);
}

void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, offset, fi, 0);
}

void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, offset, fi, 1);
}

void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;
	/* A thread may still be reading the directory ahead (after its reply, so the kernel let the file
	 * close): wait for it. No other request comes for this handle after RELEASEDIR. */
	pthread_mutex_lock(&d->lock);
	discard_prepared(fs_of(req), &d->next);
	pthread_mutex_unlock(&d->lock);
	dirstream_close(d->stream);
	pthread_mutex_destroy(&d->lock);
	free(d);
	fuse_reply_err(req, 0);
}
