/*
 * errbound's HDF5 filter (id 60160) as an HDF5 plugin: any HDF5 program finds it through
 * HDF5_PLUGIN_PATH (see errbound/integrations/hdf5/plugin/__init__.py).
 *
 * No codec here, and no Python: this file is HDF5's side (the plugin's entry points, the caller's
 * allocator and error stack). Each callback hands its chunk to the Python bridge beside it
 * (python_bridge.c), which runs errbound's own Python code. Before loading the bridge, this file
 * settles which Python runtime the bridge binds to, and never adds a second one to a process
 * that holds one: the program's own when its symbols are visible (any python executable, whether
 * libpython is a separate library or, as in Debian's /usr/bin/python3, linked into it); a
 * libpython some library of the process loaded privately (made visible); else, in a program
 * without Python (h5dump, h5repack), the libpython errbound was built with.
 *
 * One plugin, several HDF5 libraries: a Python process can hold two (h5py's and netCDF4's wheels
 * each bundle one) and both load this same file. A callback must call back into the library
 * that called it (its ids are only valid there, and its buffers must come from its allocator),
 * so each library that asks for the filter gets its own filter class whose callbacks know it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5errbound.h"

/* the Python errbound was built for (setup.py): "3.11", the libpython file ("" for a Python
 * without one) and its soname */
#ifndef ERRBOUND_PYTHON_VERSION
#error "build with setup.py: ERRBOUND_PYTHON_VERSION names the Python the bridge is compiled for"
#endif
#ifndef ERRBOUND_LIBPYTHON
#define ERRBOUND_LIBPYTHON ""
#endif
#ifndef ERRBOUND_LIBPYTHON_SONAME
#define ERRBOUND_LIBPYTHON_SONAME ""
#endif

#define EXPORT __attribute__((visibility("default")))

#define H5E_DEFAULT 0
#define H5PL_TYPE_FILTER 0
#define FILTER_ID 60160
/* the name every file stores with the filter: errbound.integrations.hdf5.chunks.FILTER_NAME */
#define FILTER_NAME "errbound (pip install errbound; HDF5_PLUGIN_PATH=$(errbound h5 plugin-path))"
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
    allocate_fn allocate;
    release_fn release;
    herr_t (*push)(hid_t stack, const char *file, const char *func, unsigned line, hid_t cls, hid_t major,
                   hid_t minor, const char *format, ...);
    const hid_t *error_class, *major, *minor;
    h5z_class2_t filter_class;
} host_t;

static host_t hosts[MAX_HOSTS];
static int host_count;
static pthread_mutex_t hosts_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t bridge_lock = PTHREAD_MUTEX_INITIALIZER;
static int bridge_state; /* 0: not loaded yet, 1: loaded, -1: cannot be loaded (bridge_failure says why) */
static char bridge_failure[MESSAGE_SIZE];
static bridge_property_fn bridge_property;
static bridge_filter_fn bridge_filter;

/* ------------------------------------------------------------------------------------------ */
/* messages: pushed on the calling library's error stack, and printed (HDF5 itself only says
 * "filter returned failure", and h5dump shows even that only with --enable-error-stack; HDF5
 * 1.14.4 and later restore the stack after a filter returns, dropping what it pushed: checked with
 * h5py 3.16's HDF5 2.0, HDFGroup/hdf5#6194) */

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

/* ------------------------------------------------------------------------------------------ */
/* the Python runtime, and the bridge bound to it */

typedef const char *(*version_fn)(void);

/* a libpython the process holds already, wherever it came from (dl_iterate_phdr sees the
 * libraries loaded RTLD_LOCAL too, which dlsym(RTLD_DEFAULT) does not) */
