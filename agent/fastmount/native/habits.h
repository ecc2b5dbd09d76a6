/* Whether a directory listing should carry attributes, learnt from how the directory's listings get used.
 *
 * A READDIRPLUS entry with attributes costs a stat of the source and a kernel inode; without them (node
 * id 0) it is just a name. `ls` and `os.listdir` need names only (attributes make them ~7x slower);
 * `ls -l` needs attributes for every entry, and so does reading every file of a directory (the kernel
 * would otherwise send one LOOKUP per file). The kernel cannot tell these apart, but the LOOKUPs it
 * sends for a directory's children can:
 *  - a pass starts with names only and switches to attributes as soon as children get looked up while
 *    it is running (`ls -l`, `find -ls`);
 *  - children looked up after a names-only pass ended (list first, then open each file) make the
 *    directory's next passes carry attributes from the start;
 *  - every PROBE_EVERY-th such pass starts with names again, so a directory whose use changed back to
 *    names-only is noticed.
 * The memory is a small table keyed by the directory's (st_dev, st_ino), independent of the kernel's
 * inode lifetime (a dropped cache must not make the engine forget what it learnt). */
#ifndef BENCH_FASTMOUNT_HABITS_H
#define BENCH_FASTMOUNT_HABITS_H

#include <stdint.h>

struct listing_pass {
	uint64_t dev, ino;
	uint64_t lookups_at_start;
	int attrs;                  /* this pass's entries carry attributes (from now on) */
};

/* A listing of directory (dev, ino) starts at offset 0. */
void habits_begin_pass(struct listing_pass *pass, uint64_t dev, uint64_t ino);

/* Before each batch: 1 when its entries should carry attributes. */
int habits_want_attrs(struct listing_pass *pass);

/* The listing reached the end of the directory. */
void habits_end_pass(const struct listing_pass *pass);

/* The kernel looked up a child of directory (dev, ino). */
void habits_note_lookup(uint64_t dev, uint64_t ino);

#endif
