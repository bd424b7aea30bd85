"""One sample of a dataset built at a given size, or a whole profile: wall time and peak resident memory.

    python benchmarks/bench_build.py --dataset foam@2.0 --sizes 128 256 [--seed 101] \\
        [--output benchmarks/build-foam-2.0.json]
    python benchmarks/bench_build.py --dataset foam@1.0 --profile small --before d2ec3bd \\
        --output benchmarks/build-foam-1.0-small.json
    python benchmarks/bench_build.py --dataset foam@2.0 --sizes 512 --sample-rss 20 \\
        --output benchmarks/build-foam-2.0-512.json
    python benchmarks/bench_build.py --dataset foam@3.0 --profile small --workers 2 --versus foam@2.0 \\
        --output benchmarks/build-foam-3.0-small.json
    python benchmarks/bench_build.py --dataset foam@3.1 --profile small --workers 2 --versus foam@2.0 \\
        --rounds 3 --output benchmarks/build-foam-3.1-small-rounds.json
    python benchmarks/bench_build.py --dataset foam@3.0 --profile large --discard-samples \\
        --progress large.jsonl --workdir DIR --output benchmarks/build-foam-3.0-large.json

Each size builds a profile of one training sample (the recipe's phantom,
acquisition and every split, as ``datasets build`` does) in a fresh process,
whose peak resident memory (``ru_maxrss``) and wall time are recorded, with
the bytes of that sample's arrays: what a build held at once before it wrote
each array as soon as it was made. A full profile repeats the sample's work
for each of its samples, so its time is about the samples times this one.

``--versus DATASET`` (with ``--profile``) compares two versions of a dataset instead of two commits: the
other dataset's profile is built with today's code in the same run (serially, and with ``--workers N`` also
with N workers, as is the dataset's own), every row's ``speedup`` against the other one built serially.
``--rounds R`` builds the compared pair (the dataset with its workers, the other one serially) R times in all,
the other one first in even rounds; each row's ``round`` says which, and its ``speedup`` is against the other
dataset of its round.

With ``--profile`` the whole profile is built instead, in a fresh process,
with today's code and, given ``--before``, with the code of that git commit
(a temporary worktree), one after the other in the same run; both stores'
content sha256 are recorded, and whether they agree. ``--workers N`` builds
today's with N sample processes (``build_store(..., workers=N)``) and also
records the largest worker's peak memory; the earlier commit's builds serially.

``--discard-samples`` (with ``--profile``, ``--progress FILE`` and ``--workdir``) builds a profile larger than
the disk: its samples one after another in one process, as a serial build does, each removed once its arrays are
hashed. Each sample's time, peak memory so far and size on disk go to the progress file as it ends, and a stopped
run resumes from there; the store's content sha256 comes from the arrays' sha256 as a build's does.

A one-sample run also records each split's own seconds (``split_seconds``: the
degradation, its projections and its reconstruction; parallel-beam recipes),
the rest of the time being the phantom, the reference scan and the writes.

``--sample-rss S`` also records the child's resident memory every S seconds
(``rss_mb``: seconds since the start, MB), to see which step holds the peak.
``--progress FILE`` appends, as JSON lines while the run goes, each split's
start and end and each phantom, projection, FBP and noise draw as it ends, with the
peak resident memory so far, and each memory sample: a run of hours stopped
early still leaves what it measured, and a peak between two samples is placed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import copy, dataclasses, json, resource, sys, tempfile, time
began = time.perf_counter()
from pathlib import Path
import zarr
from aiax_bench.data import build
from aiax_bench.data.build import build_store
from aiax_bench.data.registry import resolve
from aiax_bench.provenance import peak_memory_mb
split_seconds = {}
def note(**fields):  # a progress line: when it was written and the peak resident memory so far
    print(json.dumps({**fields, "ended_s": round(time.perf_counter() - began),
                      "peak_rss_mb_after": round(peak_memory_mb())}), file=sys.stderr, flush=True)
def timed(make):
    def run(ctx, name, params):
        start = time.perf_counter()
        print(json.dumps({"split": name, "started_s": round(start - began),
                          "peak_rss_mb_before": round(peak_memory_mb())}), file=sys.stderr, flush=True)
        try:
            return make(ctx, name, params)
        finally:
            split_seconds[name] = round(split_seconds.get(name, 0.0) + time.perf_counter() - start, 2)
            note(split=name, seconds=split_seconds[name])
    return run
for kind, make in list(build.SPLIT_KINDS.items()):  # each split's own time (parallel-beam recipes)
    build.SPLIT_KINDS[kind] = timed(make)
def logged(step, function):  # progress lines only: which step raises the peak, and when
    def run(*args, **kwargs):
        start = time.perf_counter()
        out = function(*args, **kwargs)
        note(step=step, seconds=round(time.perf_counter() - start, 2))
        return out
    return run
for step in ("make_phantom", "project_phantom", "fbp", "poisson_noise", "poisson_noise_blocks"):
    setattr(build, step, logged(step, getattr(build, step)))
spec = resolve(sys.argv[1])
recipe = copy.deepcopy(spec.recipe)
recipe["profiles"]["one"] = {"size": int(sys.argv[2]),
                             "samples": {"train": [int(sys.argv[3])], "val": [], "test": [], "ood-test": []}}
spec = dataclasses.replace(spec, recipe=recipe)
with tempfile.TemporaryDirectory(dir=sys.argv[4] or None) as folder:
    start = time.perf_counter()
    attrs = build_store(spec, "one", Path(folder) / "one.zarr", quiet=True)
    seconds = time.perf_counter() - start
    group = zarr.open_group(str(Path(folder) / "one.zarr"), mode="r")
    sample = group["samples/train-000"]
    held = sum(a.nbytes for _, a in sample.arrays()) + sum(
        a.nbytes for _, s in sample["splits"].groups() for _, a in s.arrays())
print(json.dumps({"seconds": round(seconds, 1), "sample_array_mb": round(held / 2**20),
                  "split_seconds": split_seconds,
                  "peak_rss_mb": round(peak_memory_mb())}))
"""

