/*
 * The Python half of errbound's HDF5 plugin (see h5errbound.c): every callback hands its chunk to
 * errbound.integrations.hdf5.plugin.host, the Python code every other route uses, under the GIL.
 *
 * h5errbound.c loads this file only once the process shows a Python runtime globally: the
 * program's own (a python executable, static like Debian's /usr/bin/python3 or linked to
 * libpython, or a program that embeds it) or, in a program without Python (h5dump, h5repack), a
 * libpython it loaded for the purpose. This file links no libpython, so its Python symbols are
 * that runtime's and never a second copy's. When that Python is not running yet, the first
 * callback starts an interpreter with the environment errbound was installed into.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "h5errbound.h"

#ifndef ERRBOUND_BUILD_PYTHON
#define ERRBOUND_BUILD_PYTHON ""
#endif

#define EXPORT __attribute__((visibility("default")))
#define HOST_MODULE "errbound.integrations.hdf5.plugin.host"

static pthread_mutex_t python_lock = PTHREAD_MUTEX_INITIALIZER;
static int python_state; /* 0: not seen yet, 1: running (ours or the host's), -1: failed to start */
static char python_failure[MESSAGE_SIZE];
static PyObject *host_module; /* used with the GIL held */

static void set_message(char *message, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(message, MESSAGE_SIZE, format, args);
    va_end(args);
}

/* the pending Python exception as "context: Type: text" (GIL held); clears it */
static void exception_message(char *message, const char *context) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
    const char *name = type ? ((PyTypeObject *)type)->tp_name : "error";
    set_message(message, "%s: %s: %s", context, name, utf8 ? utf8 : "?");
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

/* ------------------------------------------------------------------------------------------ */
/* where this bridge and its Python live */

static int bridge_file(char *path) {
    Dl_info info;
    if (!dladdr((void *)&bridge_file, &info) || !info.dli_fname || !realpath(info.dli_fname, path))
        return 0;
    return 1;
}

static void strip_components(char *path, int count) {
    while (count-- > 0) {
        char *slash = strrchr(path, '/');
        if (!slash)
            return;
        *slash = '\0';
    }
}

/* the folder that holds the errbound package this plugin belongs to (site-packages, or the
 * source tree of an editable install): the bridge is errbound/integrations/hdf5/plugin/... */
static int package_root(char *root) {
    if (!bridge_file(root))
        return 0;
    strip_components(root, 5);
    return root[0] != '\0';
}

static int executable(const char *path) { return access(path, X_OK) == 0; }

/* The python executable of the environment errbound was installed into: ERRBOUND_PYTHON; the
 * venv around the site-packages this plugin is in; the installation's own python; the python
 * that built the plugin (editable installs, whose plugin sits in the source tree). 1 when found,
 * 0 when not, -1 (with a message) when ERRBOUND_PYTHON names no executable. */
static int choose_python(char *python, char *message) {
    const char *chosen = getenv("ERRBOUND_PYTHON");
    if (chosen && *chosen) {
        if (!executable(chosen)) {
            set_message(message, "ERRBOUND_PYTHON=%s is not an executable python", chosen);
            return -1;
        }
        snprintf(python, PATH_MAX, "%s", chosen);
        return 1;
    }
    char root[PATH_MAX];
    if (package_root(root)) {
        const char *base = strrchr(root, '/');
        if (base && (!strcmp(base + 1, "site-packages") || !strcmp(base + 1, "dist-packages"))) {
            char prefix[PATH_MAX], candidate[PATH_MAX + 64];
            snprintf(prefix, sizeof prefix, "%s", root);
            strip_components(prefix, 3); /* <prefix>/lib/pythonX.Y/site-packages */
            snprintf(candidate, sizeof candidate, "%s/pyvenv.cfg", prefix);
            int venv = access(candidate, R_OK) == 0;
            const char *names[] = {"python3", "python", NULL};
            for (int i = 0; venv && names[i]; i++) {
                snprintf(candidate, sizeof candidate, "%s/bin/%s", prefix, names[i]);
                if (executable(candidate) && strlen(candidate) < PATH_MAX) {
                    snprintf(python, PATH_MAX, "%s", candidate);
                    return 1;
                }
            }
            snprintf(candidate, sizeof candidate, "%s/bin/python%d.%d", prefix, PY_MAJOR_VERSION, PY_MINOR_VERSION);
            if (!venv && executable(candidate) && strlen(candidate) < PATH_MAX) {
                snprintf(python, PATH_MAX, "%s", candidate);
                return 1;
            }
        }
    }
    if (ERRBOUND_BUILD_PYTHON[0] && executable(ERRBOUND_BUILD_PYTHON)) {
        snprintf(python, PATH_MAX, "%s", ERRBOUND_BUILD_PYTHON);
        return 1;
    }
    return 0;
}

