"""Entropy and lossless coders: Huffman, bit shuffle, SPECK, zfp, zstd, and their bit I/O."""
