"""aiax-bench: datasets, reference methods and one evaluation harness for AI in X-ray tomography."""

from aiax_bench.version import __version__

__all__ = ["__version__", "load"]


def load(ref: str, *, profile: str | None = None, build: bool = True):
    """Open a dataset version, building it from its recipe on first use.

    Parameters
    ----------
    ref : str
        ``name`` (latest version) or ``name@version``, e.g. ``"foam@1.0"``.
    profile : str, optional
        Size profile (``tiny``, ``small``, ``large``); the version's default if omitted.
    build : bool
        Build the store from its recipe when it is not in the cache yet.
    """
    from aiax_bench.data.loader import load as _load

    return _load(ref, profile=profile, build=build)
