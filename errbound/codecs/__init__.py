"""The built-in codecs. Each assembles stages from ``errbound.stages``; a codec with several
files (its policy, its GPU pipeline) has a package of its own. ``errbound.codec`` imports
them on first use."""