/* Without a python executable: the installation libpython belongs to, found from its file
 * (<home>/lib/libpython3.X.so with <home>/lib/python3.X/os.py). */
static int python_home(const char *libpython, char *home) {
    snprintf(home, PATH_MAX, "%s", libpython);
    for (int level = 0; level < 4; level++) {
        strip_components(home, 1);
        char probe[PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/lib/python%d.%d/os.py", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        if (home[0] && access(probe, R_OK) == 0)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python: the host's, or one started here */

/* sys.path gets the folder holding this plugin's errbound (GIL held); 0 on success */
static int add_package_root(void) {
    char root[PATH_MAX];
    if (!package_root(root))
        return 0;
    PyObject *site = PyImport_ImportModule("site");
    PyObject *done = site ? PyObject_CallMethod(site, "addsitedir", "s", root) : NULL;
    Py_XDECREF(site);
    Py_XDECREF(done);
    return done ? 0 : -1;
}

/* a program without Python of its own: h5errbound.c has loaded libpython globally (the extension
 * modules Python loads, numpy's and _ctypes', find its symbols there) */
static int start_python(char *message) {
    Dl_info info;
    char libpython[PATH_MAX] = "";
    if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname)
        snprintf(libpython, sizeof libpython, "%s", info.dli_fname);

    PyPreConfig preconfig;
    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.utf8_mode = 1;        /* whatever the program's locale */
    preconfig.configure_locale = 0; /* and leave that locale alone */
    preconfig.coerce_c_locale = 0;
    PyStatus status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status)) {
        set_message(message, "cannot start Python: %s", status.err_msg ? status.err_msg : "?");
        return -1;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* Ctrl-C stays the program's */
    config.parse_argv = 0;
    config.configure_c_stdio = 0;
    char python[PATH_MAX] = "", home[PATH_MAX];
    int found = choose_python(python, message);
    if (found < 0) {
        PyConfig_Clear(&config);
        return -1;
    }
    if (found)
        status = PyConfig_SetBytesString(&config, &config.program_name, python);
    else if (libpython[0] && python_home(libpython, home))
        status = PyConfig_SetBytesString(&config, &config.home, home);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        set_message(message,
                    "cannot start Python %d.%d (%s): %s; set ERRBOUND_PYTHON to the python of the environment "
                    "errbound is installed in",
                    PY_MAJOR_VERSION, PY_MINOR_VERSION, python[0] ? python : "no python found",
                    status.err_msg ? status.err_msg : "?");
        return -1;
    }
    if (add_package_root() < 0)
        exception_message(message, "cannot add errbound's folder to sys.path");
    PyEval_SaveThread(); /* every callback takes the GIL with PyGILState_Ensure */
    return 0;
}

/* 0 when Python runs and may be entered with PyGILState_Ensure */
static int ensure_python(char *message) {
    if (__atomic_load_n(&python_state, __ATOMIC_ACQUIRE) == 1 && Py_IsInitialized())
        return 0;
    pthread_mutex_lock(&python_lock);
    int state = python_state;
    if (state != -1) {
        if (Py_IsInitialized())
            state = 1; /* the program's own Python (or ours, started by another thread a moment ago) */
        else if (state == 1) {
            set_message(python_failure, "Python has shut down in this process (close HDF5 files before it exits)");
            state = -1;
        } else
            state = start_python(python_failure) == 0 ? 1 : -1;
    }
    if (state == -1)
        snprintf(message, MESSAGE_SIZE, "%s", python_failure);
    __atomic_store_n(&python_state, state, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&python_lock);
    return state == 1 ? 0 : -1;
}

