"""The leaderboard: submission schema, safe and concurrent writes, verification, ranking, rendering.

Result files are made up in the harness's format (no dataset is built), so
the whole file runs in seconds; the committed board is checked at the end.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.cli import main
from aiax_bench.errors import InputError, StoreError
from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION
from aiax_bench.leaderboard import rank_entries, render_html, render_markdown, render_terminal
from aiax_bench.leaderboard.rank import acquisition_saving, bootstrap_intervals, higher_is_better
from aiax_bench.leaderboard.schema import (
    expected_dataset_sha256,
    load_schema,
    scored_sample_ids,
    validate_entry,
)
from aiax_bench.leaderboard.submit import (
    build_entry,
    entry_path,
    load_entries,
    load_entry,
    load_result,
    portable_command,
    runs_from_result,
    submit,
)
from aiax_bench.leaderboard.verify import verify_entry

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers
def dataset_hash(profile: str = "tiny") -> str:
    """The hash a result must carry: the registry's if it publishes one, else a made-up one."""
    return expected_dataset_sha256("foam@1.0", profile, use_store=False) or "ab" * 32


def records(psnr: list[float], profile: str = "tiny") -> list[dict]:
    """Per-volume records like the Evaluator's: metrics, a text protocol tag, an undefined (NaN) metric."""
    from aiax_bench.data.registry import resolve

    ids = scored_sample_ids(resolve("foam@1.0"), profile)
    assert len(psnr) == len(ids)
    return [{"sample_id": sid, "evaluator_version": EVALUATOR_VERSION, "mse/reference": 4.2 ** 2 / 10 ** (p / 10),
             "psnr/reference": p, "ssim/reference": min(0.99, p / 40), "psnr/truth": p - 2.0,
             "ssim/truth": min(0.99, p / 42), "segmentation_protocol": "1.0", "porosity/rel_error_truth": 0.01,
             "dice_small/pore": float("nan") if i == 0 else 0.9, "distributions": {"diameters": [1.0, 2.0]}}
            for i, (sid, p) in enumerate(zip(ids, psnr, strict=True))]


def aggregate(recs: list[dict]) -> dict:
    """The Evaluator's aggregate: numeric keys, NaN volumes left out."""
    out = {}
    for key, value in recs[0].items():
        if isinstance(value, float):
            values = np.array([r[key] for r in recs])
            defined = values[~np.isnan(values)]
            out[key] = {"mean": float(defined.mean()) if defined.size else float("nan"),
                        "std": float(defined.std()) if defined.size else float("nan"), "n": int(defined.size)}
    return out


def fake_result(*, psnr: list[float] | None = None, seed: int = 0, profile: str = "tiny", method: str = "fbp",
                command: str | None = None, **prov) -> dict:
    """A result document exactly as ``aiax-bench evaluate`` writes it (one seed)."""
    recs = records(psnr or [21.0] * (1 if profile == "tiny" else 2), profile)
    return {
        "schema_version": 1, "method": method, "task": "enhance", "config": {"filter": None},
        "dataset": "foam@1.0", "profile": profile, "split": "100proj", "created": "2026-01-02T03:04:05+00:00",
        "metrics": aggregate(recs), "records": recs,
        "efficiency": {"train_seconds": 1.5, "inference_seconds_per_volume": 0.25, "parameters": 1234,
                       "peak_memory_mb": 600.0},
        "provenance": {"dataset": "foam@1.0", "profile": profile, "dataset_sha256": dataset_hash(profile),
                       "recipe_sha256": "39f6c0b862d0c6d586a38b7ebd6823bc7b3328774db1416ab0bd715e689775e1",
                       "dataset_source": "downloaded", "split": "100proj", "evaluator_version": EVALUATOR_VERSION,
                       "package_version": "0.1.0", "git_commit": "7b7ac77a014c64f1a04080808243a9eab379dcdc",
                       "git_dirty": False,
                       "command": command or f"aiax-bench evaluate --method {method} --split 100proj "
                                             f"--profile {profile} --seed {seed}",
                       "seed": seed, "hardware": {"cpu": "test", "cpu_count": 2}, **prov},
        "mlflow_run_id": f"run{seed}",
    }


