"""The dataset registry: ``datasets/registry.yaml`` and the recipes it points to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from aiax_bench.errors import InputError, UnknownNameError

__all__ = ["CONE_RECIPE_SCHEMA",
           "FRAMES_RECIPE_SCHEMA", "IMPORTED_PROFILE", "IMPORTED_VERSION", "MEASURED_RECIPE_SCHEMA", "RECIPE_SCHEMAS",
           "REFERENCE_SPLIT", "REGISTRY_SCHEMA", "DatasetVersion", "SplitSpec",
           "imported_datasets", "list_datasets", "load_registry", "manifest_sha256", "recipe_schema", "resolve"]

PARTS = ("train", "val", "test", "ood-test")
#: The version and profile of every imported dataset (``aiax-bench import``): one store per name.
IMPORTED_VERSION = "user"
IMPORTED_PROFILE = "full"
REFERENCE_SPLIT = "reference"
"""Pseudo-split whose input is the reference scan (segmentation of high-quality data)."""

#: JSON Schema of registry.yaml (checked by the test suite and on load).
REGISTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["title", "latest", "versions"],
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string"},
            "latest": {"type": "string"},
            "versions": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "type": "object",
                    "required": ["recipe", "recipe_sha256", "default_profile", "evaluation"],
                    "additionalProperties": False,
                    "properties": {
                        "recipe": {"type": "string"},
                        "recipe_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "default_profile": {"type": "string"},
                        "content_sha256": {
                            "description": "content sha256 of the store each profile builds to (bit-identical "
                                           "on every machine); leaderboard entries must carry it",
                            "type": "object",
                            "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        },
                        "archives": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["sha256", "size", "content_sha256", "fingerprint", "urls"],
                                "additionalProperties": False,
                                "properties": {
                                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                    "size": {"type": "integer", "minimum": 1},
                                    "content_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                    "fingerprint": {"type": "string"},
                                    "urls": {"type": "array", "items": {"type": "string",
                                                                         "pattern": "^https?://"}},
                                },
                            },
                        },
                        "evaluation": {
                            "type": "object",
                            "required": ["mask"],
                            # Volumes are scored on a fixed intensity range; frame stacks' blobs are matched
                            # by their overlap instead.
                            "oneOf": [{"required": ["data_range"]}, {"required": ["iou_threshold"]}],
                            "additionalProperties": False,
                            "properties": {
                                "data_range": {"type": "number", "exclusiveMinimum": 0},
                                "iou_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                "mask": {"enum": ["sample", "none"]},
                                "mask_erosion": {"type": "integer", "minimum": 0},
                                "pore_threshold": {"type": "number", "exclusiveMinimum": 0},
                                "pore_phases": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                "rank_metric": {"type": "string", "pattern": "^[a-z0-9_]+/[a-z0-9_]+$"},
                                "extra_scores": {"type": "array", "items": {"enum": ["mcc"]}},
                                "otsu_per_image": {"type": "boolean"},
                                # Anatomy has no pore space: no porosity statistics (default true).
                                "porosity": {"type": "boolean"},
                                # Lesions scored one by one in fixed size strata (evaluation.LesionSpec).
                                "lesions": {
                                    "type": "object",
                                    "required": ["name", "phases", "strata_mm2"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                                        "phases": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                        "strata_mm2": {"type": "array", "minItems": 2, "maxItems": 2,
                                                       "items": {"type": "number", "exclusiveMinimum": 0}},
                                    },
                                },
                                # What segmentation entries rank on (default jaccard/mean), e.g. dice/tumour.
                                "segment_rank_metric": {"type": "string", "pattern": "^[a-z0-9_]+/[a-z0-9_]+$"},
                            },
                        },
                    },
                },
            },
        },
    },
}

#: The recipe keys of the detector artefacts (aiax_bench.sim.artefacts), in every beam geometry's splits.
_DETECTOR_ARTEFACT_KEYS: dict[str, Any] = {
    "defective_fraction": {"type": "number", "minimum": 0, "maximum": 1},
    "gain_sigma": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "psf_sigma_px": {"type": "number", "exclusiveMinimum": 0},
    "zingers_per_projection": {"type": "number", "minimum": 0},
    "brightness": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2},
    "n_flats": {"type": "integer", "minimum": 1},
}

RECIPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["family", "phantom", "voxel_size_um", "acquisition", "reconstruction", "splits", "profiles"],
    "properties": {
        "family": {"type": "string"},
        "voxel_size_um": {"type": "number", "exclusiveMinimum": 0},
        "acquisition": {
            "type": "object",
            "required": ["reference_angles", "photons"],
            "properties": {
                "reference_angles": {"type": "integer", "minimum": 1},
                "photons": {"type": "number", "exclusiveMinimum": 0},
                "independent_noise": {"type": "boolean"},
                # aiax_bench.sim.project.PROJECTION_METHODS; absent: "auto", what earlier recipes were built with
                "projection": {"enum": ["auto", "analytic", "voxels"]},
                # aiax_bench.data.build.NOISE_DRAWS; absent: "sequential", what earlier recipes were built with
                "noise": {"enum": ["sequential", "row-blocks", "row-blocks-averaged"]},
            },
        },
        "reconstruction": {
            "type": "object",
            "properties": {
                "filter": {"type": "string"},
                "store_clean": {"type": "boolean"},
            },
        },
        "splits": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["kind", "description"],
                # A misspelt key (``binning: 2`` for ``factor: 2``) is refused, not silently ignored.
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": ["sparse", "dose", "binning", "continuous", "rings", "blur", "zingers",
                                      "flat-noise", "phase-contrast", "beam-hardening"]},
                    "n_angles": {"type": "integer", "minimum": 1},
                    "dose_factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "factor": {"type": "integer", "minimum": 2},
                    "steps": {"type": "integer", "minimum": 1},
                    # continuous: the exposure arcs tile the half turn, sampled at the reference's own angles
                    "sub_angles": {"enum": ["reference"]},
                    **_DETECTOR_ARTEFACT_KEYS,
                    # propagation-based phase contrast (aiax_bench.sim.propagation.phase_contrast_scan)
                    "energy_kev": {"type": "number", "exclusiveMinimum": 0},
                    "distance_m": {"type": "number", "minimum": 0},
                    "material": {"type": "object", "required": ["formula", "density_g_cm3"],
                                 "additionalProperties": False,
                                 "properties": {"formula": {"type": "string"},
                                                "density_g_cm3": {"type": "number", "exclusiveMinimum": 0}}},
                    # a sample of several materials: each attenuating phase's (phase-contrast)
                    "materials": {"type": "object", "minProperties": 1, "additionalProperties": {
                        "type": "object", "required": ["formula", "density_g_cm3"], "additionalProperties": False,
                        "properties": {"formula": {"type": "string"},
                                       "density_g_cm3": {"type": "number", "exclusiveMinimum": 0}}}},
                    # a pink beam instead of a monochromatic one (then no energy_kev)
                    "source": {"type": "object", "additionalProperties": False,
                               "required": ["kind", "ring_energy_gev", "field_t", "energies_kev"],
                               "properties": {
                                   "kind": {"const": "bending-magnet"},
                                   "ring_energy_gev": {"type": "number", "exclusiveMinimum": 0},
                                   "field_t": {"type": "number", "exclusiveMinimum": 0},
                                   "energies_kev": {"type": "object", "additionalProperties": False,
                                                    "required": ["first", "last", "step"],
                                                    "properties": {k: {"type": "number", "exclusiveMinimum": 0}
                                                                   for k in ("first", "last", "step")}},
                                   "filters_mm": {"type": "object",
                                                  "additionalProperties": {"type": "number", "minimum": 0}}}},
                    # a lab tube's polychromatic beam (beam-hardening; aiax_bench.sim.spectrum.tube_spectrum)
                    "spectrum": {"type": "object", "additionalProperties": False, "required": ["kvp"],
                                 "properties": {"kvp": {"type": "number", "exclusiveMinimum": 0},
                                                "anode_angle_deg": {"type": "number", "exclusiveMinimum": 0},
                                                "filters": {"type": "object",
                                                            "additionalProperties": {"type": "number", "minimum": 0}},
                                                "detector": {"enum": ["energy-integrating", "photon-counting"]}}},
                    "scintillator": {"type": "object", "additionalProperties": False,
                                     "required": ["formula", "density_g_cm3", "thickness_um"],
                                     "properties": {"formula": {"type": "string"},
                                                    "density_g_cm3": {"type": "number", "exclusiveMinimum": 0},
                                                    "thickness_um": {"type": "number", "exclusiveMinimum": 0}}},
                    "description": {"type": "string"},
                },
            },
        },
        "profiles": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["size", "samples"],
                "properties": {
                    "size": {"type": "integer", "minimum": 8},
                    # A profile of its own voxel size keeps the field of view (an animal must fit whole).
                    "voxel_size_um": {"type": "number", "exclusiveMinimum": 0},
                    "samples": {
                        "type": "object",
                        "required": list(PARTS),
                        "additionalProperties": False,
                        "properties": {p: {"type": "array", "items": {"type": "integer"}} for p in PARTS},
                    },
                },
            },
        },
    },
}


def _splits_schema(kind: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A recipe's ``splits``: named splits of one ``kind``, each with a description and only ``fields`` besides."""
    return {"type": "object", "minProperties": 1, "additionalProperties": {
        "type": "object", "required": ["kind", "description"], "additionalProperties": False,
        "properties": {"kind": {"const": kind}, **fields, "description": {"type": "string"}}, **extra}}


