/* Mount, run libfuse's multi-threaded loop, unmount. */
#define _GNU_SOURCE
#include "fastmount.h"
#include "passthrough.h"
#include "receive.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int fastmount_serve(struct fastmount *fm)
{
	/* No symlink anywhere on the way: the agent validated this path, and a link swapped in since must not
	 * lead the mount elsewhere. Without openat2 (ENOSYS/EPERM), a plain open. */
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	fm->root_fd = (int)syscall(SYS_openat2, AT_FDCWD, fm->opts.source, &how, sizeof(how));
	if (fm->root_fd < 0 && (errno == ENOSYS || errno == EPERM))
		fm->root_fd = open(fm->opts.source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fm->root_fd < 0) {
		int err = errno;
		fprintf(stderr, "bench-fastmount: cannot open source %s: %s\n", fm->opts.source, strerror(err));
		return -err;
	}
	struct stat root;
	if (fstat(fm->root_fd, &root) != 0 || inodes_init(&fm->inodes, &root) != 0) {
		int err = errno ? errno : ENOMEM;
		close(fm->root_fd);
		return -err;
	}

	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int res = -ENOMEM;
	if (fuse_opt_add_arg(&args, "bench-fastmount") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
	    fuse_opt_add_arg(&args, fm->opts.mount_options) != 0 ||
	    (fm->opts.debug && fuse_opt_add_arg(&args, "-d") != 0))
		goto out_args;

	struct fuse_session *se = fuse_session_new(&args, &fastmount_ops, sizeof(fastmount_ops), fm);
	res = -EINVAL;  /* libfuse printed why (an unknown option, most likely) */
	if (se == NULL)
		goto out_args;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, fm->opts.mount_path) != 0) {
		res = -EIO;  /* libfuse printed why */
		goto out_signals;
	}

	fm->se = se;
	pthread_mutex_init(&fm->backing_lock, NULL);
	/* Our own transport: replies go through the passthrough shim, requests come through receive.h */
	static const struct fuse_custom_io io = {.writev = passthrough_writev, .read = receive_request};
	if (fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0) {
		atomic_store(&fm->passthrough, fm->opts.passthrough);
		int err = receive_configure(se, fm->opts.spin_us);
		if (err < 0)
			fprintf(stderr, "{\"event\": \"polling-unavailable\", \"reason\": \"%s\"}\n", strerror(-err));
	} else if (fm->opts.passthrough) {
		fprintf(stderr, "{\"event\": \"passthrough-unavailable\", \"reason\": \"custom io refused\"}\n");
	}

	if (fm->opts.on_mounted != NULL && fm->opts.on_mounted(fm->opts.on_mounted_ctx) != 0) {
		res = -EPERM;  /* the hook said why */
		goto out_unmount;
	}

	struct fuse_loop_config *config = fuse_loop_cfg_create();
	if (config == NULL) {
		res = -ENOMEM;
		goto out_unmount;
	}
	fuse_loop_cfg_set_clone_fd(config, 0);
	fuse_loop_cfg_set_max_threads(config, fm->opts.threads);
	fuse_loop_cfg_set_idle_threads(config, fm->opts.threads);
	res = fuse_session_loop_mt(se, config);
	fuse_loop_cfg_destroy(config);
	res = res < 0 ? res : 0;  /* a positive value is the signal that ended the loop: a clean stop */

out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	fuse_opt_free_args(&args);
	inodes_destroy(&fm->inodes);
	close(fm->root_fd);
	return res;
}
