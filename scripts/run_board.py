"""Re-run the leaderboard: evaluate, submit and verify every planned entry, resumably.

Run it from a clean checkout (verification records the commit that re-ran each
entry and refuses uncommitted code)::

    python scripts/run_board.py --workdir board-run [--only foam@2.0] [--methods tv] [--workers 2] [--copy-to DIR]

Every planned entry is evaluated (all its seeds), submitted and verified by a
second run that trains again; an entry already verified on the board is
skipped, and a finished evaluation is reused, so an interrupted run resumes
where it stopped. Each worker process runs one entry at a time on one torch
thread (``--workers 2`` on two cores). ``--copy-to`` copies every verified
entry and its re-run record into another board folder as it finishes.

The plan below is the board: the classical baselines (ramp FBP as the named
reference row, FBP, SIRT and TV tuned on the validation volumes for each
protocol), every learned enhancement method with three seeds, and the
segmentation methods under the annotated-5 protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CODE_URL = "https://github.com/aiax-bench/aiax-bench/tree/main/aiax_bench/baselines"
AUTHORS = "aiax-bench contributors"
SEEDS = (0, 1, 2)
#: Learned methods train for a fixed number of steps: a wall-clock cap would make the result depend on the load.
NO_TIME_CAP = ("max_seconds=null",)


@dataclass(frozen=True)
class Planned:
    """One entry of the board."""

    name: str
    method: str
    dataset: str
    split: str
    config: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    annotated: int | None = None
    train_splits: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9.]+", "-", f"{self.dataset}-{self.split}-{self.name}".lower()).strip("-")


def _enhancement(dataset: str, split: str) -> list[Planned]:
    rows = [Planned("FBP (ramp)", "fbp-ramp", dataset, split)]
    for tune, label in (("reference", "reference-tuned"), ("self", "self-tuned")):
        rows += [Planned(f"FBP ({label})", "fbp", dataset, split, (f"tune={tune}",)),
                 Planned(f"SIRT ({label})", "sirt", dataset, split, (f"tune={tune}",)),
                 Planned(f"TV ({label})", "tv", dataset, split, (f"tune={tune}",))]
    rows += [Planned("MS-D net (depth 20, CPU preset)", "msdnet", dataset, split, NO_TIME_CAP, SEEDS),
             Planned("U-Net (FBPConvNet, CPU preset)", "unet", dataset, split, NO_TIME_CAP, SEEDS),
             Planned("Noise2Inverse (CPU preset)", "noise2inverse", dataset, split, NO_TIME_CAP, SEEDS),
             Planned("Noise2Noise (CPU preset)", "noise2noise", dataset, split, NO_TIME_CAP, SEEDS),
             Planned("TomoGAN (CPU preset)", "tomogan", dataset, split, NO_TIME_CAP, SEEDS)]
    return rows


def _segmentation(dataset: str) -> list[Planned]:
    rows = [Planned("Multi-Otsu threshold", "threshold", dataset, "reference", annotated=5),
            # What a user with five annotated slices does without a network: thresholds fitted to them.
            Planned("Thresholds fitted to the annotated slices", "threshold", dataset, "reference",
                    ("thresholds=labels",), annotated=5)]
    for variant in ("2d", "2.5d", "3d"):
        rows.append(Planned(f"Segmentation U-Net {variant.upper()} (CPU preset)", "unet-seg", dataset, "reference",
                            (f"variant={variant}", *NO_TIME_CAP), SEEDS, annotated=5))
    return rows


MOUSE_ANGLES = ("30proj", "60proj", "90proj", "120proj", "150proj")


def _mouse(dataset: str = "mouse@1.0") -> list[Planned]:
    """The biomedical users' two tasks: denoising the fewest angles (their tanh U-Net, trained on that split
    or on the mixture of every number of angles) and tumour segmentation scored by Dice per size stratum."""
    tanh = ("activation=tanh", *NO_TIME_CAP)
    rows = [Planned("FBP (ramp)", "fbp-ramp", dataset, "30proj"),
            Planned("FBP (reference-tuned)", "fbp", dataset, "30proj", ("tune=reference",)),
            Planned("U-Net, tanh (CPU preset)", "unet", dataset, "30proj", tanh, SEEDS),
            Planned("U-Net, tanh, mixed angles (CPU preset)", "unet", dataset, "30proj", tanh, SEEDS,
                    train_splits=MOUSE_ANGLES)]
    # What a user without a network does: intensity intervals fitted to the training labels, after smoothing.
    rows.append(Planned("Intensity intervals fitted to the labels", "threshold", dataset, "reference",
                        ("thresholds=bayes", "smoothing=1.0", "preset=clean")))
    rows.append(Planned("Segmentation U-Net 2D (CPU preset)", "unet-seg", dataset, "reference", NO_TIME_CAP, SEEDS))
    rows.append(Planned("Segmentation U-Net 2D, size-stratified crops (CPU preset)", "unet-seg", dataset,
                        "reference", ("lesion_crops=0.5", *NO_TIME_CAP), SEEDS))
    return rows


def _phase_contrast(dataset: str, splits: tuple[str, ...]) -> list[Planned]:
    """Propagation-based phase contrast: plain FBP, Paganin + FBP, and a U-Net on each distance (or beam)."""
    rows = []
    for split in splits:
        rows += [Planned("FBP (ramp)", "fbp-ramp", dataset, split),
                 Planned("FBP (reference-tuned)", "fbp", dataset, split, ("tune=reference",)),
                 Planned("Paganin + FBP (reference-tuned)", "fbp", dataset, split, ("tune=reference", "paganin=true")),
                 Planned("U-Net (FBPConvNet, CPU preset)", "unet", dataset, split, NO_TIME_CAP, SEEDS)]
    return rows


PLAN: list[Planned] = (_enhancement("foam@2.0", "100proj") + _enhancement("foam@2.0", "dose-1/16")
                       + _enhancement("foam@2.0", "50proj") + _enhancement("am-metal@2.0", "100proj")
                       + _segmentation("composite@2.0") + _mouse()
                       + _phase_contrast("foam-pc@1.0", ("pc-10cm", "pc-50cm"))
                       + _phase_contrast("foam-pc@1.1", ("pc-pink",)) + _phase_contrast("composite@2.1", ("pc-10cm",))
                       + _phase_contrast("am-metal@2.1", ("pc-1m",)))


@dataclass
class Runner:
    workdir: Path
    board: Path
    copy_to: Path | None

    def cli(self, *args: str, log: Path) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
        with open(log, "a") as fh:
            fh.write(f"$ aiax-bench {' '.join(args)}\n")
            fh.flush()
            done = subprocess.run([sys.executable, "-c", _ONE_THREAD, *args], stdout=subprocess.PIPE,
                                  stderr=fh, text=True, env=env)
            fh.write(done.stdout)
        if done.returncode != 0:
            raise RuntimeError(f"aiax-bench {' '.join(args)} failed ({done.returncode}); see {log}")
        return done.stdout

    def run(self, item: Planned) -> str:
        from aiax_bench.leaderboard.entry import entry_id
        from aiax_bench.leaderboard.schema import protocol_split

        entry = entry_id(dataset=item.dataset, profile="small",
                         split=protocol_split({"split": item.split, "annotated_slices": item.annotated,
                                               "train_splits": item.train_splits}),
                         name=item.name)
        path = self.board / "submissions" / f"{entry}.json"
        log = self.workdir / "logs" / f"{item.key}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and json.loads(path.read_text())["verification"]["status"] == "verified":
            self.copy(entry)
            return f"{entry}: verified already"
        if not path.exists():
            state = self.workdir / "results" / f"{item.key}.path"
            result = Path(state.read_text().strip()) if state.exists() else None
            if result is None or not result.exists():
                args = ["evaluate", "--method", item.method, "--dataset", item.dataset, "--split", item.split,
                        "--profile", "small", "--seeds", *map(str, item.seeds),
                        "--output", str(self.workdir / "results"),
                        "--tracking-uri", f"sqlite:///{self.workdir / 'mlflow.db'}"]
                if item.config:
                    args += ["--config", *item.config]
                if item.annotated:
                    args += ["--annotated", str(item.annotated)]
                if item.train_splits:
                    args += ["--train-splits", ",".join(item.train_splits)]
                out = self.cli(*args, log=log)
                result = Path(re.search(r"result file (\S+)", out).group(1))
                state.write_text(str(result))
            self.cli("submit", str(result), "--name", item.name, "--authors", AUTHORS, "--code-url", CODE_URL,
                     "--board", str(self.board), log=log)
        self.cli("submit", "--verify", entry, "--yes-run-code", "--board", str(self.board),
                 "--tracking-uri", f"sqlite:///{self.workdir / 'mlflow-verify.db'}", log=log)
        self.copy(entry)
        return f"{entry}: {json.loads(path.read_text())['verification']['status']}"

    def copy(self, entry: str) -> None:
        if self.copy_to is None:
            return
        for rel in (f"submissions/{entry}.json", f"verifications/{entry}.json"):
            src = self.board / rel
            if src.exists():
                (self.copy_to / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, self.copy_to / rel)


# Each evaluation runs in its own process on one torch thread (set before torch starts its pool).
_ONE_THREAD = """
import sys, torch
torch.set_num_threads(1)
sys.argv[0] = "aiax-bench"  # what the recorded command starts with
from aiax_bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="results, MLflow stores and logs")
    parser.add_argument("--board", type=Path, default=Path("leaderboard"))
    parser.add_argument("--copy-to", type=Path, default=None)
    parser.add_argument("--only", default=None, help="only planned entries whose dataset/split contains this")
    parser.add_argument("--methods", nargs="+", default=None, help="only planned entries of these methods")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    plan = [p for p in PLAN if (not args.only or args.only in f"{p.dataset}/{p.split}")
            and (not args.methods or p.method in args.methods)]
    if args.list:
        for p in plan:
            print(f"{p.dataset:14} {p.split:10} {p.method:14} seeds {len(p.seeds)}  {p.name}")
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results").mkdir(exist_ok=True)
    runner = Runner(args.workdir, args.board, args.copy_to)
    # The MLflow stores and their experiment are created once, up front: concurrent first use of a new sqlite
    # store races.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from aiax_bench.tracking import ensure_experiment

    for db in ("mlflow.db", "mlflow-verify.db"):
        ensure_experiment(f"sqlite:///{args.workdir / db}")
    failures = 0
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for item, future in [(p, pool.submit(runner.run, p)) for p in plan]:
            try:
                print(future.result(), flush=True)
            except Exception as exc:  # one failed entry does not stop the others
                failures += 1
                print(f"{item.key}: FAILED: {exc}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