PROFILE_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from aiax_bench.data.build import build_store
from aiax_bench.data.registry import resolve
import aiax_bench
workers = int(sys.argv[4])
with tempfile.TemporaryDirectory(dir=sys.argv[3] or None) as folder:
    start = time.perf_counter()
    attrs = build_store(resolve(sys.argv[1]), sys.argv[2], Path(folder) / "store.zarr", quiet=True,
                        **({"workers": workers} if workers > 1 else {}))
    seconds = time.perf_counter() - start
row = {"seconds": round(seconds, 1), "content_sha256": attrs["content_sha256"],
       "imported_from": str(Path(aiax_bench.__file__).resolve().parent.parent),
       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
if workers > 1:
    row.update(workers=workers,
               worker_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
print(json.dumps(row))
"""


#: ``--discard-samples``: the profile's samples one after another in one process, as a serial build makes them,
#: each removed from disk once its arrays' sha256 are known (a 512³ sample writes about 10 GB). Samples already
#: in the progress file are skipped, so a stopped run resumes; the store's content sha256 comes from the arrays'
#: sha256 as a build's does.
DISCARD_CHILD = """
import json, shutil, sys, time
from pathlib import Path
import zarr
from tqdm.auto import tqdm
from aiax_bench.data.build import _SampleBuilder, sample_ids
from aiax_bench.data.registry import resolve
from aiax_bench.mkl_mode import use_compatible_mkl
from aiax_bench.data.store import stored_bytes
from aiax_bench.provenance import peak_memory_mb
spec, profile, progress = resolve(sys.argv[1]), sys.argv[2], Path(sys.argv[4])
done = {json.loads(line)["sample"] for line in progress.read_text().splitlines()} if progress.exists() else set()
use_compatible_mkl()
builder = _SampleBuilder(spec, profile)
root = zarr.open_group(str(Path(sys.argv[3]) / "discarded.zarr"), mode="w")
root.create_group("samples")
with tqdm(disable=True) as silent:
    for sample in sample_ids(spec, profile):
        if sample[0] in done:
            continue
        start = time.perf_counter()
        hashes, _ = builder.build(root, *sample, silent)
        seconds = time.perf_counter() - start
        folder = Path(sys.argv[3]) / "discarded.zarr" / "samples" / sample[0]
        disk = stored_bytes(folder)
        shutil.rmtree(folder)
        with progress.open("a") as log:
            log.write(json.dumps({"sample": sample[0], "seed": sample[2], "seconds": round(seconds, 1),
                                  "peak_rss_mb": round(peak_memory_mb()), "disk_bytes": disk,
                                  "hashes": hashes}) + "\\n")
shutil.rmtree(Path(sys.argv[3]) / "discarded.zarr")
"""


def _discarded_profile_row(args: argparse.Namespace) -> dict:
    """``--discard-samples``: the profile built sample by sample (resuming from ``--progress``); its time is the
    samples' sum, its peak the largest process's, its content sha256 the store's."""
    from aiax_bench.data.build import sample_ids
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.store import digest_of_hashes

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DISCARD_CHILD, args.dataset, args.profile, args.workdir,
                           str(args.progress)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    records = [json.loads(line) for line in args.progress.read_text().splitlines()]
    spec = resolve(args.dataset)
    if sorted(r["sample"] for r in records) != sorted(s[0] for s in sample_ids(spec, args.profile)):
        raise SystemExit(f"{args.progress}: the samples recorded are not the profile's")
    hashes = {key: value for record in records for key, value in record["hashes"].items()}
    return {"code": "today", "profile": args.profile, "dataset": args.dataset, "discarded": True,
            "seconds": round(sum(r["seconds"] for r in records), 1),
            "this_run_wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
            "samples": [{k: r[k] for k in ("sample", "seed", "seconds", "peak_rss_mb", "disk_bytes") if k in r}
                        for r in records],
            "content_sha256": digest_of_hashes(hashes)}


def _run(code: str, *args: str, source: Path | None = None) -> dict:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=source or HERE.parent)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if source is not None and Path(row.pop("imported_from")) != source.resolve():
        raise SystemExit(f"the build did not run the code of {source}")
    row.pop("imported_from", None)  # a path of this machine: not for the committed JSON
    return row


def _sampled_run(argv: list[str], every: float,
                 progress: Path | None = None) -> tuple[subprocess.CompletedProcess, list[list[float]]]:
    """Run ``argv`` and read its resident memory from ``/proc`` every ``every`` seconds (Linux); with
    ``progress``, the samples and the child's own progress lines are also appended there as they come."""
    timeline: list[list[float]] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        start = time.perf_counter()
        # A reader of its own: the child writes through the same open file, so seeking err would move its offset.
        reader = open(f"/proc/self/fd/{err.fileno()}") if progress is not None else None
        while True:
            running = child.poll() is None  # read once more after the exit: the last lines come then
            sampled = False
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
                timeline.append([round(time.perf_counter() - start), round(kb / 1024)])
                sampled = True
            except (OSError, StopIteration):
                pass
            if reader is not None:
                lines = [line for line in reader.readlines() if line.startswith("{")]  # the child's progress lines
                with progress.open("a") as log:
                    log.writelines(lines)
                    if sampled:
                        log.write(json.dumps({"t_s": timeline[-1][0], "rss_mb": timeline[-1][1]}) + "\n")
            if not running:
                break
            try:
                child.wait(timeout=every)
            except subprocess.TimeoutExpired:
                pass
        if reader is not None:
            reader.close()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, child.returncode, out.read(), err.read()), timeline


