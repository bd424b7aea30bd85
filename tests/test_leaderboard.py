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
from aiax_bench.leaderboard.board import entry_path, load_entries, load_entry
from aiax_bench.leaderboard.entry import build_entry, load_result, portable_command
from aiax_bench.leaderboard.rank import acquisition_saving, bootstrap_intervals, paired_difference_interval
from aiax_bench.leaderboard.schema import load_schema, scored_sample_ids, validate_entry
from aiax_bench.leaderboard.submit import submit
from aiax_bench.leaderboard.verify import verify_entry
from aiax_bench.results import Result

REPO = Path(__file__).resolve().parents[1]


from _board import DATASET, dataset_hash, entry_of, fake_result, write  # noqa: E402


def field_of(excinfo) -> str:
    return excinfo.value.field


# ------------------------------------------------------------------------------------------------- schema
def test_schema_is_valid_draft_2020_12_and_sample_ids_match_the_builder():
    import jsonschema

    from aiax_bench.data.build import sample_ids
    from aiax_bench.data.registry import resolve

    jsonschema.Draft202012Validator.check_schema(load_schema())
    spec = resolve(DATASET)
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
    assert path == board / "submissions" / "foam-2.0--tiny--100proj--my-method-2d-2.5d.json"
    entry = json.loads(path.read_text())
    assert entry["method_ref"] == "methods/mine.py:Mine"  # loadable again from the repository root
    assert entry["paper"] == "https://arxiv.org/abs/2101.00001"
    assert entry["seeds"] == [0] and entry["verification"] == {"status": "unverified"}
    assert entry["supervision"] == "reference"
    assert entry["metrics"]["psnr/truth"]["std_over_seeds"] is None
    text = path.read_text()
    for local in (str(tmp_path), str(work), "/tmp/", str(Path.home())):
        assert local not in text, f"local path {local} leaked into the entry"
    assert "--tracking-uri sqlite:///mlflow.db" in entry["provenance"]["command"]
    assert [e["id"] for _, e in load_entries(board)] == [path.stem]


def test_records_keep_scalars_undefined_values_are_not_aggregated(board, tmp_path):
    path = submit([write(tmp_path / "r.json", fake_result())], name="X", authors=["a"], code_url="https://e.org",
                  board=board)
    text = path.read_text()
    assert "NaN" not in text and "distributions" not in text  # strict JSON; per-pore data stays in MLflow
    entry = json.loads(text)
    record = entry["runs"][0]["records"][0]
    assert record["dice_small/pore"] is None and record["segmentation_protocol"] == "2.0"
    assert "dice_small/pore" not in entry["metrics"] and "segmentation_protocol" not in entry["metrics"]
    assert entry["metrics"]["porosity/rel_error_truth"]["mean"] == 0.01


def test_one_std_convention_from_result_to_entry(board, tmp_path):
    """Sample standard deviations (ddof 1) over seeds and over volumes, in the result and in the entry alike."""
    table = [[30.0, 31.0], [31.0, 33.0], [32.5, 32.0]]
    result = fake_result(psnr=table, seeds=(0, 1, 2))
    psnr = result["metrics"]["psnr/truth"]
    assert psnr["std_over_seeds"] == pytest.approx(np.std(np.mean(table, axis=1), ddof=1))
    assert psnr["std_over_volumes"] == pytest.approx(np.std(np.mean(table, axis=0), ddof=1))
    entry = entry_of(result)
    assert entry["metrics"] == result["metrics"]
    per_seed = [fake_result(psnr=[row], seeds=(s,)) for s, row in enumerate(table)]
    combined = build_entry([Result.from_dict(r) for r in per_seed], name="A", authors=["x"],
                           code_url="https://e.org/a")
    assert combined["metrics"] == entry["metrics"]
    validate_entry(entry)