static int find_libpython(struct dl_phdr_info *info, size_t size, void *found) {
    (void)size;
    const char *name = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    name = name ? name + 1 : info->dlpi_name;
    if (name && !strncmp(name, "libpython", 9) && strstr(name, ".so")) {
        snprintf(found, PATH_MAX, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}

/* Py_GetVersion of the runtime the bridge will bind to, made visible to it; NULL with a message */
static version_fn python_runtime(char *message) {
    /* the program's own Python: a python executable (static or not), or libpython loaded globally */
    version_fn version = (version_fn)dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (version)
        return version;
    char loaded[PATH_MAX] = "";
    dl_iterate_phdr(find_libpython, loaded);
    if (loaded[0]) {
        void *handle = dlopen(loaded, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
        version = handle ? (version_fn)dlsym(handle, "Py_GetVersion") : NULL;
        if (!version)
            set_message(message, "this process holds %s, which errbound cannot use: %s", loaded,
                        handle ? "no Py_GetVersion in it" : dlerror());
        return version;
    }
    /* no Python in this program: the build's libpython, loaded globally so that the extension
     * modules Python imports (numpy's, _ctypes) find its symbols too */
    const char *candidates[] = {ERRBOUND_LIBPYTHON, ERRBOUND_LIBPYTHON_SONAME};
    char failures[MESSAGE_SIZE] = "";
    for (int i = 0; i < 2; i++) {
        if (!candidates[i][0])
            continue;
        void *handle = dlopen(candidates[i], RTLD_NOW | RTLD_GLOBAL);
        if (handle && (version = (version_fn)dlsym(handle, "Py_GetVersion")))
            return version;
        size_t used = strlen(failures);
        snprintf(failures + used, sizeof failures - used, "%s%s", used ? "; " : "",
                 handle ? "no Py_GetVersion in it" : dlerror());
    }
    if (failures[0])
        set_message(message, "this program runs no Python, and Python %s's library cannot be loaded: %s",
                    ERRBOUND_PYTHON_VERSION, failures);
    else
        set_message(message,
                    "this program runs no Python, and the Python errbound was built with (%s) has no shared "
                    "libpython to start one: the plugin works in Python programs only (h5py, netCDF4-python)",
                    ERRBOUND_PYTHON_VERSION);
    return NULL;
}

static int plugin_file(char *path) {
    Dl_info info;
    if (!dladdr((void *)&plugin_file, &info) || !info.dli_fname || !realpath(info.dli_fname, path))
        return 0;
    return 1;
}

static int load_bridge(char *message) {
    version_fn version = python_runtime(message);
    if (!version)
        return -1;
    const char *running = version();
    size_t prefix = strlen(ERRBOUND_PYTHON_VERSION);
    if (strncmp(running, ERRBOUND_PYTHON_VERSION, prefix) || running[prefix] != '.') {
        set_message(message, "the plugin was built for Python %s, this process runs Python %.10s",
                    ERRBOUND_PYTHON_VERSION, running);
        return -1;
    }
    char self[PATH_MAX], path[PATH_MAX + sizeof BRIDGE_FILE];
    if (!plugin_file(self)) {
        set_message(message, "cannot find the plugin's own file");
        return -1;
    }
    snprintf(path, sizeof path, "%s", self);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0), "%s", BRIDGE_FILE);
    /* the interpreter may outlive HDF5's plugin table (HDF5 closes its plugins at exit): nothing
     * it can reach is ever unmapped */
    void *bridge = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!bridge) {
        set_message(message, "cannot load the plugin's Python bridge: %s", dlerror());
        return -1;
    }
    dlopen(self, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    const int *abi = dlsym(bridge, "errbound_bridge_abi");
    bridge_property = (bridge_property_fn)dlsym(bridge, "errbound_bridge_property");
    bridge_filter = (bridge_filter_fn)dlsym(bridge, "errbound_bridge_filter");
    if (!abi || *abi != BRIDGE_ABI || !bridge_property || !bridge_filter) {
        set_message(message, "%s does not belong to this plugin (reinstall errbound)", path);
        return -1;
    }
    return 0;
}

/* 0 when the bridge's functions may be called */
static int ensure_bridge(char *message) {
    if (__atomic_load_n(&bridge_state, __ATOMIC_ACQUIRE) == 1)
        return 0;
    pthread_mutex_lock(&bridge_lock);
    int state = bridge_state;
    if (state == 0)
        state = load_bridge(bridge_failure) == 0 ? 1 : -1;
    if (state == -1)
        snprintf(message, MESSAGE_SIZE, "%s", bridge_failure);
    __atomic_store_n(&bridge_state, state, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&bridge_lock);
    return state == 1 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* the callbacks */

static int call_property(const host_t *host, const char *name, hid_t dcpl, hid_t type, hid_t space) {
    char message[MESSAGE_SIZE] = "";
    int result = -1;
    if (ensure_bridge(message) == 0)
        result = bridge_property(name, host->path, dcpl, type, space, message);
    if (result < 0)
        report(host, message);
    return result;
}

/* HDF5's filter callback: 0 on failure, else the size of the new *buf (from the library's
 * allocator; the old one is released to it) */
static size_t filter(const host_t *host, unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                     size_t *buf_size, void **buf) {
    char message[MESSAGE_SIZE] = "";
    size_t size = 0;
    if (ensure_bridge(message) == 0)
        size = bridge_filter(flags, cd_nelmts, cd_values, nbytes, buf_size, buf, host->allocate, host->release,
                             message);
    if (!size)
        report(host, message);
    return size;
}

#define HOST_CALLBACKS(i)                                                                                          \
    static htri_t can_apply_##i(hid_t d, hid_t t, hid_t s) { return call_property(&hosts[i], "can_apply", d, t, s); } \
    static herr_t set_local_##i(hid_t d, hid_t t, hid_t s) { return call_property(&hosts[i], "set_local", d, t, s); } \
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
    host->allocate = library ? (allocate_fn)dlsym(library, "H5allocate_memory") : NULL;
    host->release = library ? (release_fn)dlsym(library, "H5free_memory") : NULL;
    if (!host->allocate || !host->release) {
        /* an HDF5 whose symbols are hidden in the program: its H5free_memory is free() unless it
         * was built with its memory checker, which cannot be reached without those symbols */
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