def _profile_rows(args: argparse.Namespace) -> list[dict]:
    if args.discard_samples:
        rows = [_discarded_profile_row(args)]
        print(json.dumps({k: v for k, v in rows[0].items() if k != "samples"}), flush=True)
        return _checked_against_registry(rows, args)
    rows = [{"code": "today", "profile": args.profile,
             **_run(PROFILE_CHILD, args.dataset, args.profile, args.workdir or "", str(args.workers))}]
    print(json.dumps(rows[-1]), flush=True)
    if args.versus:
        _versus_rows(args, rows)
    elif args.before:
        from _worktree import commit_tree

        with commit_tree(args.before) as tree:
            rows.append({"code": args.before, "profile": args.profile,
                         **_run(PROFILE_CHILD, args.dataset, args.profile, args.workdir or "", "1", source=tree)})
        print(json.dumps(rows[-1]), flush=True)
        rows[0]["same_content_as_before"] = rows[0]["content_sha256"] == rows[1]["content_sha256"]
        rows[0]["speedup"] = round(rows[1]["seconds"] / rows[0]["seconds"], 2)
    return _checked_against_registry(rows, args)


def _checked_against_registry(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    from aiax_bench.data.registry import resolve

    for row in rows:
        registered = (resolve(row.get("dataset", args.dataset)).content_sha256 or {}).get(args.profile)
        if registered:
            row["matches_registry"] = row["content_sha256"] == registered
    return rows


def _versus_rows(args: argparse.Namespace, rows: list[dict]) -> None:
    """``--versus``: the other dataset's profile, and each dataset serially where ``--workers`` is given, all with
    today's code in this run; every row's ``speedup`` is the other dataset's serial time in the same round over its
    own. ``--rounds R`` builds the dataset (with its workers) and the other one (serially) R - 1 more times."""
    plan = ([(args.dataset, 1)] if args.workers > 1 else []) + [(args.versus, 1)] + (
        [(args.versus, args.workers)] if args.workers > 1 else [])
    # Further rounds build the compared pair again, the other one first in every second round, so that a steady
    # drift of the machine's speed during the run pushes the rounds' ratios apart instead of all one way.
    pair = [(args.dataset, args.workers), (args.versus, 1)]
    rounds = [plan] + [pair[::-1] if k % 2 == 0 else pair for k in range(2, args.rounds + 1)]
    rows[0].update(dataset=args.dataset, round=1)
    for k, round_plan in enumerate(rounds, start=1):
        for dataset, workers in round_plan:
            rows.append({"code": "today", "profile": args.profile, "dataset": dataset, "round": k,
                         **_run(PROFILE_CHILD, dataset, args.profile, args.workdir or "", str(workers))})
            print(json.dumps(rows[-1]), flush=True)
    for k in range(1, args.rounds + 1):
        in_round = [row for row in rows if row["round"] == k]
        baseline = next(row["seconds"] for row in in_round if row["dataset"] == args.versus and "workers" not in row)
        for row in in_round:
            row["speedup"] = round(baseline / row["seconds"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@2.0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--workdir", default=None, help="where the temporary stores go (default: the system's)")
    parser.add_argument("--profile", default=None, help="build this whole profile instead of one sample per size")
    parser.add_argument("--before", default=None, help="with --profile: also build it with this git commit's code")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --profile: today's build runs this many sample processes (before: one)")
    parser.add_argument("--versus", default=None, metavar="DATASET",
                        help="with --profile: also build this dataset's profile with today's code, the ratio's peer")
    parser.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="with --versus: build the compared pair R times in all, alternating")
    parser.add_argument("--sample-rss", type=float, default=None, metavar="S",
                        help="one sample per size: also record its resident memory every S seconds")
    parser.add_argument("--progress", type=Path, default=None, metavar="FILE",
                        help="with --sample-rss: append split times and memory samples here as they come")
    parser.add_argument("--discard-samples", action="store_true",
                        help="with --profile and --progress: remove each sample once hashed (a store larger than "
                             "the disk), resuming from the progress file")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.discard_samples and not (args.profile and args.progress and args.workdir):
        parser.error("--discard-samples needs --profile, --progress (its record, to resume from) and --workdir")
    if args.discard_samples and (args.versus or args.before or args.workers > 1):
        parser.error("--discard-samples builds one profile serially: no --versus, --before or --workers")
    if args.rounds < 1 or (args.rounds > 1 and not args.versus):
        parser.error("--rounds needs --versus and is at least 1")
    if args.versus and args.before:
        parser.error("--versus and --before each name the peer: give one")
    if args.progress is not None and not (args.sample_rss or args.discard_samples):
        parser.error("--progress needs --sample-rss: the lines are read while the memory is sampled")
    from aiax_bench.provenance import code_provenance

    code = code_provenance()["git_commit"][:7]  # at the start: a run of hours may outlive the commit
    rows = _profile_rows(args) if args.profile else []
    for size in [] if args.profile else args.sizes:
        argv = [sys.executable, "-c", CHILD, args.dataset, str(size), str(args.seed), args.workdir or ""]
        logged = args.progress.stat().st_size if args.progress is not None and args.progress.exists() else 0
        if args.sample_rss:
            done, timeline = _sampled_run(argv, args.sample_rss, args.progress)
        else:
            done, timeline = subprocess.run(argv, capture_output=True, text=True), []
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        row = {"size": size, **json.loads(done.stdout.strip().splitlines()[-1])}
        if timeline:
            row["rss_mb"] = timeline
        if args.progress is not None:  # the step lines, with the peak after each, join the record
            with args.progress.open("rb") as log:  # this size's lines only: the file may hold earlier runs'
                log.seek(logged)
                records = [json.loads(line) for line in log.read().decode().splitlines()]
            row["steps"] = [record for record in records if "t_s" not in record]
        print(json.dumps(row), flush=True)
        rows.append(row)
    output = args.output or HERE / f"build-{args.dataset.replace('@', '-')}.json"
    output.write_text(json.dumps({
        "benchmark": "build", "dataset": args.dataset, **({"profile": args.profile} if args.profile else
                                                          {"seed": args.seed}), "runs": rows,
        "code": code,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