#: JSON Schema of a measured dataset's recipe (``source: measured``): real scans downloaded from the
#: files its manifest lists and converted into a store, never simulated; samples are named phantoms.
MEASURED_RECIPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["family", "source", "manifest", "description", "licence", "citation", "acquisition",
                 "reconstruction", "truth", "splits", "profiles"],
    "additionalProperties": False,
    "properties": {
        "family": {"type": "string"},
        "source": {"const": "measured"},
        "manifest": {"type": "string"},
        "description": {"type": "string"},
        "licence": {"type": "string"},
        "citation": {"type": "string"},
        "acquisition": {
            "type": "object",
            "required": ["reference_angles", "beam"],
            "additionalProperties": False,
            "properties": {"reference_angles": {"type": "integer", "minimum": 1},
                           "beam": {"enum": ["parallel", "fan"]},
                           "description": {"type": "string"}},
        },
        "reconstruction": {
            "type": "object",
            "required": ["filter", "grid"],
            "additionalProperties": False,
            "properties": {"filter": {"type": "string"}, "grid": {"type": "integer", "minimum": 8}},
        },
        "truth": {
            "type": "object",
            "required": ["phases", "attenuation_per_cm", "description"],
            "additionalProperties": False,
            "properties": {"phases": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                           "attenuation_per_cm": {"type": "array", "items": {"type": "number", "minimum": 0}},
                           "description": {"type": "string"}},
        },
        "splits": _splits_schema("views", {"every": {"type": "integer", "minimum": 2},
                                           "arc_degrees": {"type": "number", "exclusiveMinimum": 0, "maximum": 360}},
                                 oneOf=[{"required": ["every"]}, {"required": ["arc_degrees"]}]),
        "profiles": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["size", "samples"],
                "additionalProperties": False,
                "properties": {
                    "size": {"type": "integer", "minimum": 8},
                    "description": {"type": "string"},
                    "samples": {
                        "type": "object",
                        "required": list(PARTS),
                        "additionalProperties": False,
                        "properties": {p: {"type": "array", "items": {"type": "string"}} for p in PARTS},
                    },
                },
            },
        },
    },
}


