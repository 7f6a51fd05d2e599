"""Quantizers: values -> integers on a grid, the only lossy step of fz."""