def test_results_of_different_configs_or_repeated_seeds_are_not_combined():
    r0, r1 = fake_result(seeds=(0,)), fake_result(seeds=(1,), config={"filter": "ramp"})
    with pytest.raises(InputError) as exc:
        build_entry([Result.from_dict(r0), Result.from_dict(r1)], name="x", authors=["a"], code_url="https://e.org")
    assert "config" in field_of(exc)
    with pytest.raises(InputError, match="repeat seeds"):
        build_entry([Result.from_dict(r0), Result.from_dict(r0)], name="x", authors=["a"], code_url="https://e.org")


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
    (lambda e: e["runs"][0]["records"][0].update({"psnr/truth": "21"}),
     "field runs[0].records[0].psnr/truth", "expected a number"),
    (lambda e: e["runs"][0]["records"][0].update({"psnr/truth": None}),
     "field runs[0].records[0].psnr/truth", "expected a number"),
    (lambda e: e.update(authors=[]), "field authors", "invalid"),
    (lambda e: e.update(code_url="javascript:alert(1)"), "field code_url", "invalid"),
    (lambda e: e.update(surprise=1), "field surprise", "not a known field"),
    (lambda e: (e.update(supervision="labels"), e["provenance"].update(supervision="labels")),
     "field supervision", "invalid"),
    (lambda e: e["provenance"].update(supervision="self"), "field provenance.supervision", "expected"),
    (lambda e: (e.update(dataset="nope@1.0"), e["provenance"].update(dataset="nope@1.0")), "field dataset",
     "no registered dataset"),
    (lambda e: (e.update(split="7proj"), e["provenance"].update(split="7proj")), "field split", "not a split"),
    (lambda e: (e.update(profile="huge"), e["provenance"].update(profile="huge")), "field profile",
     "not a profile"),
    (lambda e: e["provenance"].update(split="dose-1/4"), "field provenance.split", "expected"),
    (lambda e: e["metrics"]["psnr/truth"].update(mean=99.0), "field metrics.psnr/truth.mean", "recomputed"),
    (lambda e: e["metrics"]["psnr/truth"].update(std_over_volumes=5.0), "field metrics.psnr/truth.std_over_volumes",
     "recomputed"),
    (lambda e: e["runs"][0]["records"][0].update(sample_id="test-007"), "field runs[0].records", "test volumes"),
    (lambda e: e["runs"][0]["records"][0].update({"made_up/truth": 1.0}), "field runs[0].records[0].made_up/truth",
     "not a metric"),
])
def test_invalid_entries_are_rejected_naming_the_field(board, mutate, field, words):
    with pytest.raises(InputError) as exc:
        validate_entry(_bad(mutate), where="entry.json")
    assert field_of(exc) == f"entry.json: {field}"
    assert words in str(exc.value)


def _set_everywhere(key: str, value: float):
    """A forged score written consistently: every record and the aggregate agree, so only its range betrays it."""
    def mutate(entry):
        for run in entry["runs"]:
            for record in run["records"]:
                record[key] = value
        entry["metrics"][key].update(mean=value, std_over_volumes=0.0)
    return mutate


def _hand_verified(entry):
    entry["verification"] = {"status": "verified"}


def _hand_verified_in_full(entry):
    entry["verification"] = {
        "status": "verified", "checked": "2026-01-02T03:04:05+00:00", "evaluator_version": EVALUATOR_VERSION,
        "package_version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False, "dataset_sha256": dataset_hash(),
        "max_abs_diff": 0.0, "worst": None, "rtol": 1e-3, "atol": 1e-6,
        "rerun_file": "verifications/foam-2.0--tiny--100proj--fbp.json", "rerun_sha256": "b" * 64, "hardware": {}}


@pytest.mark.parametrize(("forge", "field"), [
    (_set_everywhere("psnr/truth", 1000.0), "runs[0].records[0].psnr/truth"),
    (_set_everywhere("ssim/truth", 1.5), "runs[0].records[0].ssim/truth"),
    (_set_everywhere("mse/truth", -0.5), "runs[0].records[0].mse/truth"),
    (_set_everywhere("porosity/rel_error_truth", -2.0), "runs[0].records[0].porosity/rel_error_truth"),
    (lambda e: e["provenance"].update(recipe_sha256="0" * 64), "provenance.recipe_sha256"),
    (lambda e: e["provenance"].update(dataset_sha256="rebuilt"), "provenance.dataset_sha256"),
    (lambda e: e["provenance"].update(dataset_sha256="1" * 64), "provenance.dataset_sha256"),
    (_hand_verified, "verification"),
    (_hand_verified_in_full, "verification.rerun_file"),
])
def test_forged_entries_cannot_certify_themselves(board, forge, field):
    """`leaderboard --check` refuses each forgery with one line naming the field."""
    entry = entry_of(fake_result())
    forge(entry)
    path = write(board / "submissions" / f"{entry['id']}.json", entry)
    from aiax_bench.leaderboard.cli import check_board

    [problem] = check_board(board)
    assert problem.startswith(f"{path}: {path.name}: field {field}")
    assert "\n" not in problem


