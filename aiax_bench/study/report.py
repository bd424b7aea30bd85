"""A study's report: table (CSV, Markdown), figures (PNG and SVG) and one self-contained HTML page.

Figures:

- each statistic against the acquisition saving (the projections on the
  axis labels), one line per method with its 95 % band, the truth and the
  reference as references;
- per method, the equivalent-diameter histograms of its pores at every split
  over the truth's;
- per method and split, a 3D rendering of the pores of truth, reference and
  method (central crop of the first test volume);
- a slice montage: the truth, the reference, and each method's output at every split.

The histograms, renderings and montage come from the first test volume of
the study's first seed: each run keeps what they need of it
(``figure-data/<method>/<split>/seed<N>.npz``: its central slice, the pores of
the central crop, the pore diameters), not the volume. The page embeds its
images (base64), so it opens anywhere without the network.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.evaluation.catalog import format_value, label, metric_spec
from aiax_bench.evaluation.figures import COLOURS, _new_figure, pore_rendering
from aiax_bench.study.aggregate import POROSITY_STATISTICS, StudyTable, markdown, study_table
from aiax_bench.study.plan import Acquisition, StudyPlan, reference_angles_of

__all__ = ["write_report"]

METHOD_COLOURS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def _save_both(fig, stem: Path) -> list[Path]:
    paths = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _x_labels(table: StudyTable) -> tuple[np.ndarray, list[str]]:
    x = np.array([table.acquisitions[s].saving for s in table.splits])
    labels = [f"{table.acquisitions[s].projections} proj\n{table.acquisitions[s].saving:.3g}×"
              if table.acquisitions[s].kind in ("sparse", "subsample", "continuous")
              else f"{s}\n{table.acquisitions[s].saving:.3g}×" for s in table.splits]
    return x, labels


def curves_figure(table: StudyTable, key_of: str, stem: Path, *, ylabel: str, title: str,
                  lines: tuple[str, ...] = ()) -> list[Path]:
    """Each method's ``key_of`` (``{who}`` in it names the method's entry) against the saving, with 95 % bands.

    ``lines`` names the entries (``reference``, ``truth``) drawn as horizontal references.
    """
    fig = _new_figure(6.4, 4.2)
    ax = fig.subplots()
    x, ticks = _x_labels(table)
    for i, method in enumerate(table.methods):
        cells = [table.cells.get((method, s, key_of.format(who="method"))) for s in table.splits]
        if not any(cells):
            continue
        colour = METHOD_COLOURS[i % len(METHOD_COLOURS)]
        ax.plot(x, [c.mean if c else np.nan for c in cells], "o-", color=colour, label=method)
        ax.fill_between(x, [c.low if c else np.nan for c in cells], [c.high if c else np.nan for c in cells],
                        color=colour, alpha=0.2, lw=0)
    for who in lines:
        cells = [table.cells.get((m, s, key_of.format(who=who))) for m in table.methods for s in table.splits]
        values = [c.mean for c in cells if c]
        if values:
            ax.axhline(float(np.mean(values)), color=COLOURS.get(who, "gray"), ls="--" if who == "truth" else ":",
                       lw=1.2, label=who)
    ax.set_xscale("log")
    ax.set_xticks(x, ticks, fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("acquisition saving against the reference scan")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save_both(fig, stem)


def statistic_figure(table: StudyTable, stat: str, stem: Path) -> list[Path]:
    """A porosity statistic of each method against the saving, with the reference's and the truth's."""
    spec = metric_spec(f"{stat}/method")
    return curves_figure(table, f"{stat}/{{who}}", stem, ylabel=spec.label + (f" ({spec.unit})" if spec.unit else ""),
                         title=f"{spec.label} against the acquisition (bands: 95 % intervals)",
                         lines=("reference", table.target))


#: Edge (voxels) of the central crop whose pores the 3D views draw.
RENDER_CROP = 40


def figure_data_path(plan: StudyPlan, method: str, split: str, seed: int) -> Path:
    """``<out>/figure-data/<method>/<split>/seed<N>.npz``: what the report needs of one run."""
    return plan.out / "figure-data" / method / split.replace("/", "_") / f"seed{seed}.npz"


def prediction_path(plan: StudyPlan, method: str, split: str, seed: int, sample_id: str) -> Path:
    return plan.out / "predictions" / method / split.replace("/", "_") / f"seed{seed}" / f"{sample_id}.zarr"


def write_figure_data(plan: StudyPlan, method: str, split: str, seed: int, dataset) -> Path | None:
    """Keep what the report draws of one run's first test volume (a few hundred kB, not the volume).

    Its central slice, the pores of the central crop the 3D view draws, and
    the complete pores' diameters of method and truth; None when the run
    kept no prediction.
    """
    import zarr

    from aiax_bench.evaluation import Evaluator
    from aiax_bench.evaluation.figures import _crop

    evaluator = Evaluator(dataset, split)
    sample_id = evaluator.sample_ids[0]
    source = prediction_path(plan, method, split, seed, sample_id)
    if not source.exists():
        return None
    prediction = np.asarray(zarr.open_array(str(source), mode="r")[...])
    distributions = evaluator.evaluate_volume(sample_id, prediction).get("distributions", {})
    target = "truth" if evaluator.spec.truth else "reference"
    out = figure_data_path(plan, method, split, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.npz")
    np.savez_compressed(partial, sample_id=sample_id, central_slice=prediction[prediction.shape[0] // 2],
                        pores_crop=_crop(evaluator.segment(sample_id, prediction), RENDER_CROP),
                        diameters_method=np.asarray(distributions.get("method", {}).get("pore_diameters_mm", [])),
                        diameters_target=np.asarray(distributions.get(target, {}).get("pore_diameters_mm", [])))
    partial.replace(out)
    return out


def _volume_views(plan: StudyPlan, table: StudyTable, dataset) -> dict[str, Any]:
    """The first test volume's reference and truth, and per (method, split) its figure data (first seed)."""
    from aiax_bench.evaluation import Evaluator
    from aiax_bench.evaluation.figures import _crop

    # The reference and truth are the same for every split: one evaluator context gives them (its
    # pore statistics are the costly part), not one per split.
    evaluator = Evaluator(dataset, table.splits[0])
    sample_id = evaluator.sample_ids[0]
    sample = evaluator.samples[sample_id]
    ctx = evaluator.context(sample_id)
    high = np.asarray(sample.read("high"))
    z = high.shape[0] // 2
    views: dict[str, Any] = {
        "by_cell": {}, "sample_id": sample_id, "voxel_mm": float(sample.meta["voxel_size_um"]) / 1000,
        "data_range": evaluator.data_range, "reference": high[z],
        "truth": np.asarray(sample.read("truth"))[z] if evaluator.spec.truth else None,
        "reference_pores": _crop(evaluator.segment(sample_id, high), RENDER_CROP),
        "truth_pores": None if ctx.get("truth_pores") is None else _crop(ctx["truth_pores"], RENDER_CROP)}
    for split in table.splits:
        for method in table.methods:
            path = figure_data_path(plan, method, split, plan.seeds[0])
            if not path.exists() and write_figure_data(plan, method, split, plan.seeds[0], dataset) is None:
                continue
            with np.load(path) as data:
                views["by_cell"][method, split] = {k: data[k] for k in data.files}
    return views