/* the host module's function `name` (new reference; GIL held), or NULL with a message */
static PyObject *host_function(const char *name, char *message) {
    if (!host_module) {
        host_module = PyImport_ImportModule(HOST_MODULE);
        if (!host_module && PyErr_ExceptionMatches(PyExc_ImportError)) {
            /* a Python process whose path lacks the errbound this plugin belongs to */
            PyErr_Clear();
            if (add_package_root() == 0)
                host_module = PyImport_ImportModule(HOST_MODULE);
        }
        if (!host_module) {
            exception_message(message, "cannot import " HOST_MODULE);
            return NULL;
        }
    }
    PyObject *function = PyObject_GetAttrString(host_module, name);
    if (!function)
        exception_message(message, "errbound's HDF5 plugin host");
    return function;
}

/* a result that is a str is the error message the host function chose */
static int is_message(PyObject *result, char *message) {
    if (!PyUnicode_Check(result))
        return 0;
    const char *utf8 = PyUnicode_AsUTF8(result);
    set_message(message, "%s", utf8 ? utf8 : "failure");
    PyErr_Clear();
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* what h5errbound.c calls */

EXPORT const int errbound_bridge_abi = BRIDGE_ABI;

/* can_apply and set_local: the host function gets the library's file and the three ids */
EXPORT int errbound_bridge_property(const char *name, const char *library, hid_t dcpl, hid_t type, hid_t space,
                                    char *message) {
    long result = -1;
    if (ensure_python(message) < 0)
        return -1;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *function = host_function(name, message);
    if (function) {
        PyObject *value =
            PyObject_CallFunction(function, "sLLL", library, (long long)dcpl, (long long)type, (long long)space);
        if (!value)
            exception_message(message, name);
        else if (!is_message(value, message)) {
            result = PyLong_AsLong(value);
            if (result == -1 && PyErr_Occurred())
                exception_message(message, name);
        }
        Py_XDECREF(value);
        Py_DECREF(function);
    }
    PyGILState_Release(gil);
    return message[0] ? -1 : (int)result;
}

/* the filter: the new size of *buf, whose memory comes from `allocate` (the calling HDF5's); the
 * old buffer goes back through `release`. 0 with a message on failure, *buf untouched */
EXPORT size_t errbound_bridge_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                                     size_t *buf_size, void **buf, allocate_fn allocate, release_fn release,
                                     char *message) {
    size_t size = 0;
    if (ensure_python(message) < 0)
        return 0;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *function = host_function("filter", message);
    /* copies: nothing in Python may keep pointing at HDF5's buffer once it is released */
    PyObject *words =
        function ? PyBytes_FromStringAndSize((const char *)cd_values, (Py_ssize_t)(cd_nelmts * sizeof(unsigned)))
                 : NULL;
    PyObject *data = words ? PyBytes_FromStringAndSize((const char *)*buf, (Py_ssize_t)nbytes) : NULL;
    PyObject *result = data ? PyObject_CallFunction(function, "IOO", flags, words, data) : NULL;
    if (function && !result)
        exception_message(message, "filter");
    else if (result && !is_message(result, message)) {
        Py_buffer view;
        if (PyObject_GetBuffer(result, &view, PyBUF_CONTIG_RO) < 0) {
            exception_message(message, "filter result");
        } else {
            void *out = view.len > 0 ? allocate((size_t)view.len, 0) : NULL;
            if (!out) {
                set_message(message, "cannot allocate %zd bytes for the filter's output", view.len);
            } else {
                memcpy(out, view.buf, (size_t)view.len);
                release(*buf);
                *buf = out;
                *buf_size = size = (size_t)view.len;
            }
            PyBuffer_Release(&view);
        }
    }
    Py_XDECREF(result);
    Py_XDECREF(data);
    Py_XDECREF(words);
    Py_XDECREF(function);
    PyGILState_Release(gil);
    if (!size && !message[0])
        set_message(message, "the filter produced no output");
    return size;
}