def test_forged_jaccard_is_refused():
    entry = entry_of(fake_result())
    for run in entry["runs"]:
        for record in run["records"]:
            record["jaccard/pore"] = 2.0
    entry["metrics"]["jaccard/pore"] = {"mean": 2.0, "std_over_seeds": None, "std_over_volumes": 0.0, "n_seeds": 1,
                                        "n_volumes": 2}
    with pytest.raises(InputError) as exc:
        validate_entry(entry, where="x.json")
    assert field_of(exc) == "x.json: field runs[0].records[0].jaccard/pore" and "[0, 1]" in str(exc.value)


def test_result_from_other_data_is_rejected_at_submit(board, tmp_path):
    other = write(tmp_path / "r.json", fake_result(dataset_sha256="1" * 64))
    with pytest.raises(InputError) as exc:
        submit([other], name="x", authors=["a"], code_url="https://e.org", board=board)
    assert field_of(exc).endswith("field provenance.dataset_sha256")
    assert not list((board / "submissions").glob("*.json"))


def test_bad_result_files_are_rejected_naming_the_field(tmp_path):
    old = fake_result()
    old["schema_version"] = 1
    with pytest.raises(InputError) as exc:
        load_result(write(tmp_path / "a.json", old))
    assert field_of(exc) == "a.json: field schema_version"
    tampered = fake_result()
    tampered["metrics"]["psnr/truth"]["mean"] += 1
    with pytest.raises(InputError) as exc:
        load_result(write(tmp_path / "b.json", tampered))
    assert field_of(exc) == "b.json: field metrics.psnr/truth.mean"
    (tmp_path / "c.json").write_text('{"runs": [{"psnr/truth": 1')
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(tmp_path / "c.json")


def test_entry_files_must_be_strict_json(board, tmp_path):
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
        entry_path(board, "foam-2.0--tiny--100proj--x")


def test_existing_entry_is_never_overwritten(board, tmp_path):
    first = write(tmp_path / "a.json", fake_result(psnr=[20.0, 20.0]))
    second = write(tmp_path / "b.json", fake_result(psnr=[35.0, 35.0]))
    path = submit([first], name="Same", authors=["a"], code_url="https://e.org", board=board)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="never overwritten"):
        submit([second], name="Same", authors=["b"], code_url="https://e.org", board=board)
    assert path.read_bytes() == before
    # Not even through a dangling link planted at the entry's name.
    target = tmp_path / "planted.json"
    link = board / "submissions" / "foam-2.0--tiny--100proj--planted.json"
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
import aiax_bench.evaluation.catalog, aiax_bench.leaderboard.verify
aiax_bench.data.registry.resolve("foam@2.0")   # every import done before the start line
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
    assert acquisition_saving(DATASET, "100proj") == "100 of 500 projections: 5× less scan time, dose and data"
    assert acquisition_saving(DATASET, "dose-1/16") == "all 500 projections at 16× less dose each"
    assert acquisition_saving(DATASET, "res-x2").startswith("detector binned 2×2: 4× fewer detector pixels")
    assert acquisition_saving(DATASET, "res-x4").startswith("detector binned 4×4: 16× fewer")
    assert "continuous rotation" in acquisition_saving(DATASET, "continuous")


def test_every_registered_split_says_what_it_saves():
    """Every split kind of every registered recipe has its words on the board (a new kind without them would fail
    the whole board's rendering)."""
    from aiax_bench.data.registry import list_datasets

    for spec in list_datasets():
        for split in spec.splits:
            assert acquisition_saving(spec.ref, split), (spec.ref, split)
    assert acquisition_saving("am-metal-lab@1.0", "arc-120").startswith("a 120° arc of the full turn: 3× less")


def test_metric_directions_come_from_the_catalog():
    from aiax_bench.evaluation.catalog import metric_spec, rank_values

    assert metric_spec("psnr/truth").direction == "higher" and metric_spec("ssim_slices/clean").direction == "higher"
    assert metric_spec("mse/reference").direction == "lower"
    signed = metric_spec("pore_density_per_mm3/rel_error_truth")
    assert signed.direction == "zero" and signed.signed
    assert metric_spec("porosity/method").direction == "none"
    np.testing.assert_array_equal(rank_values("pore_density_per_mm3/rel_error_truth", [-0.031, 0.01]), [0.031, 0.01])
    with pytest.raises(InputError, match="descriptive"):
        rank_entries(_entries({"A": [30.0] * 8}), metric="porosity/method")
    with pytest.raises(InputError, match="not in the metric catalog"):
        rank_entries(_entries({"A": [30.0] * 8}), metric="bogus/truth")


