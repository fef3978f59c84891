"""fluxclaw: Flux 2 images through RunAPI, from Python, a terminal and OpenClaw."""

from fluxclaw._version import __version__

__all__ = ["__version__"]
