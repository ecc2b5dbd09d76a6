#define _GNU_SOURCE
#include "dirstream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dirstream {
	DIR *dp;
	off_t position;            /* cookie of the last entry sent (0 before the first) */
	struct dir_entry *queue;   /* queue[head .. len): read from dp, not sent yet */
	size_t head, len, cap;
	int end_errno;             /* dp reached its end (0) or failed (errno); -1: neither yet */
};

struct dirstream *dirstream_open(int fd)
{
	struct dirstream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->dp = fdopendir(fd);
	if (s->dp == NULL) {
		int err = errno;
		free(s);
		errno = err;
		return NULL;
	}
	s->end_errno = -1;
	return s;
}

void dirstream_close(struct dirstream *s)
{
	closedir(s->dp);
	free(s->queue);
	free(s);
}

off_t dirstream_position(const struct dirstream *s)
{
	return s->position;
}

void dirstream_seek(struct dirstream *s, off_t cookie)
{
	if (cookie == s->position)
		return;
	if (cookie == 0)
		rewinddir(s->dp);
	else
		seekdir(s->dp, cookie);
	s->position = cookie;
	s->head = s->len = 0;
	s->end_errno = -1;
}

static int is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* Attributes of `e` from the source; -1 with errno when it cannot. "." and ".." get none: the kernel
 * knows its own directories, a node for them would only be a second inode of the same directory. */
static int fetch_attrs(struct dirstream *s, struct dir_entry *e)
{
	if (e->has_attrs || e->is_dot)
		return 0;
	if (fstatat(dirfd(s->dp), e->name, &e->attrs, AT_SYMLINK_NOFOLLOW) != 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &e->read_at);
	e->has_attrs = 1;
	return 0;
}

/* Room for one more entry at the queue's tail, NULL when the queue is full (or out of memory). */
static struct dir_entry *queue_slot(struct dirstream *s)
{
	if (s->head == s->len)
		s->head = s->len = 0;
	if (s->len == s->cap && s->head > 0) {
		memmove(s->queue, s->queue + s->head, (s->len - s->head) * sizeof(*s->queue));
		s->len -= s->head;
		s->head = 0;
	}
	if (s->len == s->cap) {
		size_t cap = s->cap == 0 ? 64 : s->cap * 2;
		if (cap > DIRSTREAM_MAX_AHEAD)
			cap = DIRSTREAM_MAX_AHEAD;
		if (cap == s->cap)
			return NULL;
		struct dir_entry *grown = realloc(s->queue, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		s->queue = grown;
		s->cap = cap;
	}
	return &s->queue[s->len];
}

/* Append the stream's next entry to the queue: 1, or 0 at its end or on an error (end_errno says). */
static int read_one(struct dirstream *s, int want_attrs)
{
	if (s->end_errno >= 0)
		return 0;
	struct dir_entry *e = queue_slot(s);
	if (e == NULL)
		return 0;
	for (;;) {
		errno = 0;
		struct dirent *ent = readdir(s->dp);
		if (ent == NULL) {
			s->end_errno = errno;
			return 0;
		}
		e->next = ent->d_off;
		e->ino = ent->d_ino;
		e->type = ent->d_type;
		e->has_attrs = 0;
		memcpy(e->name, ent->d_name, strnlen(ent->d_name, NAME_MAX) + 1);
		e->name[NAME_MAX] = '\0';
		e->is_dot = is_dot_or_dotdot(e->name);
		/* A failure here is left for the peek that needs the attributes to retry and report. */
		if (want_attrs && fetch_attrs(s, e) != 0 && errno == ENOENT)
			continue;  /* removed from the source since its name was read */
		s->len++;
		return 1;
	}
}

const struct dir_entry *dirstream_peek(struct dirstream *s, int want_attrs)
{
	for (;;) {
		if (s->head == s->len && !read_one(s, want_attrs)) {
			if (s->end_errno < 0) {  /* the queue could not take an entry */
				errno = ENOMEM;
				return NULL;
			}
			errno = s->end_errno;
			if (errno != 0)
				s->end_errno = -1;  /* reported once; the next call asks the stream again */
			return NULL;
		}
		struct dir_entry *e = &s->queue[s->head];
		if (!want_attrs || fetch_attrs(s, e) == 0)
			return e;
		if (errno != ENOENT)
			return NULL;
		s->head++;  /* removed from the source since it was read ahead */
	}
}

void dirstream_consume(struct dirstream *s)
{
	s->position = s->queue[s->head].next;
	s->head++;
}

const struct dir_entry *dirstream_queued(const struct dirstream *s, size_t i)
{
	return i < s->len - s->head ? &s->queue[s->head + i] : NULL;
}

void dirstream_read_ahead(struct dirstream *s, size_t count, int want_attrs)
{
	if (count > DIRSTREAM_MAX_AHEAD)
		count = DIRSTREAM_MAX_AHEAD;
	while (s->len - s->head < count && read_one(s, want_attrs))
		;
}