def test_bootstrap_is_reproducible_hierarchical_and_degenerate_for_one_value():
    a = np.array([[30.0, 31.0, 29.0], [30.5, 31.5, 29.5]])  # 2 seeds x 3 volumes
    low, high = bootstrap_intervals([a], n_boot=500, seed=0)
    again = bootstrap_intervals([a], n_boot=500, seed=0)
    np.testing.assert_array_equal(low, again[0])
    assert 29.0 <= low[0] < a.mean() < high[0] <= 31.5
    # Seeds are resampled too: a seed-only spread gives a non-zero interval.
    seeds_only = np.array([[30.0, 30.0], [32.0, 32.0], [34.0, 34.0]])
    lo, hi = bootstrap_intervals([seeds_only], n_boot=500)
    assert lo[0] < 32.0 < hi[0]
    one = bootstrap_intervals([np.array([[21.0]])])
    assert one[0][0] == one[1][0] == 21.0


def _entries(spec: dict[str, list[float]], profile: str = "small", **options) -> list[tuple[None, dict]]:
    return [(None, entry_of(fake_result(psnr=p, profile=profile, **options), name=name)) for name, p in spec.items()]


def test_paired_comparison_separates_what_overlapping_intervals_would_tie():
    """A consistent 0.3 dB gain on every volume is real, although the volumes' spread makes the intervals overlap."""
    volumes = [22.0, 25.0, 19.0, 27.0, 21.0, 24.0, 20.0, 26.0]
    groups = rank_entries(_entries({"Better": [v + 0.3 for v in volumes], "Base": volumes,
                                    "Noisy": [v + d for v, d in zip(volumes, [1, -1, 1.2, -1.1, 0.9, -1, 1, -0.9],
                                                                    strict=True)]}))
    [group] = groups
    rows = {r.entry["name"]: r for r in group.rows}
    assert group.rows[0].entry["name"] == "Better"
    assert rows["Base"].ci_low < rows["Better"].ci_high and rows["Better"].ci_low < rows["Base"].ci_high
    assert not rows["Base"].tied and rows["Base"].rank == 3
    # Differences that change sign from volume to volume do not separate from the leader: tied.
    assert rows["Noisy"].tied and rows["Noisy"].rank == 1 and rows["Better"].tied
    lo, hi = paired_difference_interval(np.array([volumes]), np.array([volumes]) + 0.3, seeds_a=[0], seeds_b=[0])
    assert lo == pytest.approx(-0.3) and hi == pytest.approx(-0.3)
    assert group.n_volumes == 8 and group.saving.startswith("100 of 500")
    assert {r.n_seeds * r.n_volumes for r in group.rows} == {8}


def test_signed_errors_rank_on_their_absolute_value():
    entries = [(None, entry_of(fake_result(profile="small", density_error=e), name=n))
               for n, e in (("Under by 3.1 %", -0.031), ("Over by 1 %", 0.01), ("Over by 5 %", 0.05))]
    [group] = rank_entries(entries, metric="pore_density_per_mm3/rel_error_truth")
    assert [r.entry["name"] for r in group.rows] == ["Over by 1 %", "Under by 3.1 %", "Over by 5 %"]
    assert group.rows[0].value == pytest.approx(0.01) and group.rows[1].value == pytest.approx(0.031)
    assert "absolute" in render_markdown([group])


def test_protocols_rank_apart_and_none_entries_are_reference_rows():
    entries = (_entries({"Net": [30.0] * 8}, supervision="reference")
               + _entries({"Self": [31.0] * 8}, supervision="self", method="noise2inverse")
               + _entries({"Ramp FBP": [18.0] * 8}, supervision="none", method="fbp-ramp"))
    groups = rank_entries(entries)
    assert [g.supervision for g in groups] == ["reference", "self"]
    for group in groups:
        ranked = [r for r in group.rows if not r.reference]
        [ref] = [r for r in group.rows if r.reference]
        assert len(ranked) == 1 and ranked[0].rank == 1
        assert ref.entry["name"] == "Ramp FBP" and ref.rank is None
        assert "| ref |" in render_markdown([group])
    assert "self-supervised" in groups[1].title
    only_none = rank_entries(_entries({"Ramp FBP": [18.0] * 8}, supervision="none", method="fbp-ramp"))
    assert [g.supervision for g in only_none] == ["none"] and only_none[0].rows[0].rank == 1