_COUNT = {"type": "integer", "minimum": 0}
_NONNEGATIVE = {"type": "number", "minimum": 0}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_POSITIVE_RANGE = {"type": "array", "items": _POSITIVE, "minItems": 2, "maxItems": 2}
#: The stack's size: what a profile of a frame-stack recipe sets (``SpotStackSpec`` fields).
_STACK_FIELDS: dict[str, Any] = {
    "n_frames": {"type": "integer", "minimum": 1},
    "frame_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
    "n_blobs": _COUNT,
    "beam_size": {"type": "array", "items": _COUNT, "minItems": 2, "maxItems": 2},
}
#: What a split may change: the illumination and the detector, which draw nothing that places or labels a
#: blob, so that every split of a sample has the same labels.
_DETECTOR_FIELDS: dict[str, Any] = {
    "beam_counts": _NONNEGATIVE, "background_counts": _NONNEGATIVE, "glow_counts": _NONNEGATIVE,
    "glow_length": _POSITIVE, "source_amplitude": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "source_period": _POSITIVE, "source_jitter": _NONNEGATIVE, "dark_counts": _NONNEGATIVE,
    "dark_spread": _NONNEGATIVE, "readout_sigma": _NONNEGATIVE, "poisson": {"type": "boolean"},
    "n_hot_pixels": _COUNT, "hot_counts": _NONNEGATIVE, "zingers_per_frame": _NONNEGATIVE,
    "zinger_counts": _POSITIVE_RANGE, "zinger_length": {"type": "integer", "minimum": 1},
    "grid": {"type": "boolean"}, "grid_gain_spread": _NONNEGATIVE, "grid_offset_spread": _NONNEGATIVE,
}
#: The blobs' geometry: set once for the whole recipe.
_BLOB_FIELDS: dict[str, Any] = {
    "beam_clearance": _COUNT, "yx_sigma": _POSITIVE_RANGE, "psi_sigma": _POSITIVE_RANGE,
    "psi_jitter": _NONNEGATIVE, "peak_counts": _POSITIVE_RANGE, "truncate": _POSITIVE,
    "label_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "overlap": {"type": "boolean"},
}

