/*
 * The interface between errbound's HDF5 plugin (h5errbound.c: HDF5's side, no Python in it) and
 * its Python bridge (python_bridge.c). The bridge is compiled against Python's headers but links
 * no libpython: like an extension module, it takes its Python symbols from the runtime the process
 * already shows globally, so the plugin decides which runtime that is before it loads the bridge.
 */
#ifndef ERRBOUND_H5ERRBOUND_H
#define ERRBOUND_H5ERRBOUND_H

#include <stddef.h>
#include <stdint.h>

/* HDF5's types (>= 1.10), declared here so that building needs no HDF5 headers */
typedef int64_t hid_t;
typedef int herr_t;
typedef int htri_t;

/* HDF5's file names for plugins are lib*.so*: the bridge's name keeps HDF5 from trying it */
#define BRIDGE_FILE "h5errbound_python.so"
#define BRIDGE_ABI 1 /* both files come from one build; a mismatch means a broken install */
#define MESSAGE_SIZE 1024

/* the caller's HDF5 allocator: the filter's output must come from it, the input goes back to it */
typedef void *(*allocate_fn)(size_t size, _Bool clear);
typedef herr_t (*release_fn)(void *block);

/* can_apply / set_local: the host function's result, or -1 with a message */
typedef int (*bridge_property_fn)(const char *function, const char *library, hid_t dcpl, hid_t type, hid_t space,
                                  char *message);
/* HDF5's filter callback: the new size of *buf, or 0 with a message (*buf untouched) */
typedef size_t (*bridge_filter_fn)(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                                   size_t *buf_size, void **buf, allocate_fn allocate, release_fn release,
                                   char *message);

#endif
