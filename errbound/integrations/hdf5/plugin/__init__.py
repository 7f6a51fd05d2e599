"""errbound's HDF5 filter as an HDF5 plugin library, for every HDF5 program.

    export HDF5_PLUGIN_PATH=$(errbound h5 plugin-path)
    h5dump -d /atm/T out.h5                      # or netCDF4-python, xarray, h5py, ParaView, ...

``pip install errbound`` compiles ``h5errbound.c`` into ``libh5errbound.so`` and
``python_bridge.c`` into ``h5errbound_python.so`` in this folder (``setup.py``; an editable
install puts them in the source tree, and ``NOT_BUILT.txt`` there says why when it could not).
HDF5 loads the first from ``HDF5_PLUGIN_PATH`` the first time it meets filter 60160; it holds no
codec and no Python. It finds the Python runtime of the process (the python executable's own,
whether libpython is a separate library or linked into it as in Debian's ``/usr/bin/python3``)
and only then loads the bridge, whose Python symbols are that runtime's: never a second
libpython or interpreter. Each callback runs :mod:`.host`, i.e.
:func:`errbound.integrations.hdf5.chunks.run_filter`, in that Python (under the GIL), or, in a
program without Python (h5dump, h5repack), in an interpreter the plugin starts on first use from
the libpython errbound was built with and the environment errbound was installed into (the venv
around its site-packages, else the python that built it; ``ERRBOUND_PYTHON`` overrides).
It writes exactly what the in-process filter (``errbound.hdf5``) writes, and each reads the
other's files.

With the plugin, ``h5repack -f UD=60160,0,8,<8 words>`` compresses too: ``errbound h5 ud``
prints the words for a codec and bound (see :func:`repack_filter`).
"""

from __future__ import annotations

from pathlib import Path

from ....errors import ErrboundError
from .. import chunks

LIBRARY_NAME = "libh5errbound.so"
BRIDGE_NAME = "h5errbound_python.so"  # loaded by the library, never by HDF5 (not named lib*)
NOT_BUILT = "NOT_BUILT.txt"  # setup.py's record of why the plugin was not built


class PluginNotBuiltError(ErrboundError, FileNotFoundError):
    """The plugin library was not compiled when errbound was installed (no C compiler?)."""


def directory() -> Path:
    """The folder to put in ``HDF5_PLUGIN_PATH`` (it holds the plugin library and no other)."""
    return Path(__file__).resolve().parent


def not_built_reason() -> str:
    """Why the install did not build the plugin, as setup.py recorded it ("" when it did or left no record)."""
    try:
        return (directory() / NOT_BUILT).read_text().strip()
    except OSError:
        return ""


def library() -> Path:
    """The plugin library's file; PluginNotBuiltError says how to get it when it is missing."""
    path = directory() / LIBRARY_NAME
    missing = [p for p in (path, directory() / BRIDGE_NAME) if not p.is_file()]
    if missing:
        reason = not_built_reason()
        raise PluginNotBuiltError(
            f"errbound's HDF5 plugin is missing ({', '.join(str(p) for p in missing)})"
            + (f": {reason}" if reason else "")
            + ". It is compiled when errbound is installed (needs a C compiler and the Python headers); "
            "reinstall with `pip install --force-reinstall --no-binary errbound errbound` or `pip install -e .` "
            "from a checkout. Until then, only Python processes that `import errbound` read errbound-compressed "
            "HDF5 data (through h5py)"
        )
    return path


def repack_filter(codec: str = "auto", **bound) -> str:
    """``h5repack``'s ``-f`` argument for a codec and one bound: ``UD=60160,0,8,w0,...,w7``
    (default codec ``auto``, as ``errbound h5 compress`` writes).

    The 8 words are the user part of the filter parameters (``errbound.hdf5``'s docstring):
    layout version, codec name (2 words of ASCII), bound mode, bound (float64, 2 words), the
    absolute bound (float64, 2 words; 0 = derived per chunk for rel and psnr, since h5repack
    shows the filter one chunk at a time). The plugin's set_local adds the rest.
    """
    words = chunks.filter(codec, **bound)["compression_opts"]
    assert len(words) == chunks.USER_WORDS
    return f"UD={chunks.FILTER_ID},0,{chunks.USER_WORDS}," + ",".join(str(w) for w in words)