#: JSON Schema of a frame-stack recipe (``source: frames``): seeded stacks of detector frames ``(psi, y, x)``
#: (``aiax_bench.dct.SpotStackSpec``) with exact blob labels. ``spec`` holds every simulator parameter but
#: the stack's size, which each profile's ``stack`` sets; a split's ``detector`` overrides detector
#: parameters only. Every key is checked: a misspelt one is refused.
FRAMES_RECIPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["family", "source", "description", "spec", "splits", "profiles"],
    "additionalProperties": False,
    "properties": {
        "family": {"type": "string"},
        "source": {"const": "frames"},
        "description": {"type": "string"},
        "spec": {
            "type": "object",
            "required": sorted({**_BLOB_FIELDS, **_DETECTOR_FIELDS}),
            "additionalProperties": False,
            "properties": {**_BLOB_FIELDS, **_DETECTOR_FIELDS},
        },
        "splits": _splits_schema("frames", {"detector": {"type": "object", "additionalProperties": False,
                                                         "properties": _DETECTOR_FIELDS}}),
        "profiles": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["stack", "samples"],
                "additionalProperties": False,
                "properties": {
                    "description": {"type": "string"},
                    "stack": {"type": "object", "required": sorted(_STACK_FIELDS), "additionalProperties": False,
                              "properties": _STACK_FIELDS},
                    "samples": {
                        "type": "object",
                        "required": list(PARTS),
                        "additionalProperties": False,
                        "properties": {p: {"type": "array", "items": {"type": "integer", "minimum": 0}}
                                       for p in PARTS},
                    },
                },
            },
        },
    },
}

