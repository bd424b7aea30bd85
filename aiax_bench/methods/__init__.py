"""Methods: the contract (:class:`Method`) and the entry-point registry."""

from aiax_bench.methods.base import Budget, FitContext, Method
from aiax_bench.methods.registry import ENTRY_POINT_GROUP, available_methods, get_method

__all__ = ["ENTRY_POINT_GROUP", "Budget", "FitContext", "Method", "available_methods", "get_method"]
