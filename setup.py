"""The one compiled part of errbound: its HDF5 filter as an HDF5 plugin library.

Everything else is in pyproject.toml. ``errbound/integrations/hdf5/plugin/h5errbound.c`` becomes
``libh5errbound.so`` beside it (HDF5 loads only files named ``lib*.so*`` from its plugin path):
a plain shared library, not a Python module, that links libpython so that programs without
Python (h5dump) can start an interpreter. It needs a C compiler and the Python headers; without
them the install goes on without the plugin (``errbound h5 plugin-path`` then says so).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PLUGIN = "errbound.integrations.hdf5.plugin.libh5errbound"


class BuildPlugin(build_ext):
    """Names the plugin ``libh5errbound.so`` (no Python extension suffix)."""

    def get_ext_filename(self, fullname: str) -> str:
        # asked with the full dotted name or (distutils' get_ext_fullpath) with the last part only
        if PLUGIN.endswith(fullname):
            return os.path.join(*fullname.split("."))[: -len("libh5errbound")] + "libh5errbound.so"
        return super().get_ext_filename(fullname)


def plugin() -> list[Extension]:
    if os.name != "posix":  # HDF5 plugins on Windows are DLLs with other rules: not built there yet
        return []
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libpython = f"python{sys.version_info.major}.{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    # a static Python (no libpython.so) exports its symbols to extension modules itself: the
    # plugin then works inside Python processes only
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    return [
        Extension(
            PLUGIN,
            sources=["errbound/integrations/hdf5/plugin/h5errbound.c"],
            # the python whose environment the plugin starts when the program has no Python
            # (an editable install's plugin sits in the source tree, far from any site-packages)
            define_macros=[("ERRBOUND_BUILD_PYTHON", json.dumps(sys.executable))],
            libraries=([libpython] if shared else []) + (["dl"] if sys.platform.startswith("linux") else []),
            library_dirs=[libdir] if shared and libdir else [],
            runtime_library_dirs=[libdir] if shared and libdir else [],
            extra_compile_args=["-fvisibility=hidden"],
            optional=True,
        )
    ]


setup(ext_modules=plugin(), cmdclass={"build_ext": BuildPlugin})
