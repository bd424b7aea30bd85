"""The installed package version: a leaf module, so that any module may record it without importing the package API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiax-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