def histogram_figure(table: StudyTable, views: dict[str, Any], method: str, stem: Path) -> list[Path] | None:
    """Equivalent-diameter histograms of ``method``'s pores at every split, over the truth's."""
    cells = [(s, views["by_cell"].get((method, s))) for s in table.splits]
    cells = [(s, c) for s, c in cells if c]
    if not cells:
        return None
    diameters = {s: c["diameters_method"] for s, c in cells}
    truth = cells[0][1]["diameters_target"]
    every = np.concatenate([d for d in [*diameters.values(), truth] if d.size] or [np.array([1e-3, 1.0])])
    bins = np.geomspace(every.min() * 0.95, every.max() * 1.05, 31)
    fig = _new_figure(6.4, 4.2)
    ax = fig.subplots()
    colours = _split_colours(len(cells))
    for (split, _), colour in zip(cells, colours, strict=True):
        d = diameters[split]
        if d.size:
            ax.hist(d, bins=bins, histtype="step", lw=1.4, color=colour,
                    label=f"{table.acquisitions[split].describe(table.reference_angles)} (n = {d.size})")
    if truth.size:
        ax.hist(truth, bins=bins, histtype="stepfilled", color="black", alpha=0.15,
                label=f"{table.target} (n = {truth.size})")
    ax.set_xscale("log")
    ax.set_xlabel("equivalent diameter of complete pores (mm)")
    ax.set_ylabel("pores")
    ax.set_title(f"{method}: pore sizes at each acquisition (first test volume, seed {views.get('seed', '')})",
                 fontsize=9)
    ax.legend(fontsize=6)
    return _save_both(fig, stem)


