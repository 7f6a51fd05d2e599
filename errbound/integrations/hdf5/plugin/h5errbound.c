/*
 * errbound's HDF5 filter (id 60160) as an HDF5 plugin: any HDF5 program finds it through
 * HDF5_PLUGIN_PATH (see errbound/integrations/hdf5/plugin/__init__.py).
 *
 * No codec here: every callback hands its chunk to errbound.integrations.hdf5.plugin.host,
 * the Python code every other route uses. Inside a process that runs Python already (h5py,
 * netCDF4-python, h5netcdf) it runs there, under the GIL. In a program without Python (h5dump,
 * h5repack, netCDF-C tools) the first callback starts an interpreter with the environment
 * errbound was installed into.
 *
 * One plugin, several HDF5 libraries: a Python process can hold two (h5py's and netCDF4's wheels
 * each bundle one) and both load this same file. A callback must call back into the library
 * that called it (its ids are only valid there, and its buffers must come from its allocator),
 * so each library that asks for the filter gets its own filter class whose callbacks know it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ERRBOUND_BUILD_PYTHON
#define ERRBOUND_BUILD_PYTHON ""
#endif

#define EXPORT __attribute__((visibility("default")))

/* HDF5's types (>= 1.10), declared here so that building needs no HDF5 headers */
typedef int64_t hid_t;
typedef int herr_t;
typedef int htri_t;
#define H5E_DEFAULT 0
#define H5PL_TYPE_FILTER 0

#define FILTER_ID 60160
/* the name every file stores with the filter: errbound.integrations.hdf5.chunks.FILTER_NAME */
#define FILTER_NAME "errbound (pip install errbound; HDF5_PLUGIN_PATH=$(errbound h5 plugin-path))"
#define HOST_MODULE "errbound.integrations.hdf5.plugin.host"
#define MESSAGE_SIZE 1024
#define MAX_HOSTS 8
#define MAX_PRINTED 10

typedef struct {
    int version;
    int id;
    unsigned encoder_present;
    unsigned decoder_present;
    const char *name;
    htri_t (*can_apply)(hid_t dcpl, hid_t type, hid_t space);
    herr_t (*set_local)(hid_t dcpl, hid_t type, hid_t space);
    size_t (*filter)(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                     size_t *buf_size, void **buf);
} h5z_class2_t;

/* one HDF5 library that loaded the plugin */
typedef struct {
    char key[PATH_MAX];  /* the caller's file, as dladdr names it */
    char path[PATH_MAX]; /* the library's file for the Python side ("": the program holds HDF5) */
    void *(*allocate)(size_t size, _Bool clear);
    herr_t (*release)(void *block);
    herr_t (*push)(hid_t stack, const char *file, const char *func, unsigned line, hid_t cls, hid_t major,
                   hid_t minor, const char *format, ...);
    const hid_t *error_class, *major, *minor;
    h5z_class2_t filter_class;
} host_t;

static host_t hosts[MAX_HOSTS];
static int host_count;
static pthread_mutex_t hosts_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t python_lock = PTHREAD_MUTEX_INITIALIZER;
static int python_state; /* 0: not seen yet, 1: running (ours or the host's), -1: failed to start */
static char python_failure[MESSAGE_SIZE];
static PyObject *host_module; /* used with the GIL held */

/* ------------------------------------------------------------------------------------------ */
/* messages: pushed on the calling library's error stack, and printed (HDF5 itself only says
 * "filter returned failure", and h5dump shows even that only with --enable-error-stack) */

static void report(const host_t *host, const char *message) {
    static int printed;
    if (!message[0])
        message = "unknown failure";
    if (host->push && host->error_class && host->major && host->minor)
        host->push(H5E_DEFAULT, __FILE__, "errbound_filter", __LINE__, *host->error_class, *host->major,
                   *host->minor, "%s", message);
    int count = __atomic_add_fetch(&printed, 1, __ATOMIC_RELAXED);
    if (count <= MAX_PRINTED)
        fprintf(stderr, "errbound HDF5 filter: %s%s\n", message,
                count == MAX_PRINTED ? " (further messages not shown)" : "");
}

static void set_message(char *message, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(message, MESSAGE_SIZE, format, args);
    va_end(args);
}

/* the pending Python exception as "Type: text" (GIL held); clears it */
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
/* where this plugin and its Python live */

