"""The same inputs give the same bytes whatever the number of threads or the CPU's code path.

A dataset rebuilt from its recipe must match its published sha256, so every
stage that makes one (projection of phantoms, acquisition, projector, FBP)
is run in fresh processes with 1, 2 and 4 threads (``OMP_NUM_THREADS`` and
``torch.set_num_threads``; more threads than cores is a valid setting too)
and their outputs are compared byte for byte. On x86-64 one more process
runs with the portable code paths of torch, MKL and OpenBLAS forced, as an
older or different CPU would pick them: a sum whose grouping follows the
thread count or the CPU's vector width shows up as a different digest. (On
a CPU with AVX-512, torch's sparse products through MKL did, until the
projector's products became compiled loops of its own; MKL's vector maths
still would, so processes that make stores select MKL's compatible path
first, as this worker does.)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small inputs that still cut the operator into several blocks of angles (100 angles,
# 32 per block) and the back projection into several pixel ranges.
_WORKER = textwrap.dedent('''
    import hashlib
    import json
    import sys

    import numpy as np
    import torch

    torch.set_num_threads(int(sys.argv[1]))

    from aiax_bench.mkl_mode import use_compatible_mkl

    use_compatible_mkl()  # first, as every build does: MKL fixes its code path at its first computation

    from aiax_bench.recon import ParallelBeamProjector, fbp, operator_nbytes
    from aiax_bench.sim import Acquisition, make_phantom, project_phantom, project_voxels, reference_angles, scan


    def digest(array):
        array = np.ascontiguousarray(array)
        return f"{array.dtype}{array.shape}:" + hashlib.sha256(array.tobytes()).hexdigest()


    rng = np.random.default_rng(0)
    n, angles = 40, reference_angles(100)
    projector = ParallelBeamProjector(n, angles, device="cpu")
    streamed = ParallelBeamProjector(n, angles, device="cpu", max_bytes=operator_nbytes(n, 30))
    x = rng.random((12, n, n), dtype=np.float32)
    y = rng.standard_normal((12, angles.size, n)).astype(np.float32)
    out = {
        "forward": digest(projector.forward(x)),
        "backward": digest(projector.backward(y)),
        "backward streamed": digest(streamed.backward(y)),
        "fbp ramp": digest(fbp(y, projector=projector)),
        "fbp hann": digest(fbp(y, projector=projector, filter="hann")),
    }
    foam = make_phantom("foam", size=32, seed=1)
    out["project_phantom (analytic)"] = digest(project_phantom(foam, reference_angles(60)))
    composite = make_phantom("composite", size=32, seed=3, fibre_radius=1.5, fibre_length=24.0,
                             pore_radius=(1.0, 2.0))
    out["project_voxels"] = digest(project_voxels(composite, reference_angles(70), angle_batch=32, device="cpu"))
    acquisition = Acquisition(n_angles=20, n_reference=60, photons=1e4, binning=2, continuous_steps=2,
                              ring_sigma=0.01)
    sino, used = scan(foam, acquisition, rng=np.random.default_rng(5))
    out["scan"] = digest(sino)
    out["scan fbp"] = digest(fbp(sino, used))
    print(json.dumps(out))
''')

#: What an older or different x86-64 CPU would run: torch's kernels without AVX2, MKL's and
#: OpenBLAS's generic (pre-AVX, no FMA) kernels.
_PORTABLE_PATHS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
                   "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Prescott"}

_VARIANTS = {"1 thread": (1, {}), "2 threads": (2, {}), "4 threads": (4, {})}
if platform.machine().lower() in ("x86_64", "amd64"):
    _VARIANTS["portable code paths"] = (2, _PORTABLE_PATHS)


def _env(threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PORTABLE_PATHS}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["AIAX_BENCH_DEVICE"] = "cpu"  # a CUDA build's default device would not test the CPU code
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


@pytest.fixture(scope="module")
def digests() -> dict[str, dict[str, str]]:
    """Digests of every stage, per variant; the processes run side by side (load must not matter)."""
    procs = {name: subprocess.Popen([sys.executable, "-c", _WORKER, str(threads)], cwd=ROOT,
                                    env=_env(threads, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
             for name, (threads, extra) in _VARIANTS.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
        results[name] = json.loads(stdout.strip().splitlines()[-1])
    return results


def _differences(reference: dict[str, str], other: dict[str, str]) -> list[str]:
    return [stage for stage in reference if other.get(stage) != reference[stage]]


@pytest.mark.parametrize("variant", ["2 threads", "4 threads"])
def test_thread_count_does_not_change_the_bytes(digests, variant):
    assert _differences(digests["1 thread"], digests[variant]) == []


@pytest.mark.skipif("portable code paths" not in _VARIANTS, reason="the forced code paths are x86-64 ones")
def test_cpu_code_path_does_not_change_the_bytes(digests):
    assert _differences(digests["2 threads"], digests["portable code paths"]) == []


_PRODUCTS = textwrap.dedent('''
    import json

    import numpy as np
    import torch

    from aiax_bench.mkl_mode import compatible_mkl_active, use_compatible_mkl

    assert use_compatible_mkl()
    from aiax_bench.recon import ParallelBeamProjector
    from aiax_bench.recon._csr_kernel import csr_matmul

    rng = np.random.default_rng(7)
    projector = ParallelBeamProjector(40, np.linspace(0, np.pi, 70, endpoint=False) + 0.1, n_detector=47,
                                      det_spacing=0.9, device="cpu")
    unequal = []
    for block in projector._blocks:
        for matrix in [block.matrix, *block.matrix_t]:
            parts = (matrix.crow_indices().numpy(), matrix.col_indices().numpy(), matrix.values().numpy())
            for width in (1, 3, 8, 16, 37):
                dense = torch.as_tensor(rng.standard_normal((matrix.shape[1], width)).astype(np.float32))
                start = torch.as_tensor(rng.standard_normal((matrix.shape[0], width)).astype(np.float32))
                mkl = torch.mm(matrix, dense)
                mkl_added = torch.addmm(start, matrix, dense)
                ours = np.empty(mkl.shape, dtype=np.float32)
                csr_matmul(*parts, dense.numpy(), ours)
                ours_added = start.numpy().copy()
                csr_matmul(*parts, dense.numpy(), ours_added, accumulate=True)
                unequal += [width] * (not np.array_equal(ours, mkl.numpy()))
                unequal += [-width] * (not np.array_equal(ours_added, mkl_added.numpy()))
    print(json.dumps({"active": compatible_mkl_active(), "unequal": unequal}))
''')


def test_compiled_products_equal_mkl_compatible_path():
    """The projector's own sparse products give MKL's compatible path's bytes (the published stores'), so the
    projector may use either: products and accumulating products, several widths, forward and transposed."""
    done = subprocess.run([sys.executable, "-c", _PRODUCTS], cwd=ROOT, env=_env(2, {}), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["active"]:
        pytest.skip("torch without MKL: the projector always runs its own products")
    assert result["unequal"] == []
