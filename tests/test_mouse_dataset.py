"""mouse@1.0: the in-vivo biomedical family through the one harness: its store, its lesion scores, its yardstick."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError

DATASET = "mouse@1.0"


@pytest.fixture(scope="module")
def mouse_root(tmp_path_factory):
    """mouse@1.0 tiny, built once for this module in a process of one thread each (BLAS, OpenMP, numba)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("mouse-data"))


@pytest.fixture(scope="module")
def mouse(mouse_root):
    from aiax_bench.data.loader import load

    return load(DATASET, profile="tiny", root=mouse_root[0], build=False)


def test_tiny_builds_with_one_thread_to_the_content_sha256_registered_from_a_default_build(mouse_root):
    from aiax_bench.data.registry import resolve

    assert mouse_root[1] == resolve(DATASET).content_sha256["tiny"]


def test_each_profile_keeps_the_field_of_view_in_its_own_voxel_size(mouse):
    from aiax_bench.data.registry import resolve

    spec = resolve(DATASET)
    fov_mm = {p: spec.profiles[p]["size"] * spec.voxel_size_um(p) / 1000 for p in ("tiny", "small")}
    assert fov_mm == {"tiny": 38.4, "small": 38.4}
    assert spec.voxel_size_um("large") == 85.0  # the users' protocol
    sample = mouse.split("30proj").test[0]
    assert sample.meta["voxel_size_um"] == 600.0
    # A recipe without per-profile voxels keeps its own for every profile.
    foam = resolve("foam@2.0")
    assert {foam.voxel_size_um(p) for p in foam.profiles} == {foam.recipe["voxel_size_um"]}


def test_splits_are_the_users_angles_of_a_600_angle_reference_and_1_25_of_the_dose(mouse):
    sample = mouse.split("dose-1/25").test[0]
    assert np.asarray(sample.angles).size == 600
    for n in (30, 60, 90, 120, 150):
        assert np.asarray(mouse.split(f"{n}proj").test[0].angles).size == n
    assert mouse.spec.splits["dose-1/25"]["dose_factor"] == pytest.approx(1 / 25)


def test_lesion_instances_and_their_areas_cover_the_three_strata(mouse):
    from aiax_bench.evaluation.evaluator import EvaluationSpec

    spec = EvaluationSpec.from_registry(mouse.spec.evaluation)
    strata = []
    for sample in mouse.split("30proj").test:
        records = sample.meta["lesions"]
        instances = np.asarray(sample.read("lesions"))
        labels = np.asarray(sample.read("labels"))
        phases = list(sample.meta["phases"])
        tumour = np.isin(labels, [phases.index(p) for p in spec.lesions.phases])
        # Every tumour voxel belongs to one lesion, and nothing else does.
        assert np.array_equal(instances > 0, tumour)
        assert set(np.unique(instances)) <= {0, *(r["id"] for r in records)}
        strata.extend(spec.lesions.strata([r["area_mm2"] for r in records]).tolist())
    assert set(strata) == {0, 1, 2}
    assert strata.count(0) >= 2 * strata.count(2)  # enough small ones


def test_the_strata_follow_the_users_bounds_in_mm2():
    from aiax_bench.evaluation.evaluator import LesionSpec

    spec = LesionSpec(name="tumour", phases=("liver_tumour",), strata_mm2=(50.0, 100.0))
    assert spec.strata([3.0, 49.9, 50.0, 100.0, 100.1, 130.0]).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(InputError, match="strata_mm2"):
        LesionSpec(name="tumour", phases=("liver_tumour",), strata_mm2=(100.0, 50.0))


def test_a_sealed_sample_refuses_the_lesions_and_their_areas(mouse):
    from aiax_bench.data.sealed import SealedFieldError, seal

    sealed = next(iter(seal(mouse.split("30proj").test)))
    with pytest.raises(SealedFieldError):
        sealed.read("lesions")
    with pytest.raises(SealedFieldError):
        sealed.meta["lesions"]