#: JSON Schema of a cone-beam simulated dataset's recipe (``source: cone-beam``): a lab micro-CT's
#: circular cone-beam scan of a phantom (:mod:`aiax_bench.data.cone`), its tube spectrum and the
#: phantom's material, splits by projections, dose, short scan, arc, polychromatic beam and detector artefacts.
CONE_RECIPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["family", "source", "description", "phantom", "material", "voxel_size_um", "acquisition",
                 "reconstruction", "splits", "profiles"],
    "additionalProperties": False,
    "properties": {
        "family": {"type": "string"},
        "source": {"const": "cone-beam"},
        "description": {"type": "string"},
        "phantom": {"type": "object", "required": ["generator"]},
        "ood_phantom": {"type": "object"},
        "material": {
            "type": "object", "required": ["name", "composition", "density_g_cm3", "attenuation_parameter"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "composition": {"type": "object", "minProperties": 1,
                                "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
                "density_g_cm3": {"type": "number", "exclusiveMinimum": 0},
                # The phantom generator's parameter that receives the material's effective attenuation.
                "attenuation_parameter": {"type": "string"},
            },
        },
        "voxel_size_um": {"type": "number", "exclusiveMinimum": 0},
        "acquisition": {
            "type": "object",
            "required": ["beam", "source_origin", "origin_detector", "reference_angles", "photons", "spectrum"],
            "additionalProperties": False,
            "properties": {
                "beam": {"const": "cone"},
                "source_origin": {"type": "number", "exclusiveMinimum": 0.5},
                "origin_detector": {"type": "number", "minimum": 0},
                "reference_angles": {"type": "integer", "minimum": 2},
                "photons": {"type": "number", "exclusiveMinimum": 0},
                "spectrum": {
                    "type": "object", "required": ["kvp", "filters"], "additionalProperties": False,
                    "properties": {
                        "kvp": {"type": "number", "exclusiveMinimum": 0},
                        "anode_angle_deg": {"type": "number", "exclusiveMinimum": 0, "maximum": 90},
                        "filters": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
                        "detector": {"enum": ["energy-integrating", "photon-counting"]},
                    },
                },
            },
        },
        "reconstruction": {"type": "object", "additionalProperties": False,
                           "properties": {"filter": {"type": "string"}, "store_clean": {"type": "boolean"}}},
        "splits": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {
                "type": "object", "required": ["kind", "description"], "additionalProperties": False,
                "properties": {
                    "kind": {"enum": ["sparse", "dose", "short-scan", "arc", "polychromatic", "rings", "blur",
                                      "zingers", "flat-noise"]},
                    "n_angles": {"type": "integer", "minimum": 1},
                    "dose_factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "arc_degrees": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 360},
                    **_DETECTOR_ARTEFACT_KEYS,
                    "description": {"type": "string"},
                },
            },
        },
        "profiles": RECIPE_SCHEMA["properties"]["profiles"],
    },
}

#: The schema of each recipe ``source`` (a recipe without one is a simulated parallel-beam CT dataset).
RECIPE_SCHEMAS: dict[str, dict[str, Any]] = {
    "simulated": RECIPE_SCHEMA, "measured": MEASURED_RECIPE_SCHEMA, "frames": FRAMES_RECIPE_SCHEMA,
    "cone-beam": CONE_RECIPE_SCHEMA,
}


def recipe_schema(recipe: Any) -> dict[str, Any]:
    """The JSON Schema a recipe is checked against, chosen by its ``source`` (:data:`RECIPE_SCHEMAS`)."""
    source = recipe.get("source", "simulated") if isinstance(recipe, dict) else "simulated"
    if source not in RECIPE_SCHEMAS:
        raise InputError("recipe field source", f"is {source!r}", f"expected one of {sorted(RECIPE_SCHEMAS)}")
    return RECIPE_SCHEMAS[source]