def test_groups_and_filters():
    entries = _entries({"S": [30.0] * 8}) + _entries({"T": [25.0, 26.0]}, profile="tiny")
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
    entries = [(None, build_entry([Result.from_dict(fake_result(profile="small", psnr=[30.0, 31.0] * 4))],
                                  name=EVIL_NAME, authors=[EVIL_AUTHOR], code_url="https://e.org/x",
                                  paper="10.1107/S1600577521011838"))]
    groups = rank_entries(entries)
    md = render_markdown(groups)
    assert "<img" not in md and "<script" not in md and "<svg" not in md
    assert re.search(r"(?<!\\)\]\(javascript", md) is None  # the link syntax arrives backslashed
    table = [line for line in md.splitlines() if line.startswith("| 1")]
    assert len(table) == 1
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    assert table[0].replace("\\|", "").count("|") == header.count("|")
    assert "(<https://doi.org/10.1107/S1600577521011838>)" in md
    assert "8 (1 × 8)" in md  # n = seeds × volumes
    text = render_terminal(groups)
    assert EVIL_NAME in text and "5× less scan time" in text


def test_html_is_static_self_contained_and_escaped():
    groups = rank_entries([(None, entry_of(fake_result(profile="small", psnr=[30.0, 31.0] * 4), name=EVIL_NAME))])
    page = render_html(groups)
    assert page.count("<script") == 1 and "<script src" not in page and "<link" not in page
    assert "<img" not in page and "<svg" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# ------------------------------------------------------------------------------------------- verification
CLEAN = {"package_version": "0.1.0", "git_commit": "f" * 40, "git_dirty": False, "command": "aiax-bench"}


@pytest.fixture
def clean_checkout(monkeypatch):
    """Verification names the commit that re-ran the entry and refuses uncommitted code; tests pose as clean."""
    monkeypatch.setattr("aiax_bench.provenance.code_provenance", lambda: dict(CLEAN))


def _submitted(board: Path, tmp_path: Path, **result) -> Path:
    return submit([write(tmp_path / "r.json", fake_result(**result))], name="FBP", authors=["a"],
                  code_url="https://e.org", board=board)


def _runner(shift: float = 0.0):
    """A stand-in for run_evaluation: the recorded numbers again, moved by ``shift`` dB."""
    calls = []

    def run(request):
        calls.append(request)
        return fake_result(psnr=[21.0 + shift] * 2, seeds=(request.seed,))

    run.calls = calls
    return run


def test_verify_retrains_records_the_rerun_and_check_recomputes_it(board, tmp_path, clean_checkout):
    path = _submitted(board, tmp_path)
    before = json.loads(path.read_text())
    runner = _runner()
    check = verify_entry(path.stem, board=board, yes_run_code=True, runner=runner, log=lambda _: None)
    assert check["status"] == "verified" and check["max_abs_diff"] == 0.0 and check["git_commit"] == "f" * 40
    [request] = runner.calls
    assert (request.method, request.dataset, request.profile, request.split, request.seed, request.config) == \
        ("fbp", DATASET, "tiny", "100proj", 0, {"filter": "hann"})
    assert request.reuse_checkpoints is False  # a verification trains again
    assert (board / check["rerun_file"]).is_file()
    after = json.loads(path.read_text())
    assert after.pop("verification")["status"] == "verified"
    before.pop("verification")
    assert after == before
    [row] = rank_entries(load_entries(board))[0].rows
    assert row.status == "verified"
    # Editing the re-run record, or the entry's numbers beyond tolerance, is caught by the check.
    from aiax_bench.leaderboard.cli import check_board

    assert check_board(board) == []
    record = board / check["rerun_file"]
    record.write_text(record.read_text().replace("21.0", "21.5"))
    [problem] = check_board(board)
    assert "field verification.rerun_sha256" in problem


