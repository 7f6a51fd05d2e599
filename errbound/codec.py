"""The codec contract and the registry of codecs.

A codec assembles stages; it owns no algorithm. ``encode`` turns a C-contiguous native-endian
array and an absolute bound into stage records (name, version, parameters) and named byte
sections; ``decode`` turns them back. Everything around that (input checks, bound modes,
memory order, the pw_rel transform, the container) is shared and lives in ``api``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .errors import CorruptStreamError, UnknownCodecError, UnsupportedStreamError

_REGISTRY: dict[str, type[Codec]] = {}


class Codec:
    """Base class: subclasses set ``name``, ``version`` and ``stage_names``."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    stage_names: ClassVar[tuple[str, ...]] = ()
    #: True when the codec checks every reconstructed value itself; otherwise the shared
    #: verification pass patches the points that miss the bound.
    checks_bound: ClassVar[bool] = True

    def __init__(self, **options):
        if options:
            raise TypeError(f"codec '{self.name}' takes no options {sorted(options)}")

    def encode(self, data: np.ndarray, eb: float) -> tuple[list[dict], list[tuple[str, bytes]]]:
        raise NotImplementedError

    def decode(self, stages: list[dict], sections: dict, shape: tuple[int, ...], dtype: np.dtype,
               eb: float) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<errbound codec {self.name} v{self.version}: {' -> '.join(self.stage_names)}>"


def register(cls: type[Codec]) -> type[Codec]:
    _REGISTRY[cls.name] = cls
    return cls


def get_codec(name: str) -> type[Codec]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownCodecError(f"unknown codec {name!r}; registered codecs: {known}") from None


def codecs() -> dict[str, type[Codec]]:
    """Registered codecs by name (each class lists its stages in ``stage_names``)."""
    return dict(sorted(_REGISTRY.items()))


class RecordOnlyStage:
    """Base of stages whose header record carries no parameters (what they need travels in
    their sections): subclasses set ``name`` and ``version``."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def params(self) -> dict:
        return {}

    @classmethod
    def from_params(cls, p: dict):
        if not isinstance(p, dict):
            raise TypeError("parameters must be a dict")
        return cls()


def stage_record(stage) -> dict:
    return {"name": stage.name, "version": stage.version, "params": stage.params()}


def load_stage(records: list[dict], cls):
    """Rebuild a stage from its record in the stream header."""
    for rec in records:
        if isinstance(rec, dict) and rec.get("name") == cls.name:
            if int(rec.get("version", 0)) > cls.version:
                raise UnsupportedStreamError(
                    f"stage '{cls.name}' version {rec['version']} is newer than this errbound reads ({cls.version})"
                )
            try:
                return cls.from_params(rec["params"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptStreamError(f"stage '{cls.name}' has invalid parameters: {exc}") from None
    raise CorruptStreamError(f"stream lacks the '{cls.name}' stage")


def find_stage(records: list[dict], names: tuple[str, ...]) -> str:
    for rec in records:
        if isinstance(rec, dict) and rec.get("name") in names:
            return rec["name"]
    raise CorruptStreamError(f"stream lacks any of the stages {names}")
