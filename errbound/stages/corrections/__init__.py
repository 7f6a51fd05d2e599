"""Corrections: exact values where a reconstruction misses the bound."""
