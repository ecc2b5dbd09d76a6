#include "inodes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 4096

static size_t bucket_of(uint64_t dev, uint64_t ino, size_t nbuckets)
{
	uint64_t h = (ino ^ (dev * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
	return (size_t)(h ^ (h >> 31)) & (nbuckets - 1);
}

int inodes_init(struct inode_table *table, const struct stat *root)
{
	memset(table, 0, sizeof(*table));
	table->buckets = calloc(INITIAL_BUCKETS, sizeof(*table->buckets));
	if (table->buckets == NULL)
		return -ENOMEM;
	table->nbuckets = INITIAL_BUCKETS;
	table->root.dev = root->st_dev;
	table->root.ino = root->st_ino;
	table->root.path = strdup(".");
	table->root.nlookup = 1;
	if (table->root.path == NULL) {
		free(table->buckets);
		return -ENOMEM;
	}
	pthread_mutex_init(&table->lock, NULL);
	return 0;
}

void inodes_destroy(struct inode_table *table)
{
	for (size_t i = 0; i < table->nbuckets; i++) {
		struct inode *node = table->buckets[i];
		while (node != NULL) {
			struct inode *next = node->next;
			free(node->path);
			free(node);
			node = next;
		}
	}
	free(table->buckets);
	free(table->root.path);
	pthread_mutex_destroy(&table->lock);
	atomic_store_explicit(&table->count, 0, memory_order_relaxed);
}

/* Double the bucket array when the chains get long; a failed allocation just keeps the old one. */
static void grow(struct inode_table *table)
{
	size_t nbuckets = table->nbuckets * 2;
	struct inode **buckets = calloc(nbuckets, sizeof(*buckets));
	if (buckets == NULL)
		return;
	for (size_t i = 0; i < table->nbuckets; i++) {
		struct inode *node = table->buckets[i];
		while (node != NULL) {
			struct inode *next = node->next;
			size_t b = bucket_of(node->dev, node->ino, nbuckets);
			node->next = buckets[b];
			buckets[b] = node;
			node = next;
		}
	}
	free(table->buckets);
	table->buckets = buckets;
	table->nbuckets = nbuckets;
}

int inodes_child_path(const struct inode *parent, const char *name, char *buf, size_t size)
{
	int n = strcmp(parent->path, ".") == 0 ? snprintf(buf, size, "%s", name)
					       : snprintf(buf, size, "%s/%s", parent->path, name);
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return n;
}

static char *child_path(const struct inode *parent, const char *name)
{
	char path[PATH_MAX];
	if (inodes_child_path(parent, name, path, sizeof(path)) < 0)
		return NULL;
	char *copy = strdup(path);
	if (copy == NULL)
		errno = ENOMEM;
	return copy;
}

struct inode *inodes_remember(struct inode_table *table, const struct inode *parent, const char *name,
			      const struct stat *st)
{
	uint64_t dev = st->st_dev, ino = st->st_ino;
	pthread_mutex_lock(&table->lock);
	if (dev == table->root.dev && ino == table->root.ino) {
		table->root.nlookup++;
		pthread_mutex_unlock(&table->lock);
		return &table->root;
	}
	size_t b = bucket_of(dev, ino, table->nbuckets);
	for (struct inode *node = table->buckets[b]; node != NULL; node = node->next) {
		if (node->dev == dev && node->ino == ino) {
			node->nlookup++;
			pthread_mutex_unlock(&table->lock);
			return node;
		}
	}
	pthread_mutex_unlock(&table->lock);

	/* Build the new record outside the lock, then insert it unless another thread won the race. */
	struct inode *fresh = calloc(1, sizeof(*fresh));
	char *path = fresh != NULL ? child_path(parent, name) : NULL;
	if (fresh == NULL || path == NULL) {
		int err = fresh == NULL ? ENOMEM : errno;
		free(fresh);
		errno = err;
		return NULL;
	}
	fresh->dev = dev;
	fresh->ino = ino;
	fresh->path = path;
	fresh->nlookup = 1;

	pthread_mutex_lock(&table->lock);
	b = bucket_of(dev, ino, table->nbuckets);
	for (struct inode *node = table->buckets[b]; node != NULL; node = node->next) {
		if (node->dev == dev && node->ino == ino) {
			node->nlookup++;
			pthread_mutex_unlock(&table->lock);
			free(fresh->path);
			free(fresh);
			return node;
		}
	}
	fresh->next = table->buckets[b];
	table->buckets[b] = fresh;
	if (atomic_fetch_add_explicit(&table->count, 1, memory_order_relaxed) + 1 > table->nbuckets)
		grow(table);
	pthread_mutex_unlock(&table->lock);
	return fresh;
}

int inodes_forget(struct inode_table *table, struct inode *node, uint64_t nlookup)
{
	pthread_mutex_lock(&table->lock);
	if (node == &table->root) {
		node->nlookup = node->nlookup > nlookup ? node->nlookup - nlookup : 1;
		pthread_mutex_unlock(&table->lock);
		return 0;
	}
	if (node->nlookup > nlookup) {
		node->nlookup -= nlookup;
		pthread_mutex_unlock(&table->lock);
		return 0;
	}
	struct inode **link = &table->buckets[bucket_of(node->dev, node->ino, table->nbuckets)];
	while (*link != NULL && *link != node)
		link = &(*link)->next;
	if (*link == node) {
		*link = node->next;
		atomic_fetch_sub_explicit(&table->count, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&table->lock);
	/* no open is left: the kernel forgets an inode only after its last RELEASE was answered */
	int backing_id = node->backing_id;
	free(node->path);
	free(node);
	return backing_id;
}

size_t inodes_count(const struct inode_table *table)
{
	return atomic_load_explicit(&table->count, memory_order_relaxed);
}
