"""The integrations wing: errbound inside other software (HDF5, numcodecs/zarr) and the tuner.

Nothing in the core, the codecs or the stages imports from here; ``import errbound`` loads none
of it (``errbound._hooks`` opens the doors on first use)."""