@dataclass(frozen=True)
class SplitSpec:
    """How one split's low-quality input was acquired, from the recipe's ``splits`` (typed).

    Attributes
    ----------
    name : str
        Split name (``100proj``, ``dose-1/16``, ``res-x2``, ...).
    kind : str
        One of ``sparse``, ``dose``, ``binning``, ``continuous``, ``rings``,
        ``blur``, ``zingers``, ``flat-noise``, ``phase-contrast``, ``beam-hardening`` (simulated parallel beam),
        ``short-scan``, ``arc``, ``polychromatic`` (simulated cone beam, with the four detector artefacts),
        ``subsample``, ``pair``, ``views``, ``frames``.
        What the split saves against the reference scan; an imported scan's
        splits are ``subsample`` (N of its own projections) or ``pair`` (a
        second scan of the sample); a measured dataset's are ``views`` (some
        of the measured views: every ``every``-th, or an arc of ``arc_degrees``);
        a frame-stack dataset's are ``frames`` (the raw detector frames, as
        its ``detector`` settings record them).
    description : str
        The recipe's words for it.
    n_angles : int, optional
        Projections (``sparse``, ``continuous``).
    dose_factor : float, optional
        Photons per projection as a fraction of the reference's (``dose``).
    factor : int, optional
        Detector binning factor per axis (``binning``).
    steps : int, optional
        Sub-steps integrated over each exposure arc (``continuous``).
    sub_angles : str, optional
        ``reference``: the exposure arcs tile the half turn and are sampled at the reference scan's own
        angles, ``reference_angles / n_angles`` per arc (``continuous``; instead of ``steps``).
    every : int, optional
        Every ``every``-th measured view (``views``).
    arc_degrees : float, optional
        A contiguous arc of the measured views, in degrees (``views``), or of the
        reference scan's source positions (``arc``).
    detector : dict, optional
        Detector and illumination parameters that differ from the recipe's ``spec`` (``frames``).
    defective_fraction, gain_sigma : float, optional
        Fraction of detector pixels with an uncorrected gain, and its relative spread (``rings``).
    psf_sigma_px : float, optional
        The detector's Gaussian point-spread function, sigma in pixels (``blur``).
    zingers_per_projection : float, optional
        Mean zingers per projection (``zingers``).
    brightness : list of float, optional
        A zinger's extra counts, range in open-beam units (``zingers``).
    n_flats : int, optional
        Open-beam images averaged into the flat field (``flat-noise``).
    energy_kev, distance_m : float, optional
        Monochromatic photon energy (keV) and sample-to-detector distance (m) (``phase-contrast``);
        a pink beam (``source``) has no ``energy_kev``: the truth is its effective attenuation.
    source : dict, optional
        A pink beam (``phase-contrast``): ``kind: bending-magnet``, ``ring_energy_gev``, ``field_t``,
        ``energies_kev`` (``first``, ``last``, ``step``) and ``filters_mm`` (element -> mm).
    scintillator : dict, optional
        ``formula``, ``density_g_cm3`` and ``thickness_um`` of the detector's scintillator, whose
        absorption weighs a pink beam's energies (``phase-contrast`` with a ``source``).
    spectrum : dict, optional
        A lab tube's ``kvp``, ``anode_angle_deg``, ``filters`` (material -> mm) and ``detector``
        (``beam-hardening``, through the phantom's one material, given as ``material``).
    material : dict, optional
        ``formula`` and ``density_g_cm3`` of the sample's one material, whose ``delta / beta``
        the phase shift follows (``phase-contrast``), or whose attenuation over energy hardens the
        beam (``beam-hardening``); with ``materials``, the one Paganin's retrieval assumes.
    materials : dict, optional
        Phase name -> ``formula`` and ``density_g_cm3`` of each attenuating phase of a sample of
        several materials, whose own ``delta / beta`` gives its phase shift (``phase-contrast``).
    """

    name: str
    kind: str
    description: str
    n_angles: int | None = None
    dose_factor: float | None = None
    factor: int | None = None
    steps: int | None = None
    sub_angles: str | None = None
    every: int | None = None
    arc_degrees: float | None = None
    detector: dict[str, Any] | None = None
    defective_fraction: float | None = None
    gain_sigma: float | None = None
    psf_sigma_px: float | None = None
    zingers_per_projection: float | None = None
    brightness: list[float] | None = None
    n_flats: int | None = None
    energy_kev: float | None = None
    distance_m: float | None = None
    material: dict[str, Any] | None = None
    materials: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    scintillator: dict[str, Any] | None = None
    spectrum: dict[str, Any] | None = None


