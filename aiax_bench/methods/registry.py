"""Method registry: the ``aiax_bench.methods`` entry-point group, plus ``file.py:Class`` specs."""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from aiax_bench.errors import InputError, UnknownNameError
from aiax_bench.methods.base import Method

__all__ = ["ENTRY_POINT_GROUP", "available_methods", "get_method"]

ENTRY_POINT_GROUP = "aiax_bench.methods"


def available_methods() -> dict[str, str]:
    """Registered method names and the ``module:Class`` they point to (nothing imported)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _check_class(obj: object, origin: str) -> type[Method]:
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise InputError(origin, f"is {obj!r}", "expected a subclass of aiax_bench.methods.Method")
    return obj


def _from_file(spec: str) -> type[Method]:
    path_text, _, class_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"method file {path}", "does not exist", "pass path/to/file.py:ClassName")
    module_spec = importlib.util.spec_from_file_location(f"aiax_user_method_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    # dataclasses (a method's Config) look their module up in sys.modules while the class is made.
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, class_name):
        raise InputError(f"method file {path}", f"defines no {class_name!r}",
                         "pass path/to/file.py:ClassName with a class defined in that file")
    return _check_class(getattr(module, class_name), spec)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``, or loaded from ``path/to/file.py:ClassName``."""
    if ".py:" in name:
        return _from_file(name)
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise UnknownNameError("method", name, list(available_methods()),
                               "see `aiax-bench methods`, or pass path/to/file.py:ClassName")
    return _check_class(matches[0].load(), f"entry point {name!r}")
