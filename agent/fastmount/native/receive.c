#define _GNU_SOURCE
#include "receive.h"

#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IN_HEADER_OPCODE 4  /* struct fuse_in_header: u32 len, u32 opcode, ... */
#define OPCODE_READ 15

static struct fuse_session *session;
static uint64_t spin_ns;

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_free = PTHREAD_COND_INITIALIZER;
static int turn_taken;             /* a thread is the receiver; turn_lock */
static atomic_int background_work; /* threads doing work no request waits for: do not poll meanwhile */
static __thread int is_receiver;

int receive_configure(struct fuse_session *se, unsigned spin_us)
{
	session = se;
	spin_ns = (uint64_t)spin_us * 1000;
	if (spin_ns == 0)
		return 0;
	int fd = fuse_session_fd(se);
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		spin_ns = 0;
		return -errno;
	}
	return 0;
}

static uint64_t monotonic_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void unlock_turn_lock(void *unused)
{
	(void)unused;
	pthread_mutex_unlock(&turn_lock);
}

/* Cancellation (libfuse cancels its threads at exit) can hit pthread_cond_wait, which then returns
 * with turn_lock held: the cleanup handler releases it for the threads cancelled after this one. */
static void take_turn(void)
{
	pthread_mutex_lock(&turn_lock);
	pthread_cleanup_push(unlock_turn_lock, NULL);
	while (turn_taken)
		pthread_cond_wait(&turn_free, &turn_lock);
	turn_taken = 1;
	pthread_cleanup_pop(1);
	is_receiver = 1;
}

static void give_turn(void)
{
	is_receiver = 0;
	pthread_mutex_lock(&turn_lock);
	turn_taken = 0;
	pthread_cond_signal(&turn_free);
	pthread_mutex_unlock(&turn_lock);
}

/* When polling for the next request stops: spin_ns from now, or now while a thread does background work. */
static uint64_t polling_deadline(void)
{
	return monotonic_ns() + (atomic_load_explicit(&background_work, memory_order_relaxed) ? 0 : spin_ns);
}

/* Read the device (non-blocking): poll it until polling_deadline(), yielding the CPU between tries, then
 * sleep in poll() until a request comes. -1 with EINTR makes libfuse look at its exit flag and call again. */
static ssize_t poll_then_sleep(int fd, void *buf, size_t len)
{
	uint64_t deadline = polling_deadline();
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0 || errno != EAGAIN)
			return n;
		if (fuse_session_exited(session)) {
			errno = EINTR;
			return -1;
		}
		if (monotonic_ns() < deadline) {
			sched_yield();
			continue;
		}
		struct pollfd device = {.fd = fd, .events = POLLIN};
		if (poll(&device, 1, -1) < 0)
			return -1;  /* EINTR: a signal, maybe the one that stops the loop */
		deadline = polling_deadline();
	}
}

void receive_background_begin(void)
{
	atomic_fetch_add_explicit(&background_work, 1, memory_order_relaxed);
	if (is_receiver)
		give_turn();
}

void receive_background_done(void)
{
	atomic_fetch_sub_explicit(&background_work, 1, memory_order_relaxed);
}

ssize_t receive_request(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	if (spin_ns == 0)
		return read(fd, buf, len);
	if (!is_receiver)
		take_turn();
	ssize_t n = poll_then_sleep(fd, buf, len);
	int err = errno;
	uint32_t opcode = 0;
	if (n >= IN_HEADER_OPCODE + (ssize_t)sizeof(opcode))
		memcpy(&opcode, (char *)buf + IN_HEADER_OPCODE, sizeof(opcode));
	/* A READ may take a while; an error (the device gone at unmount) must reach every thread. */
	if (n < 0 || opcode == OPCODE_READ)
		give_turn();
	errno = err;
	return n;
}