@dataclass(frozen=True)
class DatasetVersion:
    """One registered dataset version and its recipe."""

    name: str
    version: str
    title: str
    recipe: dict[str, Any]
    recipe_sha256: str
    default_profile: str
    evaluation: dict[str, Any]
    archives: dict[str, dict[str, Any]]
    #: Content sha256 of the store each profile builds to, where the registry publishes one.
    content_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def imported(self) -> bool:
        """Whether this is a user's imported scan (``aiax-bench import``), not a registered simulation."""
        return self.recipe.get("family") == "imported"

    @property
    def measured(self) -> bool:
        """Whether the samples are real scans converted from downloaded files (never simulated)."""
        return self.recipe.get("source") == "measured"

    @property
    def frames(self) -> bool:
        """Whether the samples are stacks of detector frames ``(psi, y, x)`` with blob labels (task ``dct``)."""
        # An imported scan's manifest names the file it came from as its ``source``.
        return not self.imported and self.recipe.get("source") == "frames"

    @property
    def beam(self) -> str:
        """``parallel``, ``fan`` or ``cone``: the geometry of the stored sinograms."""
        return self.recipe.get("acquisition", {}).get("beam", "parallel")

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        return self.recipe["splits"]

    def split_spec(self, name: str) -> SplitSpec:
        """The typed acquisition of split ``name`` (the recipe schema has checked its keys)."""
        self.check_split(name)
        return SplitSpec(name=name, **self.splits[name])

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.recipe["profiles"]

    def voxel_size_um(self, profile: str) -> float:
        """The voxel edge (µm) of ``profile``: its own where it states one, else the recipe's."""
        self.check_profile(profile)
        return float(self.profiles[profile].get("voxel_size_um", self.recipe["voxel_size_um"]))

    def fingerprint(self, profile: str) -> dict[str, dict[str, float]] | None:
        """Per-array summary statistics of the published store of ``profile``, if any."""
        archive = self.archives.get(profile)
        if archive is None:
            return None
        import json

        return json.loads(recipe_bytes(archive["fingerprint"]))

    def check_split(self, split: str, *, allow_reference: bool = False) -> None:
        """Refuse an unknown split; ``reference`` (the reference scan as input) only where allowed."""
        if allow_reference and split == REFERENCE_SPLIT:
            return
        if split not in self.splits:
            known = [*self.splits, *([REFERENCE_SPLIT] if allow_reference else [])]
            hint = f"see `aiax-bench datasets splits {self.name}`"
            if split == REFERENCE_SPLIT:
                hint = "the reference split (reference scan as input) is for the segment task only"
            raise UnknownNameError("split", split, known, hint)

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise UnknownNameError("profile", profile, list(self.profiles),
                                   f"profiles of {self.ref} are listed by `aiax-bench datasets info {self.ref}`")


def _catalog():
    return resources.files("aiax_bench").joinpath("catalog")


def _validate(document: Any, schema: dict[str, Any], where: str) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: e.path)
    if errors:
        err = errors[0]
        field = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise InputError(f"{where}: field {field}", f"is invalid ({err.message})",
                         "fix the file so it matches the registry schema")


