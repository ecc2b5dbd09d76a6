#include "habits.h"

#include <pthread.h>

#define SLOTS 1024          /* directories remembered; a colliding one takes the slot over */
#define PROBE_EVERY 8

struct habit {
	uint64_t dev, ino;
	uint64_t lookups;           /* children looked up so far */
	uint64_t lookups_at_end;    /* ... when the last pass ended */
	unsigned passes_with_attrs;
	int last_pass_names_only;
	int attrs_from_start;
};

static struct habit slots[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct habit *slot_index(uint64_t dev, uint64_t ino)
{
	return &slots[(((ino * 0x9E3779B97F4A7C15ull) ^ dev) >> 20) % SLOTS];
}

static struct habit *slot_of(uint64_t dev, uint64_t ino)
{
	struct habit *s = slot_index(dev, ino);
	if (s->dev != dev || s->ino != ino)
		*s = (struct habit){.dev = dev, .ino = ino};
	return s;
}

void habits_begin_pass(struct listing_pass *pass, uint64_t dev, uint64_t ino)
{
	pthread_mutex_lock(&lock);
	struct habit *s = slot_of(dev, ino);
	/* After a names-only pass, lookups of children (or none) decide how the next passes start. */
	if (s->last_pass_names_only)
		s->attrs_from_start = s->lookups > s->lookups_at_end;
	int probe = s->attrs_from_start && ++s->passes_with_attrs % PROBE_EVERY == 0;
	*pass = (struct listing_pass){.dev = dev, .ino = ino, .lookups_at_start = s->lookups,
				      .attrs = s->attrs_from_start && !probe};
	pthread_mutex_unlock(&lock);
}

int habits_want_attrs(struct listing_pass *pass)
{
	if (pass->attrs)
		return 1;
	pthread_mutex_lock(&lock);
	pass->attrs = slot_of(pass->dev, pass->ino)->lookups > pass->lookups_at_start;
	pthread_mutex_unlock(&lock);
	return pass->attrs;
}

void habits_end_pass(const struct listing_pass *pass)
{
	pthread_mutex_lock(&lock);
	struct habit *s = slot_of(pass->dev, pass->ino);
	s->last_pass_names_only = !pass->attrs;
	s->lookups_at_end = s->lookups;
	pthread_mutex_unlock(&lock);
}

void habits_note_lookup(uint64_t dev, uint64_t ino)
{
	pthread_mutex_lock(&lock);
	struct habit *s = slot_index(dev, ino);
	if (s->dev == dev && s->ino == ino)  /* directories never listed are not tracked */
		s->lookups++;
	pthread_mutex_unlock(&lock);
}