static int plugin_file(char *path) {
    Dl_info info;
    if (!dladdr((void *)&plugin_file, &info) || !info.dli_fname || !realpath(info.dli_fname, path))
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
 * source tree of an editable install): the plugin is errbound/integrations/hdf5/plugin/lib... */
static int package_root(char *root) {
    if (!plugin_file(root))
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

static int start_python(char *message) {
    Dl_info info;
    char libpython[PATH_MAX] = "";
    /* HDF5 opens plugins RTLD_LOCAL, so libpython (which this file links) is not global: the
     * extension modules Python loads (numpy, _ctypes, ...) would not find its symbols */
    if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname) {
        snprintf(libpython, sizeof libpython, "%s", info.dli_fname);
        if (!dlopen(libpython, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
            set_message(message, "cannot make %s global: %s", libpython, dlerror());
            return -1;
        }
    }
    /* the interpreter will point into this file (callbacks, module state): it must stay when
     * HDF5 closes its plugins at exit */
    char self[PATH_MAX];
    if (plugin_file(self))
        dlopen(self, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);

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
    if (Py_IsInitialized() && __atomic_load_n(&python_state, __ATOMIC_ACQUIRE) == 1)
        return 0;
    pthread_mutex_lock(&python_lock);
    int result = 0;
    if (python_state == -1) {
        snprintf(message, MESSAGE_SIZE, "%s", python_failure);
        result = -1;
    } else if (Py_IsInitialized()) {
        /* the program's own Python (or ours, started by another thread a moment ago) */
        /* it must be the version this file was built for */
        char expected[32];
        snprintf(expected, sizeof expected, "%d.%d.", PY_MAJOR_VERSION, PY_MINOR_VERSION);
        if (strncmp(Py_GetVersion(), expected, strlen(expected)) != 0) {
            set_message(python_failure, "the plugin was built for Python %d.%d, this process runs Python %.8s",
                        PY_MAJOR_VERSION, PY_MINOR_VERSION, Py_GetVersion());
            __atomic_store_n(&python_state, -1, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(&python_state, 1, __ATOMIC_RELEASE);
        }
    } else if (python_state == 1) {
        set_message(python_failure, "Python has shut down in this process (close HDF5 files before it exits)");
        __atomic_store_n(&python_state, -1, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&python_state, start_python(python_failure) == 0 ? 1 : -1, __ATOMIC_RELEASE);
    }
    if (python_state == -1) {
        snprintf(message, MESSAGE_SIZE, "%s", python_failure);
        result = -1;
    }
    pthread_mutex_unlock(&python_lock);
    return result;
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
/* the callbacks */

/* can_apply and set_local: the host function gets the library's file and the three ids */
static int call_property_function(const host_t *host, const char *name, hid_t dcpl, hid_t type, hid_t space) {
    char message[MESSAGE_SIZE] = "";
    long result = -1;
    if (ensure_python(message) == 0) {
        PyGILState_STATE gil = PyGILState_Ensure();
        PyObject *function = host_function(name, message);
        if (function) {
            PyObject *value = PyObject_CallFunction(function, "sLLL", host->path, (long long)dcpl, (long long)type,
                                                    (long long)space);
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
    }
    if (message[0])
        report(host, message);
    return message[0] ? -1 : (int)result;
}

static htri_t can_apply(const host_t *host, hid_t dcpl, hid_t type, hid_t space) {
    return call_property_function(host, "can_apply", dcpl, type, space);
}

static herr_t set_local(const host_t *host, hid_t dcpl, hid_t type, hid_t space) {
    return call_property_function(host, "set_local", dcpl, type, space);
}

/* HDF5's filter callback: 0 on failure, else the size of the new *buf (from the library's
 * allocator; the old one is released to it) */
static size_t filter(const host_t *host, unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                     size_t *buf_size, void **buf) {
    char message[MESSAGE_SIZE] = "";
    size_t size = 0;
    if (ensure_python(message) == 0) {
        PyGILState_STATE gil = PyGILState_Ensure();
        PyObject *function = host_function("filter", message);
        /* copies: nothing in Python may keep pointing at HDF5's buffer once it is released */
        PyObject *words = function ? PyBytes_FromStringAndSize((const char *)cd_values, cd_nelmts * sizeof(unsigned))
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
                void *out = view.len > 0 ? host->allocate((size_t)view.len, 0) : NULL;
                if (!out) {
                    set_message(message, "cannot allocate %zd bytes for the filter's output", view.len);
                } else {
                    memcpy(out, view.buf, (size_t)view.len);
                    host->release(*buf);
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
    }
    if (!size)
        report(host, message);
    return size;
}

#define HOST_CALLBACKS(i)                                                                                          \
    static htri_t can_apply_##i(hid_t d, hid_t t, hid_t s) { return can_apply(&hosts[i], d, t, s); }             \
    static herr_t set_local_##i(hid_t d, hid_t t, hid_t s) { return set_local(&hosts[i], d, t, s); }             \
    static size_t filter_##i(unsigned f, size_t n, const unsigned v[], size_t b, size_t *s, void **p) {          \
        return filter(&hosts[i], f, n, v, b, s, p);                                                                \
    }
HOST_CALLBACKS(0)
HOST_CALLBACKS(1)
HOST_CALLBACKS(2)
HOST_CALLBACKS(3)
HOST_CALLBACKS(4)
HOST_CALLBACKS(5)
HOST_CALLBACKS(6)
HOST_CALLBACKS(7)

#define CALLBACKS(i) {can_apply_##i, set_local_##i, filter_##i}
static const struct {
    htri_t (*can_apply)(hid_t, hid_t, hid_t);
    herr_t (*set_local)(hid_t, hid_t, hid_t);
    size_t (*filter)(unsigned, size_t, const unsigned[], size_t, size_t *, void **);
} callbacks[MAX_HOSTS] = {CALLBACKS(0), CALLBACKS(1), CALLBACKS(2), CALLBACKS(3),
                          CALLBACKS(4), CALLBACKS(5), CALLBACKS(6), CALLBACKS(7)};

/* ------------------------------------------------------------------------------------------ */
/* the plugin's two entry points */

static void *plain_allocate(size_t size, _Bool clear) { return clear ? calloc(1, size) : malloc(size); }

static herr_t plain_release(void *block) {
    free(block);
    return 0;
}

static void setup_host(host_t *host, int index, const char *path) {
    snprintf(host->key, sizeof host->key, "%s", path);
    snprintf(host->path, sizeof host->path, "%s", path);
    /* the caller's own copy; it outlives every call it makes to us, so the reference is dropped */
    void *library = path[0] ? dlopen(path, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    if (!library) {
        library = dlopen(NULL, RTLD_LAZY); /* HDF5 linked into the program */
        host->path[0] = '\0';
    }
    host->allocate = library ? (void *(*)(size_t, _Bool))dlsym(library, "H5allocate_memory") : NULL;
    host->release = library ? (herr_t(*)(void *))dlsym(library, "H5free_memory") : NULL;
    if (!host->allocate || !host->release) {
        /* HDF5 < 1.8.15 has neither: it frees filter buffers with free() */
        host->allocate = plain_allocate;
        host->release = plain_release;
    }
    if (library) {
        host->push = dlsym(library, "H5Epush2");
        host->error_class = dlsym(library, "H5E_ERR_CLS_g");
        host->major = dlsym(library, "H5E_PLINE_g");
        host->minor = dlsym(library, "H5E_CANTFILTER_g");
        dlclose(library);
    }
    host->filter_class = (h5z_class2_t){1,
                                        FILTER_ID,
                                        1,
                                        1,
                                        FILTER_NAME,
                                        callbacks[index].can_apply,
                                        callbacks[index].set_local,
                                        callbacks[index].filter};
}

EXPORT int H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }

/* HDF5 calls this from the library that loads the plugin: that caller is the host */
EXPORT const void *H5PLget_plugin_info(void) {
    Dl_info info;
    const char *path = "";
    void *caller = __builtin_extract_return_addr(__builtin_return_address(0));
    if (dladdr(caller, &info) && info.dli_fname)
        path = info.dli_fname;
    const h5z_class2_t *found = NULL;
    pthread_mutex_lock(&hosts_lock);
    for (int i = 0; i < host_count && !found; i++)
        if (!strcmp(hosts[i].key, path))
            found = &hosts[i].filter_class;
    if (!found && host_count < MAX_HOSTS) {
        setup_host(&hosts[host_count], host_count, path);
        found = &hosts[host_count].filter_class;
        host_count++;
    }
    pthread_mutex_unlock(&hosts_lock);
    /* never NULL: HDF5 would give up its whole plugin search, other filters' included */
    return found ? found : &hosts[0].filter_class;
}
