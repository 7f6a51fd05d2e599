"""Predictors: values -> quantization codes and exact unpredictable values (sz), and
Lorenzo prediction of integer codes (fz)."""
