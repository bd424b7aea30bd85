"""syris on the CPU (pocl): the OpenCL kernels' first-run compile time, and propagation against numpy.

    python benchmarks/bench_syris.py --sizes 256 1024 --output benchmarks/syris-opencl.json

Each run is a fresh process that propagates a PMMA sphere (20 keV, 1 µm pixels, z = 0.2 m) the way
``tests/test_phase.py`` compares syris with numpy: exit wave (syris ``transfer``), 2D FFT, Fresnel propagator,
inverse FFT. It times syris's import and ``init``, its first propagation (which compiles the OpenCL kernels
and builds the FFT plans), its second (steady state), and ``aiax_bench.sim.propagation`` on the same wave
(numpy/scipy, float64, unpadded: the peer). The first process starts with an empty pocl kernel cache
(``POCL_CACHE_DIR`` in a new temporary folder: "cold"); the second reuses that cache ("warm"), as a user's
second session would. Needs the ``syris`` extra (``pip install 'aiax-bench[syris]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import importlib.util, json, logging, math, os, sys, time, types
start = time.perf_counter()
if importlib.util.find_spec("pkg_resources") is None:  # syris 0.3 imports it; setuptools 82 no longer ships it
    def resource_filename(module, name):
        return os.path.join(os.path.dirname(sys.modules[module].__file__), name)
    def resource_string(module, name):
        with open(resource_filename(module, name), "rb") as f:
            return f.read()
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename, stand_in.resource_string = resource_filename, resource_string
    sys.modules["pkg_resources"] = stand_in
import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array
import quantities as q
import syris
from syris import config as cfg
platform, index = next((p, i) for p in cl.get_platforms() for i, d in enumerate(p.get_devices())
                       if d.type & cl.device_type.CPU)
syris.init(platform_name=platform.name, device_index=index, loglevel=logging.WARNING)
from syris.imageprocessing import fft_2, ifft_2
from syris.physics import compute_propagator, transfer
from aiax_bench.sim.materials import refractive_index, wavelength_m
from aiax_bench.sim.propagation import fresnel_propagate, transmission
init_s = time.perf_counter() - start

n, pixel, z = int(sys.argv[1]), 1e-6, 0.2
lam = wavelength_m(20.0)
ri = refractive_index("C5H8O2", density_g_cm3=1.18, energy_kev=20.0)
y, x = (np.mgrid[:n, :n] - (n - 1) / 2) * pixel
radius = n * pixel / 4
thickness = 2 * np.sqrt(np.maximum(radius**2 - x**2 - y**2, 0.0))

def with_syris():
    u = transfer(thickness * q.m, complex(ri.delta, ri.beta), lam * q.m, check=False)
    u = fft_2(u)
    u *= compute_propagator(n, z * q.m, lam * q.m, pixel * q.m, mollified=False)
    return np.abs(ifft_2(u).get()) ** 2

def with_numpy():
    wave = transmission(ri.delta * thickness, ri.beta * thickness, wavelength_m=lam)
    return np.abs(fresnel_propagate(wave, distance_m=z, wavelength_m=lam, pixel_size_m=pixel, pad=False)) ** 2

times = {}
for name, call in (("syris_first_s", with_syris), ("syris_second_s", with_syris), ("numpy_s", with_numpy)):
    t = time.perf_counter()
    image = call()
    times[name] = time.perf_counter() - t
    if name == "syris_first_s":
        first = image
reference = with_numpy()
span = float(reference.max() - reference.min())
cfg.OPENCL.fft_plans.clear()
print(json.dumps({"n": n, "import_and_init_s": round(init_s, 3), **{k: round(v, 3) for k, v in times.items()},
                  "max_abs_difference_over_range": float(np.abs(first - reference).max() / span),
                  "device": platform.get_devices()[index].name.strip(), "platform": platform.name}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/syris-opencl.json"))
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "POCL_CACHE_DIR": cache}
            for state in ("cold", "warm"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(n)], env=env, capture_output=True,
                                     text=True, check=False)
                if out.returncode:
                    raise SystemExit(f"bench_syris: the {state} run at n={n} failed:\n{out.stderr[-2000:]}")
                rows.append({"pocl_cache": state, **json.loads(out.stdout.strip().splitlines()[-1])})
                r = rows[-1]
                print(f"n={n:5d} {state}: import+init {r['import_and_init_s']:6.2f} s, first {r['syris_first_s']:6.2f}"
                      f" s, second {r['syris_second_s']:6.3f} s, numpy {r['numpy_s']:6.3f} s")
    from importlib.metadata import version

    doc = {"benchmark": "syris OpenCL compile time and propagation against numpy", "rows": rows,
           "syris": version("syris"), "pyopencl": version("pyopencl"),
           "pocl": version("pocl-binary-distribution"), "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
           "command": f"python benchmarks/bench_syris.py --sizes {' '.join(map(str, args.sizes))} "
                      f"--output {args.output}"}
    args.output.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
