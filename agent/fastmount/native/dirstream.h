/* A source directory's entries as the native engine lists them: read, and stat'ed, ahead of the kernel.
 *
 * Why: an `ls -l`-style listing through FUSE is a chain of READDIRPLUS batches. For each one the engine
 * stats every entry of the batch (a few microseconds each), then the kernel builds an inode and a dentry
 * per entry in the lister's context before it asks for the next batch. Done one after the other, the two
 * add up. After answering a batch the engine reads and stats the next one into this stream, while the
 * kernel is still busy with the last, so the next request finds its entries ready.
 *
 * The stream keeps the position the kernel has been given (the cookie of the last entry sent), a queue of
 * entries read past it, and the directory stream behind the queue. A request at another position
 * (a seek) drops the queue. Entries read ahead carry the attributes they had when read and when that was
 * (`read_at`): the kernel is told to keep them only for what is left of attr_timeout, because they decide
 * its permission checks.
 *
 * Not thread-safe: the caller serialises access (one lock per open directory). */
#ifndef BENCH_FASTMOUNT_DIRSTREAM_H
#define BENCH_FASTMOUNT_DIRSTREAM_H

#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#define DIRSTREAM_MAX_AHEAD 1024  /* entries queued at most (~430 KiB while a listing runs) */

struct dir_entry {
	off_t next;          /* the cookie that resumes the listing after this entry */
	ino_t ino;
	unsigned char type;  /* DT_* */
	int is_dot;          /* "." or "..": listed without attributes (the kernel knows its own directories) */
	int has_attrs;
	struct stat attrs;
	struct timespec read_at;  /* CLOCK_MONOTONIC, when attrs were read */
	char name[NAME_MAX + 1];
};

struct dirstream;

/* Takes `fd` (an open directory) over; NULL with errno when it cannot. */
struct dirstream *dirstream_open(int fd);
void dirstream_close(struct dirstream *s);

/* The cookie of the last entry sent (0 before the first): where the next request continues. */
off_t dirstream_position(const struct dirstream *s);

/* Continue the listing at `cookie` (0: the start): a no-op when that is where the last entry sent ended. */
void dirstream_seek(struct dirstream *s, off_t cookie);

/* The next entry, with its attributes when `want_attrs` (entries removed from the source since the stream
 * read their names are skipped). NULL at the end (errno 0) or on an error (errno); a later call retries. */
const struct dir_entry *dirstream_peek(struct dirstream *s, int want_attrs);

/* The peeked entry was sent: the position moves past it. */
void dirstream_consume(struct dirstream *s);

/* The i-th entry queued past the position (0: the one the next peek returns), NULL past the queue's end.
 * Entries whose attributes could not be read ahead have neither has_attrs nor is_dot. */
const struct dir_entry *dirstream_queued(const struct dirstream *s, size_t i);

/* Read up to `count` entries past the position into the queue (with attributes when `want_attrs`),
 * counting the ones already there. Stops early at the end of the directory or on an error, which the
 * next peek reports. */
void dirstream_read_ahead(struct dirstream *s, size_t count, int want_attrs);

#endif
