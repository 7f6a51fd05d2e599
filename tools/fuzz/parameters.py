"""Forged stage parameters for the decoder's fuzzing (the harness is :mod:`streams`'s).

The random mutators of :mod:`streams` change one leaf of a header at a time and the harness
decodes with ``max_bytes``, which refuses a huge declared shape before any codec sees it. The
cases here combine what those rarely do: hostile values in a stage's numeric parameters,
alone or in pairs, with the declared shape kept or as large as a header may declare, for a
decode without ``max_bytes``.
"""

from __future__ import annotations

import json
import random

import numpy as np

from errbound import stream

HOSTILE_PARAMETERS = [0, -1, 1, 3, 64, 2**53, 2**63 - 1, 1e6, 1e300, 5e-324, 0.5]
LARGEST_ARRAY_BYTES = 1 << 56  # the largest array a stream header may declare (errbound.api)


def _numeric_leaves(obj, path=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _numeric_leaves(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _numeric_leaves(value, path + (i,))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path


def parameter_cases(
    seeds: dict[str, bytes], count: int, seed: int, codec: str | None = None
) -> list[tuple[str, str, bytes]]:
    """Forgeries that the random mutators rarely compose: numeric stage parameters set to
    HOSTILE_PARAMETERS, one at a time (every such case) or two of one stage at once (drawn
    at random up to ``count`` cases in all), each with the declared shape kept or made as
    large as a header may declare (along the first axis, or spread over all of them). Only
    a decode without ``max_bytes`` reaches the huge shapes' checks: alpha 1e6 over a
    declared 2**54 values made ``sz`` raise OverflowError there (no anchor, 54 levels)."""
    rng = random.Random(seed)
    singles, pairs = [], []
    for name in sorted(n for n in seeds if codec is None or n.startswith(codec + "-")):
        header, sections = stream.unpack(seeds[name])
        payload = [(key, bytes(body)) for key, body in sections.items()]
        shapes = [list(header.shape)]
        if header.shape:
            largest = LARGEST_ARRAY_BYTES // np.dtype(header.dtype).itemsize
            ndim = len(header.shape)
            shapes += [[largest] + [1] * (ndim - 1), [int(largest ** (1 / ndim))] * ndim]

        def forged(index, changes, shape, header=header, payload=payload):
            copy = stream.Header(**{**header.__dict__, "stages": json.loads(json.dumps(header.stages))})
            copy.shape = tuple(shape)
            for path, value in changes:
                _set_leaf(copy.stages[index]["params"], path, value)
            return stream.pack(copy, payload)

        for index, record in enumerate(header.stages):
            leaves = list(_numeric_leaves(record["params"]))
            for path in leaves:
                for value in HOSTILE_PARAMETERS:
                    for shape in shapes:
                        singles.append((name, "parameter", (index, ((path, value),), shape, forged)))
            for a, b in ((a, b) for i, a in enumerate(leaves) for b in leaves[i + 1 :]):
                for va in HOSTILE_PARAMETERS:
                    for vb in HOSTILE_PARAMETERS:
                        for shape in shapes:
                            pairs.append((name, "parameters", (index, ((a, va), (b, vb)), shape, forged)))
    picked = singles + rng.sample(pairs, max(0, min(len(pairs), count - len(singles))))
    return [(name, kind, make(index, changes, shape)) for name, kind, (index, changes, shape, make) in picked]


def _set_leaf(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