def test_verify_flags_numbers_that_do_not_reproduce(board, tmp_path, clean_checkout):
    path = _submitted(board, tmp_path)
    check = verify_entry(path, board=board, yes_run_code=True, runner=_runner(shift=0.5), log=lambda _: None)
    assert check["status"] == "mismatch" and "test-000" in check["worst"] and check["max_abs_diff"] >= 0.5
    assert rank_entries(load_entries(board))[0].rows[0].status == "not reproduced"
    entry = json.loads(path.read_text())
    entry["verification"]["status"] = "verified"  # a hand edit of the verdict
    path.write_text(json.dumps(entry))
    with pytest.raises(InputError) as exc:
        load_entry(path)
    assert field_of(exc).endswith("field verification.status")


def test_verify_runs_code_only_with_consent_from_a_clean_checkout(board, tmp_path, monkeypatch):
    path = _submitted(board, tmp_path)
    runner = _runner()
    monkeypatch.setattr("aiax_bench.provenance.code_provenance", lambda: dict(CLEAN))
    with pytest.raises(InputError) as exc:
        verify_entry(path.stem, board=board, runner=runner, log=lambda _: None)
    assert field_of(exc) == "--yes-run-code"
    with pytest.raises(InputError):
        verify_entry(path.stem, board=board, confirm=lambda question: False, runner=runner, log=lambda _: None)
    assert runner.calls == []
    assert verify_entry(path.stem, board=board, confirm=lambda question: "fbp" in question, runner=runner,
                        log=lambda _: None)["status"] == "verified"
    monkeypatch.setattr("aiax_bench.provenance.code_provenance", lambda: {**CLEAN, "git_dirty": True})
    with pytest.raises(InputError, match="clean checkout"):
        verify_entry(path.stem, board=board, yes_run_code=True, runner=runner, log=lambda _: None)


@pytest.mark.parametrize("method_ref", ["../../../../tmp/evil.py:Evil", "/tmp/evil.py:Evil", "no-such-method",
                                        "methods/missing.py:Mine"])
def test_verify_runs_only_registered_methods_or_files_in_the_checkout(board, tmp_path, method_ref, clean_checkout):
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    entry = entry_of(fake_result())
    entry["method_ref"] = method_ref
    path = write(board / "submissions" / f"{entry['id']}.json", entry)
    runner = _runner()
    with pytest.raises(InputError) as exc:
        verify_entry(path.stem, board=board, yes_run_code=True, runner=runner, log=lambda _: None)
    assert field_of(exc).endswith("method_ref")
    assert runner.calls == []


def test_verify_loads_a_method_file_inside_the_checkout(board, tmp_path, clean_checkout):
    methods = board.parent / "methods"
    methods.mkdir()
    (methods / "mine.py").write_text("")
    entry = entry_of(fake_result())
    entry["method_ref"] = "methods/mine.py:Mine"
    path = write(board / "submissions" / f"{entry['id']}.json", entry)
    runner = _runner()
    verify_entry(path.stem, board=board, yes_run_code=True, runner=runner, log=lambda _: None)
    [request] = runner.calls
    assert request.method == f"{(methods / 'mine.py').resolve()}:Mine"


def test_entries_from_an_older_evaluator_are_flagged_for_rescoring(board, tmp_path, clean_checkout):
    result = fake_result(evaluator_version="0.9")
    for run in result["runs"]:
        for record in run["records"]:
            record["evaluator_version"] = "0.9"
    entry = entry_of(result, name="Old")
    entry["evaluator_version"] = "0.9"
    path = write(board / "submissions" / f"{entry['id']}.json", entry)
    before = path.read_bytes()
    runner = _runner()
    assert verify_entry(path.stem, board=board, yes_run_code=True, runner=runner, log=lambda _: None)["status"] == \
        "stale"
    assert runner.calls == [] and path.read_bytes() == before
    assert rank_entries(load_entries(board))[0].rows[0].status == "re-score"


