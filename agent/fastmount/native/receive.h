/* How the request threads take requests from the kernel: by default one thread at a time, polling the
 * device briefly after each request before it sleeps.
 *
 * Why: a FUSE request costs two wake-ups of a sleeping CPU when its server thread sleeps in read(): the
 * kernel waking the server, then the reply waking the caller. A burst of small-file opens is a chain of
 * such round trips. Measured on a 2-vCPU VM (pipe ping-pong between two processes, in C): 15 us per
 * round trip with both sides sleeping, 8 us with the server polling.
 *
 * One thread at a time, the receiver, reads the device: after a request it polls for up to spin_us
 * before it sleeps in poll(), and it keeps the role while it answers metadata requests, so a burst costs
 * no thread hand-over either. A READ (a file the kernel does not pass through) hands the role to the
 * next thread first, so such reads still run in parallel. The other threads wait for their turn on a
 * condition variable, not on the device. The polling loop yields the CPU between polls, so a runnable
 * task on the same CPU (on a busy node, a job) runs first, and it stops after spin_us without requests:
 * an idle mount costs no CPU.
 *
 * spin_us = 0 turns all of this off: every thread sleeps in read() of the device, as libfuse does. */
#ifndef BENCH_FASTMOUNT_RECEIVE_H
#define BENCH_FASTMOUNT_RECEIVE_H

#include <stddef.h>
#include <sys/types.h>

struct fuse_session;

/* Before the loop starts: poll for up to spin_us after each request (0: plain blocking reads).
 * Returns 0, or -errno when the device cannot be made non-blocking. */
int receive_configure(struct fuse_session *se, unsigned spin_us);

/* libfuse's custom-io read: the next request from the kernel into buf. */
ssize_t receive_request(int fd, void *buf, size_t len, void *userdata);

/* The calling request thread is about to do work no request waits for (reading a directory ahead): when
 * it is the receiver, another thread takes the role, so requests keep being answered meanwhile. Until
 * receive_background_done(), the receiver sleeps instead of polling: on a node with few CPUs a polling
 * thread would take the CPU this work needs (measured: a cold `ls -l` 0.37x direct with polling during
 * it, 0.45x without). */
void receive_background_begin(void);
void receive_background_done(void);

#endif
