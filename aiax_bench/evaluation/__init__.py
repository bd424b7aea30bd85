"""Evaluation: metrics and the Evaluator."""

from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION, Evaluator

__all__ = ["EVALUATOR_VERSION", "Evaluator"]
