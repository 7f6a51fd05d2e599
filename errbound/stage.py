"""The stage contract: what one step of a codec's pipeline stores about itself in a stream.

A stage has a ``name`` and a ``version`` and a few parameters. Its record in the stream
header is ``{"name", "version", "params"}``; the stage writes it (:meth:`Stage.record`) and
reads it back (:meth:`Stage.load`), so a codec never builds another stage's record and a
stream describes itself. Every stage class is registered by name when it is defined
(:func:`stages`), which lets tests check that every stage is covered by the stored stream
fixtures.

Most stages are dataclasses: their fields are their parameters, in field order, and every
field must be present in a record (a stage lists the ones an older writer may have left out
in ``optional``, and takes their defaults). ``__post_init__`` converts and checks values;
whatever it raises (ValueError, TypeError, KeyError) while a stream is read becomes a
:class:`~errbound.errors.CorruptStreamError` naming the stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from .errors import CorruptStreamError, UnsupportedStreamError

S = TypeVar("S", bound="Stage")
_REGISTRY: dict[str, type[Stage]] = {}


class Stage:
    """Base class of every pipeline stage (see the module docstring)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    #: parameters a record may lack (written by an older version): they take their defaults
    optional: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name:
            known = _REGISTRY.get(name)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"two stages are named {name!r}: {known.__qualname__} and {cls.__qualname__}")
            _REGISTRY[name] = cls

    def params(self) -> dict:
        """The parameters stored in the record (a dataclass's fields, in order)."""
        return {name: getattr(self, name) for name in _parameter_names(type(self))}

    @classmethod
    def from_params(cls: type[S], p: dict) -> S:
        """Rebuild the stage from its stored parameters."""
        if not isinstance(p, dict):
            raise TypeError("parameters must be a dict")
        values = {}
        for name in _parameter_names(cls):
            if name in p:
                values[name] = p[name]
            elif name not in cls.optional:
                raise KeyError(f"parameter {name!r} is missing")
        return cls(**values)

    def record(self) -> dict:
        """This stage's record for the stream header."""
        return {"name": self.name, "version": self.version, "params": self.params()}

    @classmethod
    def present(cls, records: list, version: int = 0) -> bool:
        """Whether the stream's stage records name this stage (at ``version`` or newer)."""
        return any(
            isinstance(r, dict) and r.get("name") == cls.name and r.get("version", 0) >= version for r in records
        )

    @classmethod
    def load(cls: type[S], records: list) -> S:
        """Rebuild this stage from its record among the stream's stage records."""
        for rec in records:
            if isinstance(rec, dict) and rec.get("name") == cls.name:
                if int(rec.get("version", 0)) > cls.version:
                    raise UnsupportedStreamError(
                        f"stage '{cls.name}' version {rec['version']} is newer than this errbound reads ({cls.version})"
                    )
                try:
                    stage = cls.from_params(rec["params"])
                except (KeyError, TypeError, ValueError, OverflowError) as exc:
                    raise CorruptStreamError(f"stage '{cls.name}' has invalid parameters: {exc}") from None
                stage.loaded_from(int(rec.get("version", 0)))
                return stage
        raise CorruptStreamError(f"stream lacks the '{cls.name}' stage")

    def loaded_from(self, version: int) -> None:
        """Called with the version of the record the stage was loaded from: a stage whose
        newer version allows more in its sections (and an older one must refuse it) keeps it."""


_PARAMETER_NAMES: dict[type, tuple[str, ...]] = {}


def _parameter_names(cls: type) -> tuple[str, ...]:
    """A stage class's parameters: its dataclass fields in order (none for a plain class),
    found once per class (``dataclasses.fields`` cost a microsecond a record, on every
    stage of every small chunk's compress and decompress)."""
    names = _PARAMETER_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
        _PARAMETER_NAMES[cls] = names
    return names


def which(records: list, *classes: type[S]) -> type[S]:
    """The one of ``classes`` whose stage the records name (e.g. which predictor was used);
    records that name two of them are refused (with the first taken, an extra Lorenzo record
    before a stream's interpolation record decoded other numbers)."""
    named = {rec.get("name") for rec in records if isinstance(rec, dict)}
    found = [cls for cls in classes if cls.name in named]
    if len(found) > 1:
        raise CorruptStreamError(f"stream names more than one of the stages {tuple(c.name for c in found)}")
    if found:
        return found[0]
    raise CorruptStreamError(f"stream lacks any of the stages {tuple(c.name for c in classes)}")


def stages() -> dict[str, type[Stage]]:
    """Every stage class defined so far, by name."""
    return dict(sorted(_REGISTRY.items()))
