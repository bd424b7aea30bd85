"""Shared fixtures: a tiny foam dataset built once per test session in a temporary cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import _browser
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Set before torch starts its thread pool: busy-waiting threads crawl on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: The tiny datasets of the session fixture ``data_root``.
DATA_ROOT_DATASETS = ("foam@1.0", "foam@2.0", "composite@1.0")
#: Tiny builds of one thread each started at the session's first test and run beside the others, in the order
#: the tests need them: the dataset and the test module that reads it (nothing starts unless that module was
#: collected). ``data_root``'s builds come first, when any collected test uses that fixture.
STARTED_AHEAD = {"am-metal-lab@1.0": "test_am_metal_lab", "foam@2.2": "test_artefacts",
                 "foam@3.0": "test_exact_projection", "foam@3.1": "test_foam_3_1",
                 "mouse@1.0": "test_mouse_dataset", "foam-pc@1.1": "test_phase_contrast_dataset"}


def pytest_collection_modifyitems(session, config, items):
    """Run the modules that wait for no tiny build first, then those reading ``data_root``, then each module of
    :data:`STARTED_AHEAD` in the order its build is queued: the builds then run on the core the mostly
    single-threaded tests before them leave idle, instead of being waited for. A module's tests stay together
    (module fixtures are set up once), and each group keeps its collection order."""
    waits_for = {module: 2 + rank for rank, module in enumerate(STARTED_AHEAD.values())}

    def module_of(item) -> str:
        return item.module.__name__ if getattr(item, "module", None) else ""

    rank: dict[str, int] = {}
    for item in items:
        module = module_of(item)
        own = waits_for.get(module, 1 if "data_root" in item.fixturenames else 0)
        rank[module] = max(rank.get(module, 0), own)
    items.sort(key=lambda item: rank[module_of(item)])


@pytest.fixture(scope="session")
def _data_root_dir(tmp_path_factory):
    # AIAX_BENCH_TEST_DATA keeps the tiny builds between runs (they are rebuilt when missing).
    kept = os.environ.get("AIAX_BENCH_TEST_DATA")
    return Path(kept) if kept else tmp_path_factory.mktemp("aiax-data")


@pytest.fixture(scope="session", autouse=True)
def _builds_started_ahead(request, tmp_path_factory, _data_root_dir):
    from _tiny import start_ahead, stop_started_builds

    items = [item for item in request.session.items if getattr(item, "module", None)]
    collected = {item.module.__name__ for item in items}
    ahead = [(ref, tmp_path_factory.mktemp("ahead")) for ref, module in STARTED_AHEAD.items() if module in collected]
    if any("data_root" in item.fixturenames for item in items):
        ahead[0:0] = [(ref, _data_root_dir) for ref in DATA_ROOT_DATASETS]
    start_ahead(ahead)
    yield
    stop_started_builds()


@pytest.fixture(scope="session")
def data_root(_data_root_dir):
    """A cache directory holding foam@1.0, foam@2.0 (the default) and composite@1.0 at the tiny profile (64³)."""
    from _tiny import tiny_one_thread

    from aiax_bench.data.loader import load

    root = _data_root_dir
    if os.environ.get("AIAX_BENCH_TEST_DATA"):  # the datasets are kept, trained checkpoints are not: tests train
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
    # The builds are mostly single-threaded Python: one process per dataset, one thread each, side by side
    # (their bytes do not depend on threads or processes), started ahead at the session's first test.
    for ref in DATA_ROOT_DATASETS:
        tiny_one_thread(ref, root)
    for ref in DATA_ROOT_DATASETS:
        load(ref, profile="tiny", root=root, build=False)
    return root


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
