"""Coverage-guided fuzzing of ``errbound.decompress`` with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris
    .venv/bin/python tools/fuzz/atheris_harness.py -runs=1000000 -rss_limit_mb=2048 corpus/

The input is a stream without its CRC-32: the harness appends the right one, so that
libFuzzer's byte mutations reach the header and section checks and the kernels instead of
stopping at the checksum. An empty ``corpus/`` is seeded with the seed streams of
tools/fuzz/streams.py. atheris instruments errbound's Python code (the validation paths);
numba kernels run uninstrumented, but a crash in one still ends the run with the input
saved as ``crash-*``. Anything but a decoded array or an errbound error is a finding.

numba compiles a kernel from its Python bytecode, which instrumentation rewrites (numba then
fails to type the tracing calls): so errbound is imported plain, the loaded code is
instrumented (``atheris.instrument_all``), and every kernel gets its original bytecode back,
so that a specialisation first met while fuzzing still compiles.
"""

from __future__ import annotations

import gc
import sys
import zlib
from pathlib import Path

import atheris
import numba

sys.path.insert(0, str(Path(__file__).resolve().parent))

import errbound  # noqa: E402
import errbound.quantized  # noqa: E402, F401

errbound.codecs()  # the codecs load on first use: import them all now

MAX_BYTES = 64 << 20


def decode(data: bytes) -> None:
    try:
        errbound.decompress(data + zlib.crc32(data).to_bytes(4, "little"), max_bytes=MAX_BYTES)
    except errbound.ErrboundError:
        pass


def seed(corpus: Path) -> None:
    import streams

    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for name, blob in streams.seed_streams().items():
            (corpus / name).write_bytes(blob[:-4])


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            seed(Path(arg))
    kernels = [k for k in gc.get_objects() if isinstance(k, numba.core.dispatcher.Dispatcher)]
    original = [k.py_func.__code__ for k in kernels]
    atheris.instrument_all()
    for k, code in zip(kernels, original, strict=True):
        k.py_func.__code__ = code
    atheris.Setup(sys.argv, decode)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
