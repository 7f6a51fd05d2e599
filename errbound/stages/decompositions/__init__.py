"""Decompositions: the array as a sum of simpler parts (CDF 9/7 wavelet, low-rank tiles)."""
