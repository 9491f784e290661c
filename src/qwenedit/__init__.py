"""qwenedit: a self-hosted server for the qwen-image-edit-plus interface."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qwenedit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