def test_the_exact_labels_score_dice_1_in_every_stratum_and_a_threshold_scores_less(mouse):
    from aiax_bench.baselines.threshold import Threshold
    from aiax_bench.evaluation import Evaluator

    evaluator = Evaluator(mouse, "reference", task="segment")
    test = mouse.split("reference").test
    exact = evaluator.evaluate({s.id: np.asarray(s.read("labels")) for s in test})["aggregate"]
    for key in ("dice/tumour", "dice_small/tumour", "dice_medium/tumour", "dice_large/tumour", "jaccard/mean"):
        assert exact[key]["mean"] == 1.0, key
    assert not any(k.startswith(("porosity/", "pore_count/", "dice_small/pore")) for k in exact)
    method = Threshold({"thresholds": "bayes", "smoothing": 1.0})
    split = mouse.split("reference")
    method.fit(split.train, split.val)
    scores = evaluator.evaluate({s.id: method.predict(s) for s in test})["aggregate"]
    assert 0.0 < scores["dice/tumour"]["mean"] < 1.0
    assert scores["jaccard/mean"]["mean"] < 1.0


def test_the_exact_phantom_scores_best_on_every_image_metric(mouse):
    from aiax_bench.evaluation import Evaluator

    evaluator = Evaluator(mouse, "30proj")
    test = mouse.split("30proj").test
    scores = {name: evaluator.evaluate({s.id: np.asarray(s.read(name)) for s in test})["aggregate"]
              for name in ("truth", "clean", "high", "low")}
    for key in ("psnr/truth", "ssim/truth", "ssim_slices/truth"):
        best = max(scores, key=lambda name: scores[name][key]["mean"])
        assert best == "truth", key
    assert scores["truth"]["mse/truth"]["mean"] == 0.0
    assert scores["low"]["psnr/truth"]["mean"] < scores["high"]["psnr/truth"]["mean"]


def test_segment_entries_on_the_mouse_rank_on_tumour_dice():
    from aiax_bench.leaderboard.rank import default_metric

    assert default_metric(DATASET, "segment") == "dice/tumour"
    assert default_metric(DATASET, "enhance") == "psnr/truth"
    assert default_metric("foam@2.0", "segment") == "jaccard/mean"


def test_touching_lesions_keep_their_own_strata_and_false_positives_count_where_they_grow():
    from aiax_bench.evaluation.segmentation import dice_by_lesion_stratum

    instances = np.zeros((1, 6, 12), dtype=np.int32)
    instances[0, 1:5, 1:5] = 1   # a large lesion (16 voxels)
    instances[0, 1:3, 5:7] = 2   # a small one touching it (4 voxels)
    strata = np.array([2, 0])
    assert dice_by_lesion_stratum(instances > 0, instances, strata)[[0, 2]].tolist() == [1.0, 1.0]
    grown = instances > 0
    grown[0, 1:3, 7] = True       # two voxels grown out of the small lesion: its false positives
    grown[0, 5, 10] = True        # a false positive touching no lesion: no stratum's
    small, medium, large = dice_by_lesion_stratum(grown, instances, strata)
    assert small == pytest.approx(2 * 4 / (6 + 4)) and large == 1.0 and np.isnan(medium)


def test_size_stratified_crops_see_small_tumours_as_often_as_large_ones(mouse):
    from aiax_bench.baselines.unet_seg import UNetSeg
    from aiax_bench.evaluation import EvaluationSpec

    lesions = EvaluationSpec.from_registry(mouse.spec.evaluation).lesions
    train = mouse.split("reference").train
    sample = train[0]
    instances = np.asarray(sample.read("lesions"))
    strata = lesions.strata([r["area_mm2"] for r in sorted(sample.meta["lesions"], key=lambda r: r["id"])])
    small_ids = [k + 1 for k, s in enumerate(strata) if s == 0]

    def share_with_small_tumour(lesion_crops: float) -> float:
        method = UNetSeg({"lesion_crops": lesion_crops, "rare_crops": 0.0, "patch_size": 16})
        method.phases = list(sample.meta["phases"])
        vols = method._volumes(train)
        if lesion_crops:
            method._lesion_centres(vols, train, lesions)
        rng = np.random.default_rng(0)
        hits = 0
        for _ in range(300):
            z, y, x = method._origin(vols[0], rng, 16, 1)
            hits += bool(np.isin(instances[z, y:y + 16, x:x + 16], small_ids).any())
        return hits / 300

    assert share_with_small_tumour(1.0) > 2 * share_with_small_tumour(0.0)
    assert share_with_small_tumour(1.0) > 0.3  # about a third of the crops: one stratum of three


def test_size_stratified_crops_are_refused_on_a_dataset_without_lesions(tiny_v2):
    from aiax_bench.baselines.unet_seg import UNetSeg

    method = UNetSeg({"lesion_crops": 0.5, "max_steps": 1})
    split = tiny_v2.split("reference")
    with pytest.raises(InputError, match="lesion_crops"):
        method.fit(split.train, split.val, seed=0, context={"task": "segment"})