def _split_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.85, max(n, 1))][:n]


def montage_figure(table: StudyTable, views: dict[str, Any], stem: Path) -> list[Path]:
    """Central slices: truth and reference, then each method's output at every split."""
    rows = [m for m in table.methods if any((m, s) in views["by_cell"] for s in table.splits)]
    cols = len(table.splits)
    fig = _new_figure(2.1 * (cols + 1), 2.1 * max(len(rows), 2))
    axes = fig.subplots(max(len(rows), 2), cols + 1, squeeze=False)
    show = {"cmap": "gray", "vmin": 0.0, "vmax": views["data_range"]}
    firsts = [("truth", views["truth"]), ("reference", views["reference"])]
    for r, ax_row in enumerate(axes):
        for ax in ax_row:
            ax.set_axis_off()
        if r < len(firsts) and firsts[r][1] is not None:
            ax_row[0].imshow(firsts[r][1], **show)
            ax_row[0].set_title(firsts[r][0], fontsize=8)
    for r, method in enumerate(rows):
        for c, split in enumerate(table.splits):
            cell = views["by_cell"].get((method, split))
            if cell is not None:
                axes[r][c + 1].imshow(cell["central_slice"], **show)
                axes[r][c + 1].set_title(f"{method}, {split}", fontsize=8)
    return _save_both(fig, stem)


