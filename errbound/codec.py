"""The codec contract and the registry of codecs.

A codec assembles stages (``errbound.stage``); it owns no algorithm. ``encode`` turns a
C-contiguous native-endian array and an absolute bound into stage records and named byte
sections; ``decode`` turns them back. Everything around that (input checks, bound modes,
memory order, the pw_rel transform, the container) is shared and lives in ``api``.

Built-in codecs are imported on first use: ``import errbound`` loads none of them (nor
numba), and asking for one loads only its modules.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import numpy as np

from .errors import UnknownCodecError

_REGISTRY: dict[str, type[Codec]] = {}
#: built-in codecs by name: the module that registers each
BUILTIN = {
    "sz": "errbound.codecs.sz",
    "fz": "errbound.codecs.fz",
    "sperr": "errbound.codecs.sperr",
    "hlr": "errbound.codecs.hlr",
    "zfp": "errbound.codecs.zfp",
    "raw": "errbound.codecs.raw",
    "auto": "errbound.codecs.auto",
}


class Codec:
    """Base class: subclasses set ``name``, ``version`` and ``stage_names``."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    stage_names: ClassVar[tuple[str, ...]] = ()
    #: True when the codec checks every reconstructed value itself; otherwise the shared
    #: verification pass patches the points that miss the bound.
    checks_bound: ClassVar[bool] = True
    #: For a codec with ``encode_psnr`` (one that aims at a PSNR itself): whether a PSNR target
    #: is also met through a bound (the PSNR's, tightened until met), and the smaller kept.
    psnr_by_bound_too: ClassVar[bool] = False

    def __init__(self, **options):
        if options:
            raise TypeError(f"codec '{self.name}' takes no options {sorted(options)}")

    def encode(self, data: np.ndarray, eb: float) -> tuple[list[dict], list[tuple[str, bytes]]]:
        raise NotImplementedError

    def decode(
        self, stages: list[dict], sections: dict, shape: tuple[int, ...], dtype: np.dtype, eb: float
    ) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def stream_version(cls, stages: list[dict]) -> int:
        """The codec version a decoder needs for a stream with these stage records (a codec
        whose newer version added an optional stage names the older one where it is absent)."""
        return cls.version

    def __repr__(self) -> str:
        return f"<errbound codec {self.name} v{self.version}: {' -> '.join(self.stage_names)}>"


def register(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make a codec available by its name."""
    _REGISTRY[cls.name] = cls
    return cls


def get_codec(name: str) -> type[Codec]:
    """The codec class registered as ``name`` (a built-in one is imported now)."""
    if name not in _REGISTRY and isinstance(name, str) and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(set(_REGISTRY) | set(BUILTIN)))
        raise UnknownCodecError(f"unknown codec {name!r}; registered codecs: {known}") from None


def codecs() -> dict[str, type[Codec]]:
    """Registered codecs by name (each class lists its stages in ``stage_names``)."""
    for name in BUILTIN:
        get_codec(name)
    return dict(sorted(_REGISTRY.items()))


def codec_names() -> list[str]:
    """The names of the registered codecs, without importing any."""
    return sorted(set(_REGISTRY) | set(BUILTIN))
