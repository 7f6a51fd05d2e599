"""Reversible transforms applied before coding: pw_rel log magnitudes, sperr conditioning,
hlr cluster order and tensor view."""
