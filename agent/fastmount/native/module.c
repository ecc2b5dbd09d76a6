/* Python binding of the native fast-mount engine: `serve()` blocks (without the GIL) while libfuse's
 * threads answer the kernel; `counters()` reads the live counters from any other Python thread. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fastmount.h"

static struct fastmount the_mount;
static int served;
static PyObject *hook_error[3];  /* type, value, traceback of an exception raised by on_mounted */

/* Runs on_mounted (a Python callable) from the mounting thread, which serve() released the GIL in. */
static int call_on_mounted(void *ctx)
{
	PyGILState_STATE gil = PyGILState_Ensure();
	PyObject *result = PyObject_CallNoArgs((PyObject *)ctx);
	int failed = result == NULL;
	if (failed)
		PyErr_Fetch(&hook_error[0], &hook_error[1], &hook_error[2]);
	Py_XDECREF(result);
	PyGILState_Release(gil);
	return failed ? -1 : 0;
}

static PyObject *serve(PyObject *self, PyObject *args, PyObject *kwargs)
{
	(void)self;
	static char *keywords[] = {"source", "mount_path", "mount_options", "threads", "readahead_kib", "max_request_kib",
				   "passthrough", "zero_message_open", "readdirplus_always", "adaptive_attrs",
				   "entry_timeout", "attr_timeout", "negative_timeout", "debug", "spin_us", "dir_read_ahead",
				   "on_mounted", NULL};
	struct fastmount_options opts = {
		.threads = 4,
		.spin_us = 0,
		.readahead_kib = 0,
		.max_request_kib = 128,
		.passthrough = 1,
		.zero_message_open = 1,
		.readdirplus_always = 0,
		.dir_read_ahead = 1,
		.entry_timeout = 60.0,
		.attr_timeout = 1.0,  /* attributes decide the kernel's permission checks: never trust old ones */
		.negative_timeout = 10.0,
	};
	PyObject *on_mounted = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sss|IIIppppdddpIpO", keywords, &opts.source, &opts.mount_path,
					 &opts.mount_options, &opts.threads, &opts.readahead_kib, &opts.max_request_kib,
					 &opts.passthrough, &opts.zero_message_open, &opts.readdirplus_always, &opts.adaptive_attrs,
					 &opts.entry_timeout, &opts.attr_timeout, &opts.negative_timeout, &opts.debug,
					 &opts.spin_us, &opts.dir_read_ahead, &on_mounted))
		return NULL;
	if (on_mounted != Py_None && !PyCallable_Check(on_mounted)) {
		PyErr_SetString(PyExc_TypeError, "on_mounted must be callable or None");
		return NULL;
	}
	if (on_mounted != Py_None) {
		opts.on_mounted = call_on_mounted;
		opts.on_mounted_ctx = on_mounted;
	}
	if (opts.threads < 1 || opts.threads > 256) {
		PyErr_SetString(PyExc_ValueError, "threads must be between 1 and 256");
		return NULL;
	}
	if (opts.spin_us > 1000000) {
		PyErr_SetString(PyExc_ValueError, "spin_us must be at most 1000000 (one second)");
		return NULL;
	}
	if (served) {
		PyErr_SetString(PyExc_RuntimeError, "one native fast mount per process");
		return NULL;
	}
	served = 1;
	the_mount.opts = opts;
	int res;
	Py_BEGIN_ALLOW_THREADS
	res = fastmount_serve(&the_mount);
	Py_END_ALLOW_THREADS
	if (hook_error[0] != NULL) {
		PyErr_Restore(hook_error[0], hook_error[1], hook_error[2]);
		hook_error[0] = hook_error[1] = hook_error[2] = NULL;
		return NULL;
	}
	if (res < 0) {
		errno = -res;
		return PyErr_SetFromErrnoWithFilename(PyExc_OSError, opts.mount_path);
	}
	Py_RETURN_NONE;
}

static PyObject *counters(PyObject *self, PyObject *unused)
{
	(void)self, (void)unused;
	size_t inodes = inodes_count(&the_mount.inodes);
	return Py_BuildValue("(KKKK)",
			     (unsigned long long)atomic_load(&the_mount.bytes_read),
			     (unsigned long long)atomic_load(&the_mount.errors),
			     (unsigned long long)atomic_load(&the_mount.opens), (unsigned long long)inodes);
}

static PyMethodDef methods[] = {
	{"serve", (PyCFunction)(void (*)(void))serve, METH_VARARGS | METH_KEYWORDS,
	 "serve(source, mount_path, mount_options, ...) -> None: mount and serve until unmounted or signalled"},
	{"counters", counters, METH_NOARGS, "counters() -> (bytes_read, errors, opens, inodes remembered for the kernel)"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "agent.fastmount._native", "Native read-only fast-mount engine (libfuse).", -1,
	methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
	return PyModule_Create(&module);
}
