"""Pipeline stages, grouped by kind. A codec (``errbound.codecs``) assembles them.

- ``predictors``: values -> quantization codes (+ exact unpredictable values): multilevel
  interpolation and Lorenzo for ``sz``, Lorenzo on integer codes for ``fz``.
- ``decompositions``: the array as a sum of simpler parts: the CDF 9/7 wavelet (``sperr``),
  low-rank tiles (``hlr``).
- ``quantizers``: values -> integers on a grid (``fz``'s prequantization).
- ``coders``: entropy and lossless coders: Huffman, bit shuffle, SPECK, zfp, zstd, and the
  bit I/O they share.
- ``transforms``: reversible changes of the data before coding: pw_rel's log transform,
  sperr's conditioning, hlr's cluster order and tensor view.
- ``corrections``: exact values for the points a reconstruction misses: patches, sperr's
  outlier coder, hlr's corrections.

Each stage module defines its :class:`errbound.stage.Stage` (name, version, parameters)
beside its numba kernels, and its CUDA source (``*.cu``) where it has a GPU twin.
"""
