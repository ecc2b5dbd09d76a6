/* The native fast mount's inode table: the kernel's node ids are pointers to these records.
 *
 * Records are keyed by the source's (st_dev, st_ino), so hard links and repeated lookups share one node,
 * and carry the path relative to the source root that every later request resolves (beneath the root,
 * never through a symlink). A record lives while the kernel holds lookups on it (`forget` ends it). */
#ifndef BENCH_FASTMOUNT_INODES_H
#define BENCH_FASTMOUNT_INODES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

struct inode {
	uint64_t dev;
	uint64_t ino;
	char *path;          /* relative to the source root, "." for the root; fixed at creation */
	uint64_t nlookup;    /* guarded by the table lock */
	int backing_id;      /* kernel passthrough backing file, kept while the kernel knows the inode (bounded:
			      * fastmount.idle_backings); guarded by fastmount.backing_lock */
	unsigned opens;      /* passthrough opens not yet released; same lock */
	struct inode *next;  /* hash chain */
};

struct inode_table {
	pthread_mutex_t lock;
	struct inode **buckets;
	size_t nbuckets;
	atomic_size_t count;   /* records besides the root: changed under lock, read without (the stats thread) */
	struct inode root;
};

int inodes_init(struct inode_table *table, const struct stat *root);
void inodes_destroy(struct inode_table *table);

/* Write the source-relative path of `name` in the directory `parent` into `buf` (`size` bytes).
 * Returns its length, or -1 with errno ENAMETOOLONG when it does not fit. */
int inodes_child_path(const struct inode *parent, const char *name, char *buf, size_t size);

/* Record one kernel lookup of the object `st` found at `parent`/`name` and return its node, creating it on
 * first sight. NULL (errno ENOMEM or ENAMETOOLONG) when it cannot be recorded. */
struct inode *inodes_remember(struct inode_table *table, const struct inode *parent, const char *name,
			      const struct stat *st);

/* Drop `nlookup` of the kernel's lookups; the record is freed when none is left (never the root's).
 * Returns the backing id the freed record held (the caller closes it), else 0. */
int inodes_forget(struct inode_table *table, struct inode *node, uint64_t nlookup);

/* Records besides the root. Safe from any thread at any time, also before init and after destroy. */
size_t inodes_count(const struct inode_table *table);

#endif
