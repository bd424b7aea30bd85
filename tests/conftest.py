"""Shared fixtures: a tiny foam dataset built once per test session in a temporary cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import _browser
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Set before torch starts its thread pool: busy-waiting threads crawl on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: Tiny builds of one thread each, long enough to start at the session's first test, beside the others: the
#: dataset and the test module that reads it (nothing starts unless that module was collected).
STARTED_AHEAD = {"foam-pc@1.1": "test_phase_contrast_dataset"}


@pytest.fixture(scope="session", autouse=True)
def _builds_started_ahead(request, tmp_path_factory):
    from _tiny import start_tiny_one_thread, stop_started_builds

    collected = {item.module.__name__ for item in request.session.items if getattr(item, "module", None)}
    for ref, module in STARTED_AHEAD.items():
        if module in collected:
            start_tiny_one_thread(ref, tmp_path_factory.mktemp("ahead"))
    yield
    stop_started_builds()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A cache directory holding foam@1.0, foam@2.0 (the default) and composite@1.0 at the tiny profile (64³)."""
    from aiax_bench.data.loader import load

    # AIAX_BENCH_TEST_DATA keeps the tiny builds between runs (they are rebuilt when missing).
    kept = os.environ.get("AIAX_BENCH_TEST_DATA")
    root = Path(kept) if kept else tmp_path_factory.mktemp("aiax-data")
    if kept:  # the datasets are kept, trained checkpoints are not: tests expect to train
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
    refs = ("foam@1.0", "foam@2.0", "composite@1.0")
    # The builds are mostly single-threaded Python: one process per dataset, one thread each, side by side
    # (their bytes do not depend on threads or processes).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    builds = [subprocess.Popen([sys.executable, "-c", _BUILD, ref, str(root)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for ref in refs]
    for ref, build in zip(refs, builds, strict=True):
        _, err = build.communicate()
        assert build.returncode == 0, f"building {ref} tiny failed: {err[-2000:]}"
    for ref in refs:
        load(ref, profile="tiny", root=root, build=False)
    return root


_BUILD = """
import sys
import torch
from pathlib import Path
from aiax_bench.data.loader import load
torch.set_num_threads(1)
load(sys.argv[1], profile="tiny", root=Path(sys.argv[2]))
"""


@pytest.fixture(scope="session")
def tiny_v2(data_root):
    """foam@2.0 (the default version: independent noise, ``clean``) at the tiny profile."""
    from aiax_bench.data.loader import load

    return load("foam@2.0", profile="tiny", root=data_root, build=False)


@pytest.fixture
def tiny_env(data_root, monkeypatch):
    """Point AIAX_BENCH_DATA at the session's tiny dataset cache."""
    monkeypatch.setenv("AIAX_BENCH_DATA", str(data_root))
    return data_root


@pytest.fixture(scope="session")
def tiny_dataset(data_root):
    from aiax_bench.data.loader import load

    return load("foam@1.0", profile="tiny", root=data_root, build=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a training test module: on shared cores two threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Headless Chromium for the page tests (skipped, saying why, where there is none).
@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _browser.find_chromium()
    if binary is None:
        pytest.skip("no Chromium found: install Debian's chromium package (`apt-get install -y chromium`) "
                    "or set AIAX_BENCH_CHROMIUM to run the browser checks of the leaderboard page")
    return binary


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    instance = _browser.Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield instance
    instance.close()


@pytest.fixture
def board(tmp_path, monkeypatch):
    """An empty leaderboard folder, and an empty dataset cache (only the registry vouches for hashes)."""
    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "repo" / "leaderboard"
    folder.mkdir(parents=True)
    return folder