def test_verify_refuses_a_file_outside_the_board(board, tmp_path):
    stray = write(tmp_path / "stray.json", entry_of(fake_result()))
    with pytest.raises((InputError, StoreError)):
        verify_entry(stray, board=board, yes_run_code=True, runner=_runner(), log=lambda _: None)


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_submit_verify_and_render(board, tmp_path, capsys, monkeypatch, clean_checkout):
    result = write(tmp_path / "r.json", fake_result())
    monkeypatch.setattr("aiax_bench.leaderboard.verify._default_runner", _runner())
    args = [str(result), "--name", "FBP", "--authors", "A. Author", "--code-url", "https://e.org",
            "--board", str(board)]
    assert main(["submit", *args, "--verify"]) == 2  # no consent, no terminal to ask on
    assert "--yes-run-code" in capsys.readouterr().err
    assert main(["submit", "--verify", "foam-2.0--tiny--100proj--fbp", "--yes-run-code", "--board", str(board)]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["submit", *args]) == 2  # exists
    assert "never overwritten" in capsys.readouterr().err
    assert main(["submit", str(result), "--board", str(board)]) == 2
    assert "--name is missing" in capsys.readouterr().err
    assert main(["submit", *args[:-4], "--code-url", "ftp://e.org", "--board", str(board)]) == 2

    assert main(["leaderboard", "--board", str(board), "--write"]) == 0
    out = capsys.readouterr().out
    assert "foam@2.0 · 100proj · tiny profile" in out and "verified" in out
    assert (board / "README.md").exists() and (board / "index.html").exists()
    assert main(["leaderboard", "--board", str(board), "--check"]) == 0
    with open(board / "README.md", "a") as fh:
        fh.write("hand edit\n")
    assert main(["leaderboard", "--board", str(board), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    broken = json.loads(next((board / "submissions").glob("*.json")).read_text())
    broken.pop("authors")
    write(board / "submissions" / "foam-2.0--tiny--100proj--broken.json", broken)
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
@pytest.fixture(scope="module")
def committed_board():
    """The committed board's problems (every entry checked once: the check recomputes each entry's aggregates)
    and its entries as written."""
    from aiax_bench.jsonio import read_json
    from aiax_bench.leaderboard.board import entry_files
    from aiax_bench.leaderboard.cli import check_board

    board = REPO / "leaderboard"
    return board, check_board(board), [(path, read_json(path)) for path in entry_files(board)]


def test_committed_board_is_valid_and_rendered(committed_board):
    """What CI checks: every file in leaderboard/submissions validates, and README.md/index.html are current."""
    from aiax_bench.leaderboard.render import stale_outputs

    board, problems, entries = committed_board
    assert problems == [] and len(entries) > 10
    assert stale_outputs(board, rank_entries(entries)) == [], "run `aiax-bench leaderboard --write`"
    for path, _ in entries:
        text = path.read_text()
        assert "/tmp/" not in text and "/work/" not in text and "/home/" not in text, path


def test_committed_learned_entries_have_three_seeds_and_are_verified(committed_board):
    """Every learned entry on the board: at least 3 seeds; every entry: verified by a re-run."""
    from aiax_bench.methods import get_method

    _, problems, entries = committed_board
    assert problems == []
    for path, entry in entries:
        if get_method(entry["method"]).trainable:
            assert len(entry["seeds"]) >= 3, path.name
        assert entry["verification"]["status"] == "verified", path.name


def test_entry_copy_is_independent():
    # build_entry must not alias the result's records (verification rewrites entries in place).
    result = fake_result()
    entry = entry_of(result)
    snapshot = copy.deepcopy(result)
    entry["runs"][0]["records"][0]["psnr/truth"] = -1.0
    assert result == snapshot


def test_segmentation_entries_compete_per_split_and_annotation_protocol(board, tmp_path, clean_checkout):
    def seg_result(k: int | None, jaccard: list[float]) -> dict:
        result = fake_result(psnr=jaccard, profile="small", method="unet-seg", supervision="truth")
        for run in result["runs"]:
            for rec, j in zip(run["records"], jaccard, strict=True):
                rec["jaccard/mean"] = j / 60
        doc = {**result, "task": "segment", "split": "reference", "annotated_slices": k}
        doc["provenance"] = {**result["provenance"], "split": "reference", "annotated_slices": k}
        doc["metrics"] = _aggregate(doc["runs"])
        return doc

    paths = [submit([write(tmp_path / f"r{k}.json", seg_result(k, [30.0 + (k or 20), 31.0 + (k or 20)] * 4))],
                    name=f"U-Net {k}", authors=["a"], code_url="https://e.org", board=board) for k in (1, 5, None)]
    assert [p.stem for p in paths] == ["foam-2.0--small--reference-annotated-1--u-net-1",
                                       "foam-2.0--small--reference-annotated-5--u-net-5",
                                       "foam-2.0--small--reference--u-net-none"]
    assert [load_entry(p).get("annotated_slices") for p in paths] == [1, 5, None]
    # One group per protocol: a model trained on 5 labelled slices never ranks against one trained on all.
    groups = rank_entries(load_entries(board))  # segmentation ranks on jaccard/mean by default
    assert sorted(g.split for g in groups) == ["reference", "reference+annotated-1", "reference+annotated-5"]
    assert {g.metric for g in groups} == {"jaccard/mean"} and all("segmentation" in g.title for g in groups)
    savings = {g.split: g.saving for g in groups}
    assert savings["reference"] == "the reference scan itself"
    assert savings["reference+annotated-5"] == savings["reference"] + "; training labels on 5 slices per volume"
    only = rank_entries(load_entries(board), metric="jaccard/mean", split="reference+annotated-5")
    assert [g.split for g in only] == ["reference+annotated-5"] and only[0].rows[0].entry["name"] == "U-Net 5"
    calls = []

    def runner(request):
        calls.append(request)
        return seg_result(request.annotated_slices, [35.0, 36.0] * 4)

    assert verify_entry(paths[1].stem, board=board, yes_run_code=True, runner=runner,
                        log=lambda _: None)["status"] == "verified"
    assert [(c.split, c.annotated_slices) for c in calls] == [("reference", 5)]
    # The protocol belongs to segmentation: an enhancement entry on 'reference' or with annotations is refused.
    for change in ({"split": "reference"}, {"annotated_slices": 5}):
        doc = {**json.loads(paths[0].read_text()), "task": "enhance", **change}
        with pytest.raises(InputError) as excinfo:
            validate_entry(doc, where="x.json")
        assert field_of(excinfo).endswith(("field split", "field annotated_slices"))


def _aggregate(runs):
    from aiax_bench.results import aggregate_runs

    return aggregate_runs(runs)


def test_board_plan_covers_every_group_with_tuned_baselines_and_three_seeds():
    """The re-run plan: tuned FBP, SIRT and TV in every protocol group, every learned entry on 3 seeds."""
    import importlib.util

    from aiax_bench.methods import get_method

    spec = importlib.util.spec_from_file_location("run_board", REPO / "scripts" / "run_board.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    groups: dict[tuple, set] = {}
    for item in module.PLAN:
        method = get_method(item.method)
        config = method.make_config(dict(c.split("=", 1) for c in item.config))
        supervision = method(config).supervision
        groups.setdefault((item.dataset, item.split, supervision), set()).add(item.method)
        if method.trainable:
            assert len(item.seeds) >= 3, item
    enhancement = {k: v for k, v in groups.items() if k[1] != "reference"}
    every_method = {("foam@2.0", "100proj"), ("foam@2.0", "50proj"), ("foam@2.0", "dose-1/16"),
                    ("am-metal@2.0", "100proj")}
    # The families' own questions (mouse: the fewest angles; foam-pc: phase retrieval) against tuned FBP.
    own_question = {("mouse@1.0", "30proj"), ("foam-pc@1.0", "pc-10cm"), ("foam-pc@1.0", "pc-50cm"),
                    ("foam-pc@1.1", "pc-pink"), ("composite@2.1", "pc-10cm"), ("am-metal@2.1", "pc-1m")}
    assert {(d, s) for d, s, _ in enhancement} == every_method | own_question
    for (dataset, split, supervision), methods in enhancement.items():
        if supervision != "none":
            assert ({"fbp", "sirt", "tv"} if (dataset, split) in every_method else {"fbp"}) <= methods, (
                dataset, split, supervision)


def test_a_misspelt_split_key_is_refused_by_the_registry_schema():
    """The res-x2 wording bug: a recipe said ``factor``, the code read ``binning``. Typed splits and a closed schema."""
    from aiax_bench.data.registry import RECIPE_SCHEMA, SplitSpec, _validate, resolve

    spec = resolve(DATASET)
    assert spec.split_spec("res-x2") == SplitSpec(name="res-x2", kind="binning", factor=2,
                                                  description=spec.splits["res-x2"]["description"])
    recipe = {**spec.recipe, "splits": {"res-x2": {"kind": "binning", "binning": 2, "description": "typo"}}}
    with pytest.raises(InputError, match=r"field splits/res-x2 is invalid .*'binning' was unexpected"):
        _validate(recipe, RECIPE_SCHEMA, "recipe")
