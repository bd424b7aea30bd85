"""Acquisition studies: methods × splits × seeds through the one harness, on a dask cluster, with a report."""

from aiax_bench.study.plan import Acquisition, StudyPlan, StudyTask, acquisition_of
from aiax_bench.study.runner import StudyError, run_study

__all__ = ["Acquisition", "StudyError", "StudyPlan", "StudyTask", "acquisition_of", "run_study"]
