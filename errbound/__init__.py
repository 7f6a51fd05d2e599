"""errbound: error-bounded lossy compression of float32/float64 arrays.

    blob = errbound.compress(array, codec="sz", rel=1e-3)
    restored = errbound.decompress(blob)      # every |array - restored| <= the bound
"""

from . import codecs as _codecs  # noqa: F401  (registers the built-in codecs)
from . import hdf5  # noqa: F401  (registers the HDF5 filter now, or when h5py is first imported)
from .api import compress, decompress, info
from .codec import Codec, codecs, get_codec
from .errors import (
    BoundError,
    CodecOptionError,
    CorruptStreamError,
    ErrboundError,
    UnknownCodecError,
    UnsupportedInputError,
    UnsupportedStreamError,
)
from .tune import tune

__version__ = "0.2.0"

__all__ = [
    "compress", "decompress", "info", "tune", "codecs", "get_codec", "Codec",
    "ErrboundError", "BoundError", "UnsupportedInputError", "UnknownCodecError", "CodecOptionError",
    "CorruptStreamError", "UnsupportedStreamError", "__version__",
]
