"""errbound: error-bounded lossy compression of float32/float64 arrays.

    blob = errbound.compress(array, codec="sz", rel=1e-3)
    restored = errbound.decompress(blob)      # every |array - restored| <= the bound

The public surface is ``__all__`` below and the documented sub-APIs: ``errbound.quantized``
(integer codes, for exact reductions), ``errbound.hdf5`` (the HDF5 filter),
``errbound.numcodecs`` and ``errbound.zarr`` (codecs for zarr 2 and 3). ``import errbound``
loads the core only; codecs load on first use, integrations when they are named.
"""

from . import _hooks
from . import codecs as _codec_package  # noqa: F401 - imported first so that the function below keeps the name
from .api import compress, decompress, info
from .codec import Codec, codecs, get_codec
from .errors import (
    BoundError,
    CodecOptionError,
    CorruptStreamError,
    ErrboundError,
    OutputLimitError,
    UnknownCodecError,
    UnsupportedInputError,
    UnsupportedStreamError,
)
from .precompile import warmup

__version__ = "0.3.0.dev0"

__all__ = [
    "compress",
    "decompress",
    "info",
    "tune",
    "warmup",
    "codecs",
    "get_codec",
    "Codec",
    "ErrboundError",
    "BoundError",
    "UnsupportedInputError",
    "UnknownCodecError",
    "CodecOptionError",
    "CorruptStreamError",
    "UnsupportedStreamError",
    "OutputLimitError",
    "__version__",
]

_hooks.install()


def __getattr__(name: str):
    """The sub-APIs that live in the integrations, imported when first named."""
    return _hooks.attribute(name)
