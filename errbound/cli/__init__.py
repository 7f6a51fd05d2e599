"""The ``errbound`` command line (``errbound.cli.main``); the library never imports it."""

from .main import main

__all__ = ["main"]
