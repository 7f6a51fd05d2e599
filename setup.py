"""The one compiled part of errbound: its HDF5 filter as an HDF5 plugin library.

Everything else is in pyproject.toml. Two files are built beside their sources in
``errbound/integrations/hdf5/plugin/`` (HDF5 loads only files named ``lib*.so*`` from its plugin
path, so only the first is a plugin to it):

- ``libh5errbound.so`` from ``h5errbound.c``: HDF5's side; it needs no Python headers and links
  no libpython. It finds the Python runtime the process already runs (a static one like Debian's
  ``/usr/bin/python3`` included) or, in a program without Python (h5dump), loads this Python's
  libpython, and only then loads
- ``h5errbound_python.so`` from ``python_bridge.c``: the Python side, built like an extension
  module (Python's headers, no libpython: its symbols come from that runtime, never a second one).

It needs a C compiler and the Python headers; without them the install goes on without the
plugin and ``plugin/NOT_BUILT.txt`` says why (``errbound h5 plugin-path`` and the tests read it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

FOLDER = "errbound/integrations/hdf5/plugin"
PACKAGE = FOLDER.replace("/", ".")
#: module name -> file name (none of them a Python module: no extension suffix)
FILES = {f"{PACKAGE}.libh5errbound": "libh5errbound.so", f"{PACKAGE}.h5errbound_python": "h5errbound_python.so"}
NOT_BUILT = "NOT_BUILT.txt"  # errbound.integrations.hdf5.plugin.NOT_BUILT


def missing_prerequisites(compiler_command: list[str]) -> str:
    """Why the plugin cannot be built on this machine at all ("" when it can)."""
    if not compiler_command or not shutil.which(compiler_command[0]):
        return f"no C compiler ({compiler_command[0] if compiler_command else 'none configured'} not found)"
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h is missing: apt install python3-dev, or the like)"
    return ""


class BuildPlugin(build_ext):
    """Builds both files or neither, and records why not (an unbuildable plugin never stops an install)."""

    def get_ext_filename(self, fullname: str) -> str:
        # asked with the full dotted name or (distutils' get_ext_fullpath) with the last part only
        for name, filename in FILES.items():
            if name.endswith(fullname):
                return os.path.join(*name.split(".")[:-1], filename) if "." in fullname else filename
        return super().get_ext_filename(fullname)

    def build_extensions(self) -> None:
        plugin = [ext for ext in self.extensions if ext.name in FILES]
        others = [ext for ext in self.extensions if ext.name not in FILES]
        for ext in others:
            self.build_extension(ext)
        if not plugin:
            return
        # an editable install copies the built files into the source tree afterwards; the record goes there itself
        folders = {os.path.dirname(self.get_ext_fullpath(plugin[0].name))}
        if getattr(self, "editable_mode", False):
            folders.add(FOLDER)
        reason = missing_prerequisites(list(self.compiler.compiler_so))
        if not reason:
            try:
                for ext in plugin:
                    self.build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - CompileError, LinkError, ...: recorded, the install goes on
                reason = f"the build failed: {type(exc).__name__}: {exc}"
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            record = os.path.join(folder, NOT_BUILT)
            if not reason:
                if os.path.exists(record):
                    os.remove(record)
                continue
            for filename in FILES.values():  # half a plugin, or an earlier build's, is none
                if os.path.exists(os.path.join(folder, filename)):
                    os.remove(os.path.join(folder, filename))
            with open(record, "w") as out:
                out.write(reason + "\n")
        if reason:
            self.warn(f"errbound's HDF5 plugin is not built: {reason}")


def libpython() -> tuple[str, str]:
    """This Python's shared libpython (file, soname), for programs without Python; "" where it has none."""
    soname = sysconfig.get_config_var("INSTSONAME") or ""
    if ".so" not in soname:  # libpython3.X.a: a Python without a shared library
        return "", ""
    path = os.path.join(sysconfig.get_config_var("LIBDIR") or "", soname)
    return (path if os.path.isfile(path) else ""), soname


def plugin() -> list[Extension]:
    if os.name != "posix":  # HDF5 plugins on Windows are DLLs with other rules: not built there yet
        return []
    path, soname = libpython()
    header = [f"{FOLDER}/h5errbound.h"]
    flags = ["-fvisibility=hidden"]
    libraries = ["dl", "pthread"] if sys.platform.startswith("linux") else []
    return [
        Extension(
            f"{PACKAGE}.libh5errbound",
            sources=[f"{FOLDER}/h5errbound.c"],
            depends=header,
            define_macros=[
                ("ERRBOUND_PYTHON_VERSION", json.dumps(f"{sys.version_info.major}.{sys.version_info.minor}")),
                ("ERRBOUND_LIBPYTHON", json.dumps(path)),
                ("ERRBOUND_LIBPYTHON_SONAME", json.dumps(soname)),
            ],
            libraries=libraries,
            extra_compile_args=flags,
            optional=True,  # build_extensions builds both or neither; an editable install then copies what exists
        ),
        Extension(
            f"{PACKAGE}.h5errbound_python",
            sources=[f"{FOLDER}/python_bridge.c"],
            depends=header,
            # the python whose environment the plugin starts when the program has no Python
            # (an editable install's plugin sits in the source tree, far from any site-packages)
            define_macros=[("ERRBOUND_BUILD_PYTHON", json.dumps(sys.executable))],
            libraries=libraries,
            extra_compile_args=flags,
            optional=True,  # build_extensions builds both or neither; an editable install then copies what exists
        ),
    ]


setup(ext_modules=plugin(), cmdclass={"build_ext": BuildPlugin})