def write_report(plan: StudyPlan, manifest: dict[str, Any], *, spec, profile: str,
                 acquisitions: dict[str, Acquisition]) -> Path:
    """Write ``<study>/report/`` (table, figures, ``index.html``) and return the HTML page's path."""
    from aiax_bench.data.loader import load

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in plan.tasks():
        path = manifest["tasks"].get(task.key)
        if path:
            results.setdefault((task.method, task.split), []).append(json.loads(Path(path).read_text()))
    table = study_table(results, acquisitions=acquisitions, reference_angles=reference_angles_of(spec),
                        methods=plan.methods, tolerance=plan.tolerance)
    out = plan.out / "report"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rows = table.rows()
    with (out / "study-table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "study-table.md").write_text(markdown(table) + "\n")
    (out / "answers.json").write_text(json.dumps([a.__dict__ for a in table.answers], indent=1) + "\n")
    figures: list[tuple[str, Path]] = []
    for stat in POROSITY_STATISTICS:
        if any(k == f"{stat}/method" for (_, _, k) in table.cells):
            png, _ = statistic_figure(table, stat, out / "figures" / f"statistic-{stat}")
            figures.append((f"{metric_spec(f'{stat}/method').label} against the acquisition", png))
    for key in ("psnr", "ssim", "jaccard"):
        stat_key = f"{key}/{table.target}" if key != "jaccard" else "jaccard/pore"
        if any(k == stat_key for (_, _, k) in table.cells):
            png, _ = curves_figure(table, stat_key, out / "figures" / f"metric-{key}", ylabel=label(stat_key),
                                   title=f"{label(stat_key)} against the acquisition (bands: 95 % intervals)")
            figures.append((label(stat_key), png))
    dataset = load(spec.ref, profile=profile)
    views = _volume_views(plan, table, dataset)
    views["seed"] = plan.seeds[0]
    for method in table.methods:
        paths = histogram_figure(table, views, method, out / "figures" / f"pore-sizes-{method}")
        if paths:
            figures.append((f"{method}: pore sizes at each acquisition", paths[0]))
    renderings = []
    for method in table.methods:
        for split in table.splits:
            cell = views["by_cell"].get((method, split))
            if cell is None:
                continue
            phases = {"truth": views["truth_pores"], "reference": views["reference_pores"],
                      "method": cell["pores_crop"]}
            phases = {k: v for k, v in phases.items() if v is not None}
            path = pore_rendering(phases, out / "figures" / f"pores-3d-{method}-{split.replace('/', '_')}.png",
                                  voxel_size_mm=views["voxel_mm"])
            renderings.append((f"{method} at {split}: pores in 3D (truth, reference, method)", path))
    if views["by_cell"]:
        montage = montage_figure(table, views, out / "figures" / "slice-montage")
        figures.append(("central slices at every acquisition", montage[0]))
    page = out / "index.html"
    page.write_text(_html(plan, manifest, table, figures + renderings, spec=spec, profile=profile))
    return page


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


def _html(plan: StudyPlan, manifest: dict[str, Any], table: StudyTable, figures: list[tuple[str, Path]], *,
          spec, profile: str) -> str:
    e = html.escape
    answers = "".join(f"<li>{e(a.sentence)}</li>" for a in table.answers if a.statistic == "porosity")
    other = "".join(f"<li>{e(a.sentence)}</li>" for a in table.answers if a.statistic != "porosity")
    head = ("<tr><th>statistic</th><th>method</th>"
            + "".join(f"<th>{e(s)}<br><small>{table.acquisitions[s].saving:.3g}×</small></th>" for s in table.splits)
            + "</tr>")
    body = []
    for key in table.keys():
        for method in table.methods:
            cells = [table.cells.get((method, s, key)) for s in table.splits]
            if not any(cells):
                continue
            tds = "".join(f"<td>{e(format_value(key, c.mean))}<br><small>{e(format_value(key, c.low))} – "
                          f"{e(format_value(key, c.high))}</small></td>" if c else "<td>–</td>" for c in cells)
            body.append(f"<tr><td>{e(label(key))}<br><small><code>{e(key)}</code></small></td><td>{e(method)}</td>"
                        f"{tds}</tr>")
    failed = "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in manifest.get("failed", {}).items())
    images = "".join(_img(path, alt) for alt, path in figures)
    n_tasks = len(manifest["tasks"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Acquisition study: {e(spec.ref)} {e(profile)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; max-width: 48%; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Acquisition study: {e(spec.ref)}, profile {e(profile)}</h1>
<p>Methods {e(", ".join(table.methods))} at {len(table.splits)} acquisitions, seeds {e(str(list(plan.seeds)))};
{n_tasks} evaluations on the {e(manifest["cluster"])} cluster ({manifest["workers"]} workers). Each value is the mean
over seeds × test volumes with its 95 % hierarchical bootstrap interval.</p>
<h2 id="answer">How far can the acquisition go?</h2>
<p>Within {plan.tolerance * 100:g} % of the {e(table.target)}: the whole 95 % interval of the relative error, at that
acquisition and at every larger one.</p>
<ul id="answers">{answers}</ul>
<details><summary>the other porosity statistics</summary><ul>{other}</ul></details>
{f'<h2>Failed evaluations</h2><ul id="failed">{failed}</ul>' if failed else ''}
<h2>Every statistic against the acquisition</h2>
<table id="study-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>
<h2>Figures</h2>
<div id="figures">{images}</div>
</body></html>
"""