@cache
def load_registry() -> dict[str, Any]:
    """The parsed and schema-checked ``registry.yaml``."""
    document = yaml.safe_load(_catalog().joinpath("registry.yaml").read_text())
    _validate(document, REGISTRY_SCHEMA, "registry.yaml")
    return document


def recipe_bytes(path: str) -> bytes:
    return _catalog().joinpath(path).read_bytes()


def list_datasets() -> list[DatasetVersion]:
    """Every registered dataset version, latest first within each name, then the imported ones."""
    return [*(resolve(f"{name}@{v}") for name, entry in load_registry().items()
              for v in sorted(entry["versions"], reverse=True)), *imported_datasets()]


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of an imported dataset's manifest as canonical JSON: its recipe hash."""
    import json

    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _imported_store(name: str):
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir

    return store_path(data_dir(), name, IMPORTED_VERSION, IMPORTED_PROFILE)


def _resolve_imported(name: str) -> DatasetVersion | None:
    """The imported dataset ``name`` from its store's manifest, or None when there is none."""
    import json

    metadata = _imported_store(name) / "zarr.json"
    if not metadata.is_file():
        return None
    try:
        manifest = json.loads(metadata.read_text())["attributes"]["manifest"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(metadata), f"holds no readable manifest ({type(exc).__name__})",
                         f"import the scan again with `aiax-bench import SOURCE --name {name} --force`") from None
    return DatasetVersion(name=name, version=IMPORTED_VERSION, title=manifest["title"], recipe=manifest,
                          recipe_sha256=manifest_sha256(manifest), default_profile=IMPORTED_PROFILE,
                          evaluation=manifest["evaluation"], archives={})


def imported_datasets() -> list[DatasetVersion]:
    """Every dataset imported into the data directory, by name."""
    from aiax_bench.paths import data_dir

    root = data_dir()
    if not root.is_dir():
        return []
    import warnings

    specs = []
    for name in sorted(p.parent.parent.name for p in root.glob(f"*/{IMPORTED_VERSION}/{IMPORTED_PROFILE}.zarr")):
        try:
            spec = _resolve_imported(name)
        except InputError as exc:  # one damaged import does not hide the others
            warnings.warn(str(exc), stacklevel=2)
            continue
        if spec is not None:
            specs.append(spec)
    return specs


def resolve(ref: str) -> DatasetVersion:
    """Look up ``name`` (latest version) or ``name@version`` in the registry, then among imported scans."""
    registry = load_registry()
    name, _, version = ref.partition("@")
    if name not in registry:
        imported = _resolve_imported(name) if version in ("", IMPORTED_VERSION) else None
        if imported is not None:
            return imported
        known = [*registry, *(s.name for s in imported_datasets())]
        raise UnknownNameError("dataset", name, known, "see `aiax-bench datasets list`, or `aiax-bench import` "
                               "your own scan")
    entry = registry[name]
    version = version or entry["latest"]
    if version not in entry["versions"]:
        raise UnknownNameError(f"version of {name}", version, list(entry["versions"]),
                               "see `aiax-bench datasets list`")
    spec = entry["versions"][version]
    raw = recipe_bytes(spec["recipe"])
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec["recipe_sha256"]:
        raise InputError(f"recipe {spec['recipe']} of {name}@{version}",
                         f"has sha256 {digest}, registry says {spec['recipe_sha256']}",
                         "a changed recipe needs a new version in registry.yaml")
    recipe = yaml.safe_load(raw)
    _validate(recipe, recipe_schema(recipe), spec["recipe"])
    return DatasetVersion(name=name, version=version, title=entry["title"], recipe=recipe,
                          recipe_sha256=digest, default_profile=spec["default_profile"],
                          evaluation=spec["evaluation"], archives=spec.get("archives", {}),
                          content_sha256=spec.get("content_sha256", {}))
