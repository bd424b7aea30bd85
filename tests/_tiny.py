"""Build a dataset's tiny profile in a fresh process of one thread per library, as a clean machine would.

Builds the session will need can be queued at its start (:func:`start_ahead`): they then run in the
background, a few at a time, in the order the tests need them, on the cores the single-threaded tests
leave idle, and each test waits for its own (:func:`tiny_one_thread`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_BUILD = """
import sys
from pathlib import Path
from aiax_bench.data.loader import load
print(load(sys.argv[1], profile="tiny", root=Path(sys.argv[2])).content_sha256)
"""

#: Background builds the launcher keeps running at once: more only slow each other down on two cores. (A
#: test asking for a build still queued starts it at once, beyond this.)
AHEAD_AT_ONCE = 3

_lock = threading.Lock()
#: Queued builds not started yet, in the order they are needed: (dataset, root).
_QUEUED: list[tuple[str, Path]] = []
#: Started builds no test has waited for yet: dataset -> (process, root).
_STARTED: dict[str, tuple[subprocess.Popen, Path]] = {}
_launcher: threading.Thread | None = None
_stopping = threading.Event()


#: Scheduling niceness of a build started ahead: the tests in the foreground, a browser's start among them,
#: come first, and a build a test waits for still has the cores the waiting test leaves.
AHEAD_NICENESS = 10


def _start(ref: str, root: Path, *, ahead: bool = False) -> subprocess.Popen:
    env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}}
    # Output to files, not pipes: a background build's progress bar would fill a pipe nobody reads yet and stall.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-c", _BUILD, ref, str(root)], env=env, stdout=out, stderr=err,
                               text=True, preexec_fn=(lambda: os.nice(AHEAD_NICENESS)) if ahead else None)
    process.output = (out, err)
    return process


def _read(process: subprocess.Popen) -> tuple[str, str]:
    texts = []
    for file in process.output:
        file.seek(0)
        texts.append(file.read())
        file.close()
    return texts[0], texts[1]


def _finish(process: subprocess.Popen, timeout: float) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    out, err = _read(process)
    assert process.returncode == 0 and out.split(), err[-2000:]
    return out.split()[-1]


def _launch_queued() -> None:
    while not _stopping.is_set():
        with _lock:
            running = sum(process.poll() is None for process, _ in _STARTED.values())
            while _QUEUED and running < AHEAD_AT_ONCE:
                ref, root = _QUEUED.pop(0)
                _STARTED[ref] = (_start(ref, root, ahead=True), root)
                running += 1
            if not _QUEUED:
                return
        time.sleep(0.5)


def start_ahead(builds: list[tuple[str, Path]]) -> None:
    """Queue ``(dataset, root)`` tiny builds, in the order the tests need them, to run in the background."""
    global _launcher
    with _lock:
        _QUEUED.extend(builds)
    _stopping.clear()
    _launcher = threading.Thread(target=_launch_queued, name="tiny-builds-ahead", daemon=True)
    _launcher.start()


def stop_started_builds() -> None:
    """Stop the queued and started builds no test waited for (a run of a few tests)."""
    _stopping.set()
    if _launcher is not None:
        _launcher.join()
    with _lock:
        _QUEUED.clear()
        for process, _ in _STARTED.values():
            if process.poll() is None:
                process.kill()
            process.wait()
            _read(process)
        _STARTED.clear()


def tiny_one_thread(ref: str, root: Path, *, timeout: float = 600) -> tuple[Path, str]:
    """``ref``'s tiny profile built in a process of one thread per library: the build started ahead if there
    is one (in its root; one still queued is taken out of the queue and started now), else built now into
    ``root``; the root and the content sha256."""
    with _lock:
        queued = next((item for item in _QUEUED if item[0] == ref), None)
        if queued is not None:
            _QUEUED.remove(queued)
            root = queued[1]
            process = _start(ref, root)
        elif ref in _STARTED:
            process, root = _STARTED.pop(ref)
        else:
            process = _start(ref, root)
    return root, _finish(process, timeout)