def write(path: Path, document) -> Path:
    """Write as the harness does: Python's json, NaN included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
    return path


def entry_of(result: dict, name: str = "FBP", **options) -> dict:
    return build_entry([(result, runs_from_result(result))], name=name, authors=["A. Author"],
                       code_url="https://example.org/code", **options)


@pytest.fixture
def board(tmp_path, monkeypatch):
    """An empty leaderboard folder, and an empty dataset cache (only the registry vouches for hashes)."""
    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "repo" / "leaderboard"
    folder.mkdir(parents=True)
    return folder


def field_of(excinfo) -> str:
    return excinfo.value.field


# ------------------------------------------------------------------------------------------------- schema
def test_schema_is_valid_draft_2020_12_and_sample_ids_match_the_builder():
    import jsonschema

    from aiax_bench.data.build import sample_ids
    from aiax_bench.data.registry import resolve

    jsonschema.Draft202012Validator.check_schema(load_schema())
    spec = resolve("foam@1.0")
    for profile in spec.profiles:
        assert scored_sample_ids(spec, profile) == [s for s, part, _ in sample_ids(spec, profile) if part == "test"]


def test_submit_single_seed_result_writes_valid_portable_entry(board, tmp_path):
    work = board.parent
    method_file = work / "methods" / "mine.py"
    command = (f"aiax-bench evaluate --method {method_file}:Mine --split 100proj --profile tiny "
               f"--output {tmp_path}/results --tracking-uri sqlite:///{work}/mlflow.db")
    result = write(tmp_path / "results" / "r.json", fake_result(method="mine", command=command))
    path = submit([result], name="My method (2D/2.5D)", authors=["A. Author", "B. Author"],
                  code_url="https://example.org/code", paper="arXiv:2101.00001", board=board, base=work)
    assert path == board / "submissions" / "foam-1.0--tiny--100proj--my-method-2d-2.5d.json"
    entry = json.loads(path.read_text())
    assert entry["method_ref"] == "methods/mine.py:Mine"  # loadable again from the repository root
    assert entry["paper"] == "https://arxiv.org/abs/2101.00001"
    assert entry["seeds"] == [0] and entry["verification"] == {"status": "unverified"}
    assert entry["metrics"]["psnr/reference"]["std_over_seeds"] is None
    text = path.read_text()
    for local in (str(tmp_path), str(work), "/tmp/", str(Path.home())):
        assert local not in text, f"local path {local} leaked into the entry"
    assert "result_path" not in text
    assert "--tracking-uri sqlite:///mlflow.db" in entry["provenance"]["command"]
    assert [e["id"] for _, e in load_entries(board)] == [path.stem]


def test_records_keep_scalars_undefined_values_become_null(board, tmp_path):
    path = submit([write(tmp_path / "r.json", fake_result())], name="X", authors=["a"], code_url="https://e.org",
                  board=board)
    text = path.read_text()
    assert "NaN" not in text and "distributions" not in text  # strict JSON; per-pore data stays in MLflow
    entry = json.loads(text)
    [record] = entry["runs"][0]["records"]
    assert record["dice_small/pore"] is None and record["segmentation_protocol"] == "1.0"
    assert "dice_small/pore" not in entry["metrics"] and "segmentation_protocol" not in entry["metrics"]
    assert entry["metrics"]["porosity/rel_error_truth"]["mean"] == 0.01


def test_multi_seed_file_and_per_seed_files_make_the_same_entry(board, tmp_path):
    seeds = {0: [30.0], 1: [31.0], 2: [32.5]}
    per_seed = [fake_result(psnr=p, seed=s) for s, p in seeds.items()]
    files = [write(tmp_path / f"seed{s}.json", r) for s, r in zip(seeds, per_seed, strict=True)]
    # The multi-seed format the harness's --seeds writes: `seeds` and one `runs` item per seed.
    multi = {k: v for k, v in per_seed[0].items() if k not in ("records", "efficiency", "mlflow_run_id")}
    multi["seeds"] = list(seeds)
    multi["provenance"] = {k: v for k, v in multi["provenance"].items() if k != "seed"} | {"seeds": list(seeds)}
    multi["runs"] = [{"seed": s, "created": r["created"], "mlflow_run_id": r["mlflow_run_id"],
                      "metrics": r["metrics"], "records": r["records"], "efficiency": r["efficiency"]}
                     for s, r in zip(seeds, per_seed, strict=True)]
    multi_file = write(tmp_path / "multi.json", multi)

    a = build_entry([load_result(f) for f in files], name="A", authors=["x"], code_url="https://e.org/a")
    b = build_entry([load_result(multi_file)], name="A", authors=["x"], code_url="https://e.org/a")
    assert a["seeds"] == b["seeds"] == [0, 1, 2]
    assert a["metrics"] == b["metrics"]
    psnr = a["metrics"]["psnr/reference"]
    assert psnr["mean"] == pytest.approx(31.1666666, rel=1e-6)
    assert psnr["std_over_seeds"] == pytest.approx(np.std([30.0, 31.0, 32.5], ddof=1))
    assert psnr["n_seeds"] == 3 and psnr["n_volumes"] == 1
    validate_entry(a)
    validate_entry(b)


def test_results_of_different_configs_or_repeated_seeds_are_not_combined(tmp_path):
    r0, r1 = fake_result(seed=0), fake_result(seed=1)
    r1["config"] = {"filter": "hann"}
    with pytest.raises(InputError) as exc:
        build_entry([(r0, runs_from_result(r0)), (r1, runs_from_result(r1))], name="x", authors=["a"],
                    code_url="https://e.org")
    assert "config" in field_of(exc)
    with pytest.raises(InputError, match="repeat seeds"):
        build_entry([(r0, runs_from_result(r0)), (r0, runs_from_result(r0))], name="x", authors=["a"],
                    code_url="https://e.org")


def _bad(mutate):
    entry = entry_of(fake_result())
    mutate(entry)
    return entry


@pytest.mark.parametrize(("mutate", "field", "words"), [
    (lambda e: e.pop("name"), "field name", "missing"),
    (lambda e: e["provenance"].pop("dataset_sha256"), "field provenance.dataset_sha256", "missing"),
    (lambda e: e["runs"][0]["records"][0].pop("sample_id"), "field runs[0].records[0].sample_id", "missing"),
    (lambda e: e.update(seeds="0"), "field seeds", "type string"),
    (lambda e: e["efficiency"].update(parameters=1.5), "field efficiency.parameters", "type number"),
    (lambda e: e["runs"][0]["records"][0].update({"psnr/reference": "21"}),
     "field runs[0].records[0].psnr/reference", "expected a number"),
    (lambda e: e["runs"][0]["records"][0].update({"psnr/reference": None}),
     "field runs[0].records[0].psnr/reference", "expected a number"),
    (lambda e: e.update(authors=[]), "field authors", "invalid"),
    (lambda e: e.update(code_url="javascript:alert(1)"), "field code_url", "invalid"),
    (lambda e: e.update(surprise=1), "field surprise", "not a known field"),
    (lambda e: (e.update(dataset="nope@1.0"), e["provenance"].update(dataset="nope@1.0")), "field dataset",
     "no registered dataset"),
    (lambda e: (e.update(dataset="foam@9.9"), e["provenance"].update(dataset="foam@9.9")), "field dataset",
     "no registered dataset"),
    (lambda e: (e.update(split="7proj"), e["provenance"].update(split="7proj")), "field split", "not a split"),
    (lambda e: (e.update(profile="huge"), e["provenance"].update(profile="huge")), "field profile",
     "not a profile"),
    (lambda e: e["provenance"].update(split="dose-1/4"), "field provenance.split", "expected"),
    (lambda e: e["metrics"]["psnr/reference"].update(mean=99.0), "field metrics.psnr/reference.mean", "recomputed"),
    (lambda e: e["runs"][0]["records"][0].update(sample_id="test-007"), "field runs[0].records", "test volumes"),
    (lambda e: e["provenance"].update(dataset_sha256="0" * 64), "field provenance.dataset_sha256", "other data"),
])
def test_invalid_entries_are_rejected_naming_the_field(board, mutate, field, words):
    if field == "field provenance.dataset_sha256" and words == "other data":
        make_store(board.parent.parent / "cache", "tiny", dataset_hash())
    with pytest.raises(InputError) as exc:
        validate_entry(_bad(mutate), where="entry.json")
    assert field_of(exc) == f"entry.json: {field}"
    assert words in str(exc.value)


def make_store(root: Path, profile: str, content_sha256: str) -> Path:
    """A stand-in dataset store holding only the attributes the hash check reads."""
    import zarr

    from aiax_bench.data.registry import resolve
    from aiax_bench.data.store import store_path

    spec = resolve("foam@1.0")
    path = store_path(root, spec.name, spec.version, profile)
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update({"recipe_sha256": spec.recipe_sha256, "content_sha256": content_sha256, "store_format": 1})
    return path


def test_result_from_other_data_is_rejected_at_submit(board, tmp_path):
    make_store(tmp_path / "cache", "tiny", dataset_hash())
    other = write(tmp_path / "r.json", fake_result(dataset_sha256="1" * 64))
    with pytest.raises(InputError) as exc:
        submit([other], name="x", authors=["a"], code_url="https://e.org", board=board)
    assert field_of(exc).endswith("field provenance.dataset_sha256")
    assert not list((board / "submissions").glob("*.json"))


def test_bad_result_files_are_rejected_naming_the_field(tmp_path):
    bad = fake_result()
    del bad["provenance"]["dataset_sha256"]
    with pytest.raises(InputError) as exc:
        load_result(write(tmp_path / "a.json", bad))
    assert field_of(exc) == "a.json: field provenance.dataset_sha256"
    tampered = fake_result()
    tampered["metrics"]["psnr/reference"]["mean"] += 1
    with pytest.raises(InputError) as exc:
        load_result(write(tmp_path / "b.json", tampered))
    assert field_of(exc) == "b.json: field metrics.psnr/reference.mean"
    (tmp_path / "c.json").write_text('{"records": [{"psnr/reference": 1')
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(tmp_path / "c.json")


def test_entry_files_must_be_strict_json(board, tmp_path):
    from aiax_bench.leaderboard.submit import load_entry

    path = submit([write(tmp_path / "r.json", fake_result())], name="X", authors=["a"], code_url="https://e.org",
                  board=board)
    path.write_text(path.read_text().replace('"dice_small/pore": null', '"dice_small/pore": NaN'))
    with pytest.raises(InputError, match="not valid JSON"):
        load_entry(path)


# ---------------------------------------------------------------------------------------- safe file writes
@pytest.mark.parametrize("name", ["../../evil", "/etc/passwd", "~/x", "a\\b", "x/../y", "..", "ok\nname", "   "])
def test_names_that_could_escape_the_folder_are_refused(board, tmp_path, name):
    result = write(tmp_path / "r.json", fake_result())
    with pytest.raises(InputError) as exc:
        submit([result], name=name, authors=["a"], code_url="https://e.org", board=board)
    assert field_of(exc) == "--name"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [result]


def test_entry_path_refuses_ids_outside_and_linked_folders(board, tmp_path):
    for bad in ("../x", "a/b", ".hidden", "x/../../y"):
        with pytest.raises(InputError):
            entry_path(board, bad)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (board / "submissions").rmdir()
    (board / "submissions").symlink_to(outside)
    with pytest.raises(StoreError, match="outside"):
        entry_path(board, "foam-1.0--tiny--100proj--x")


def test_existing_entry_is_never_overwritten(board, tmp_path):
    first = write(tmp_path / "a.json", fake_result(psnr=[20.0]))
    second = write(tmp_path / "b.json", fake_result(psnr=[35.0]))
    path = submit([first], name="Same", authors=["a"], code_url="https://e.org", board=board)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="never overwritten"):
        submit([second], name="Same", authors=["b"], code_url="https://e.org", board=board)
    assert path.read_bytes() == before
    # Not even through a dangling link planted at the entry's name.
    target = tmp_path / "planted.json"
    link = board / "submissions" / "foam-1.0--tiny--100proj--planted.json"
    link.symlink_to(target)
    with pytest.raises((StoreError, InputError)):
        submit([second], name="planted", authors=["b"], code_url="https://e.org", board=board)
    assert not target.exists()
    assert not [p for p in (board / "submissions").iterdir() if p.name.startswith(".")]


_RACER = """
import os, sys, time
from pathlib import Path
from aiax_bench.cli import main
import jsonschema, aiax_bench.leaderboard.cli, aiax_bench.leaderboard.submit, aiax_bench.data.registry
aiax_bench.data.registry.resolve("foam@1.0")   # every import done before the start line
gate = Path(sys.argv[1])
(gate / f"ready-{os.getpid()}").touch()
while not (gate / "go").exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[2:]))
"""


def _race(board: Path, result: Path, names: list[str]) -> list[subprocess.CompletedProcess]:
    """Start one ``aiax-bench submit`` process per name, all released at the same instant."""
    gate = board.parent / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(gate), "submit", str(result), "--name", name,
                               "--authors", f"author {i}", "--code-url", "https://e.org", "--board", str(board)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, name in enumerate(names)]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    (gate / "go").touch()
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


def test_eight_concurrent_submissions_all_land_intact(board, tmp_path):
    result = write(tmp_path / "r.json", fake_result())
    done = _race(board, result, [f"Method {i}" for i in range(8)])
    assert all(p.returncode == 0 for p in done), [p.stderr for p in done]
    entries = load_entries(board)  # parses and validates every file
    assert sorted(e["name"] for _, e in entries) == [f"Method {i}" for i in range(8)]
    assert sorted(e["authors"][0] for _, e in entries) == [f"author {i}" for i in range(8)]
    assert not [p for p in (board / "submissions").iterdir() if p.name.startswith(".")], "temporary files left"


def test_eight_concurrent_submissions_of_one_name_make_exactly_one_entry(board, tmp_path):
    result = write(tmp_path / "r.json", fake_result())
    done = _race(board, result, ["Same name"] * 8)
    assert sorted(p.returncode for p in done) == [0] + [2] * 7
    assert all("never overwritten" in p.stderr for p in done if p.returncode)
    [(_, entry)] = load_entries(board)
    winner = next(i for i, p in enumerate(done) if p.returncode == 0)
    assert entry["authors"] == [f"author {winner}"]


# ------------------------------------------------------------------------------------------------ ranking
def test_acquisition_saving_in_words():
    assert acquisition_saving("foam@1.0", "100proj") == "100 of 500 projections: 5× less scan time, dose and data"


def test_metric_direction():
    assert higher_is_better("psnr/reference") and higher_is_better("ssim_slices/truth")
    assert not higher_is_better("mse/reference")


def test_bootstrap_is_reproducible_paired_and_degenerate_for_one_volume():
    values = np.array([[30.0, 31.0], [29.0, 33.0]])
    low, high = bootstrap_intervals(values, n_boot=500, seed=0)
    again = bootstrap_intervals(values, n_boot=500, seed=0)
    np.testing.assert_array_equal(low, again[0])
    assert low[0] == 30.0 and high[0] == 31.0 and low[1] == 29.0 and high[1] == 33.0
    one = bootstrap_intervals(np.array([[21.0]]))
    assert one[0][0] == one[1][0] == 21.0


def _entries(spec: dict[str, list[float]], profile: str = "small") -> list[tuple[None, dict]]:
    return [(None, entry_of(fake_result(psnr=p, profile=profile), name=name)) for name, p in spec.items()]


def test_overlapping_intervals_tie_with_the_leader():
    groups = rank_entries(_entries({"Leader": [30.0, 31.0], "Close": [29.5, 31.2], "Far": [20.0, 21.0]}))
    [group] = groups
    rows = {r.entry["name"]: r for r in group.rows}
    assert [r.entry["name"] for r in group.rows] == ["Leader", "Close", "Far"]
    assert rows["Leader"].rank == rows["Close"].rank == 1 and rows["Leader"].tied and rows["Close"].tied
    assert rows["Far"].rank == 3 and not rows["Far"].tied
    assert group.n_volumes == 2 and group.saving.startswith("100 of 500")
    # MSE ranks lower-is-better: the same order.
    by_mse = rank_entries(_entries({"Leader": [30.0, 31.0], "Far": [20.0, 21.0]}), metric="mse/reference")
    assert [r.entry["name"] for r in by_mse[0].rows] == ["Leader", "Far"]


def test_groups_and_filters():
    entries = _entries({"S": [30.0, 31.0]}) + _entries({"T": [25.0]}, profile="tiny")
    assert [(g.profile, len(g.rows)) for g in rank_entries(entries)] == [("tiny", 1), ("small", 1)]
    assert [g.profile for g in rank_entries(entries, profile="small")] == ["small"]
    assert rank_entries(entries, dataset="foam", split="100proj", profile="tiny")[0].rows[0].entry["name"] == "T"
    assert rank_entries(entries, dataset="other") == []
    with pytest.raises(InputError):
        rank_entries(entries, metric="psnr")


# ---------------------------------------------------------------------------------------------- rendering
EVIL_NAME = "<img src=x onerror=alert(1)> | **bold** [link](javascript:alert(2)) </td><script>alert(3)</script>"
EVIL_AUTHOR = "\"><svg onload=alert(4)>"


def test_markdown_and_terminal_render_user_text_inert():
    entries = [(None, build_entry([(r, runs_from_result(r))], name=EVIL_NAME, authors=[EVIL_AUTHOR],
                                  code_url="https://e.org/x", paper="10.1107/S1600577521011838"))
               for r in [fake_result(profile="small", psnr=[30.0, 31.0])]]
    groups = rank_entries(entries)
    md = render_markdown(groups)
    assert "<img" not in md and "<script" not in md and "<svg" not in md
    assert re.search(r"(?<!\\)\]\(javascript", md) is None  # the link syntax arrives backslashed
    table = [line for line in md.splitlines() if line.startswith("| 1")]
    assert len(table) == 1
    # The escaped pipe keeps the row at the header's column count.
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    assert table[0].replace("\\|", "").count("|") == header.count("|")
    assert "(<https://doi.org/10.1107/S1600577521011838>)" in md
    text = render_terminal(groups)
    assert EVIL_NAME in text and "5× less scan time" in text


def test_html_is_static_self_contained_and_escaped():
    groups = rank_entries([(None, entry_of(fake_result(profile="small", psnr=[30.0, 31.0]), name=EVIL_NAME))])
    page = render_html(groups)
    assert page.count("<script") == 1 and "<script src" not in page and "<link" not in page
    assert "<img" not in page and "<svg" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# ------------------------------------------------------------------------------------------- verification
def _submitted(board: Path, tmp_path: Path, **result) -> Path:
    return submit([write(tmp_path / "r.json", fake_result(**result))], name="FBP", authors=["a"],
                  code_url="https://e.org", board=board)


def _runner(shift: float = 0.0):
    """A stand-in for run_evaluation: the recorded numbers again, moved by ``shift`` dB."""
    calls = []

    def run(request):
        calls.append(request)
        result = fake_result(psnr=[21.0 + shift], seed=request.seed)
        result["provenance"]["git_commit"] = "f" * 40
        return result

    run.calls = calls
    return run


def test_verify_marks_a_reproduced_entry_verified_and_changes_nothing_else(board, tmp_path):
    path = _submitted(board, tmp_path)
    before = json.loads(path.read_text())
    runner = _runner()
    check = verify_entry(path.stem, board=board, runner=runner, log=lambda _: None)
    assert check["status"] == "verified" and check["max_abs_diff"] == 0.0 and check["git_commit"] == "f" * 40
    [request] = runner.calls
    assert (request.method, request.dataset, request.profile, request.split, request.seed, request.config) == \
        ("fbp", "foam@1.0", "tiny", "100proj", 0, {"filter": None})
    after = json.loads(path.read_text())
    assert after.pop("verification")["status"] == "verified"
    before.pop("verification")
    assert after == before
    [row] = rank_entries(load_entries(board))[0].rows
    assert row.status == "verified"


def test_verify_flags_numbers_that_do_not_reproduce(board, tmp_path):
    path = _submitted(board, tmp_path)
    check = verify_entry(path, board=board, runner=_runner(shift=0.5), log=lambda _: None)
    assert check["status"] == "mismatch" and "test-000" in check["worst"] and check["max_abs_diff"] >= 0.5
    assert rank_entries(load_entries(board))[0].rows[0].status == "not reproduced"
    # Within a loose enough tolerance it reproduces.
    assert verify_entry(path, board=board, runner=_runner(shift=0.5), rtol=0.2, log=lambda _: None)["status"] == \
        "verified"


def test_entries_from_an_older_evaluator_are_flagged_for_rescoring(board, tmp_path):
    result = fake_result(evaluator_version="0.9")
    path = submit([write(tmp_path / "r.json", result)], name="Old", authors=["a"], code_url="https://e.org",
                  board=board)
    before = path.read_bytes()
    runner = _runner()
    assert verify_entry(path.stem, board=board, runner=runner, log=lambda _: None)["status"] == "stale"
    assert runner.calls == [] and path.read_bytes() == before
    assert rank_entries(load_entries(board))[0].rows[0].status == "re-score"


def test_verify_refuses_a_file_outside_the_board(board, tmp_path):
    stray = write(tmp_path / "stray.json", entry_of(fake_result()))
    with pytest.raises((InputError, StoreError)):
        verify_entry(stray, board=board, runner=_runner(), log=lambda _: None)


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_submit_verify_and_render(board, tmp_path, capsys, monkeypatch):
    result = write(tmp_path / "r.json", fake_result())
    monkeypatch.setattr("aiax_bench.leaderboard.verify._default_runner", _runner())
    args = [str(result), "--name", "FBP", "--authors", "A. Author", "--code-url", "https://e.org",
            "--board", str(board)]
    assert main(["submit", *args, "--verify"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["submit", *args]) == 2  # exists
    assert "never overwritten" in capsys.readouterr().err
    assert main(["submit", str(result), "--board", str(board)]) == 2
    assert "--name is missing" in capsys.readouterr().err
    assert main(["submit", *args[:-4], "--code-url", "ftp://e.org", "--board", str(board)]) == 2

    assert main(["leaderboard", "--board", str(board), "--write"]) == 0
    out = capsys.readouterr().out
    assert "foam@1.0 · 100proj · tiny profile" in out and "verified" in out
    assert (board / "README.md").exists() and (board / "index.html").exists()
    assert main(["leaderboard", "--board", str(board), "--check"]) == 0
    with open(board / "README.md", "a") as fh:
        fh.write("hand edit\n")
    assert main(["leaderboard", "--board", str(board), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    broken = json.loads(next((board / "submissions").glob("*.json")).read_text())
    broken.pop("authors")
    write(board / "submissions" / "foam-1.0--tiny--100proj--broken.json", broken)
    assert main(["leaderboard", "--board", str(board), "--check"]) == 1
    assert "field authors is missing" in capsys.readouterr().out
    assert main(["leaderboard", "--board", str(tmp_path / "nowhere")]) == 2


def test_portable_command(tmp_path):
    base = tmp_path / "repo"
    cmd = (f"aiax-bench evaluate --method {base}/m/x.py:X --output={tmp_path}/out "
           f"--tracking-uri sqlite:////{str(tmp_path).lstrip('/')}/db.sqlite --config 'a=1 2'")
    assert portable_command(cmd, base=base) == (
        "aiax-bench evaluate --method m/x.py:X --output=out --tracking-uri sqlite:///db.sqlite --config 'a=1 2'")


# ------------------------------------------------------------------------------------- the committed board
def test_committed_board_is_valid_and_rendered():
    """What CI checks: every file in leaderboard/submissions validates, and README.md/index.html are current."""
    from aiax_bench.leaderboard.cli import check_board
    from aiax_bench.leaderboard.render import stale_outputs

    board = REPO / "leaderboard"
    assert check_board(board) == []
    entries = load_entries(board)
    assert stale_outputs(board, rank_entries(entries)) == [], "run `aiax-bench leaderboard --write`"
    for path, _ in entries:
        text = path.read_text()
        assert "/tmp/" not in text and "/work/" not in text and "/home/" not in text, path


def test_verified_baseline_is_on_the_board():
    entries = load_entries(REPO / "leaderboard")
    fbp = [e for _, e in entries if e["method"] == "fbp" and e["dataset"] == "foam@1.0" and e["split"] == "100proj"]
    assert fbp, "the fbp baseline entry on foam@1.0/100proj is missing"
    assert any(e["verification"]["status"] == "verified" and e["profile"] == "small" for e in fbp)


def test_entry_copy_is_independent():
    # build_entry must not alias the result's records (verification rewrites entries in place).
    result = fake_result()
    entry = entry_of(result)
    snapshot = copy.deepcopy(result)
    entry["runs"][0]["records"][0]["psnr/reference"] = -1.0
    assert result == snapshot


def test_segmentation_entries_compete_per_split_and_annotation_protocol(board, tmp_path):
    def seg_result(k: int | None, jaccard: list[float]) -> dict:
        result = fake_result(psnr=jaccard, profile="small", method="unet-seg")
        for rec, j in zip(result["records"], jaccard, strict=True):
            rec["jaccard/mean"] = j / 40
        result.update(task="segment", split="reference", annotated_slices=k, metrics=aggregate(result["records"]))
        result["provenance"].update(split="reference", annotated_slices=k)
        return result

    paths = [submit([write(tmp_path / f"r{k}.json", seg_result(k, [30.0 + (k or 20), 31.0 + (k or 20)]))],
                    name=f"U-Net {k}", authors=["a"], code_url="https://e.org", board=board) for k in (1, 5, None)]
    assert [p.stem for p in paths] == ["foam-1.0--small--reference-annotated-1--u-net-1",
                                       "foam-1.0--small--reference-annotated-5--u-net-5",
                                       "foam-1.0--small--reference--u-net-none"]
    assert [load_entry(p).get("annotated_slices") for p in paths] == [1, 5, None]
    # One group per protocol: a model trained on 5 labelled slices never ranks against one trained on all.
    groups = rank_entries(load_entries(board))  # segmentation ranks on jaccard/mean by default
    assert sorted(g.split for g in groups) == ["reference", "reference+annotated-1", "reference+annotated-5"]
    assert {g.metric for g in groups} == {"jaccard/mean"} and all("segmentation" in g.title for g in groups)
    savings = {g.split: g.saving for g in groups}
    assert savings["reference"] == "same acquisition as the reference scan"
    assert savings["reference+annotated-5"] == savings["reference"] + "; training labels on 5 slices per volume"
    # Segmentation and enhancement on the same split never share a group.
    seg_100 = {**seg_result(None, [30.0, 31.0]), "split": "100proj"}
    mixed = [(None, entry_of(seg_100, name="Seg")), (None, entry_of(fake_result(profile="small", psnr=[30.0, 31.0])))]
    assert sorted((g.task, g.metric, len(g.rows)) for g in rank_entries(mixed)) == \
        [("enhance", "psnr/reference", 1), ("segment", "jaccard/mean", 1)]
    only = rank_entries(load_entries(board), metric="jaccard/mean", split="reference+annotated-5")
    assert [g.split for g in only] == ["reference+annotated-5"] and only[0].rows[0].entry["name"] == "U-Net 5"
    assert len(rank_entries(load_entries(board), metric="jaccard/mean", split="reference")) == 3
    calls = []

    def runner(request):
        calls.append(request)
        return seg_result(request.annotated_slices, [35.0, 36.0])

    assert verify_entry(paths[1].stem, board=board, runner=runner, log=lambda _: None)["status"] == "verified"
    assert [(c.split, c.annotated_slices) for c in calls] == [("reference", 5)]
    # The protocol belongs to segmentation: an enhancement entry on 'reference' or with annotations is refused.
    for change in ({"split": "reference"}, {"annotated_slices": 5}):
        doc = {**json.loads(paths[0].read_text()), "task": "enhance", **change}
        with pytest.raises(InputError) as excinfo:
            validate_entry(doc, where="x.json")
        assert field_of(excinfo).endswith(("field split", "field annotated_slices"))
