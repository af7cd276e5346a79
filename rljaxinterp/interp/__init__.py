"""Interpretability as pure functions over parameter and activation trees.

One calling convention: every method takes ``(model, params, observations, ...)`` first,
sizes its work with one ``Sizing`` value (``sizing=``), and returns a typed result
(``SiteEffects`` for sweeps, ``ProbeScores``, ``Factorisation``, arrays shaped as documented).

Every method module is an attribute (``interp.probes.fit_probes``), imported on first use so
``import rljaxinterp.interp`` stays light (no matplotlib until ``interp.plots`` is touched).
"""

import importlib

from rljaxinterp.interp import metrics
from rljaxinterp.interp.cache import run_with_cache, site_axes, site_info, sites
from rljaxinterp.interp.interventions import (
    Intervention,
    SubspaceIntervention,
    add,
    mean_ablate,
    orthogonal,
    patch,
    project_out,
    resample_ablate,
    rotated_patch,
    run_with_interventions,
    run_with_interventions_and_cache,
    scale,
    stack,
    subspace_patch,
    zero_ablate,
)
from rljaxinterp.interp.param_edits import (
    edit_leaf,
    remove_unit,
    unit_mask,
    zero_input_unit,
    zero_output_unit,
)
from rljaxinterp.interp.patching import gap_shares, patching_sweep
from rljaxinterp.interp.results import SiteEffects, Sizing
from rljaxinterp.models.sites import SiteInfo

MODULES = (
    "ablation", "attribution", "behaviour", "attribution_patching", "cache", "concepts", "counterfactuals", "dynamics",
    "factorisation", "feature_concepts",
    "interventions", "lookahead", "metrics", "param_edits", "patching", "path_patching", "plots", "probes",
    "results", "sae", "search", "shards", "similarity", "steering", "store",
)


def __getattr__(name: str):
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; method modules: {', '.join(MODULES)}")


def __dir__() -> list[str]:
    return sorted({*globals(), *MODULES})


__all__ = [
    "Intervention", "SiteEffects", "SiteInfo", "Sizing", "SubspaceIntervention", "add", "edit_leaf", "gap_shares",
    "mean_ablate", "metrics",
    "orthogonal", "patch", "patching_sweep", "project_out", "remove_unit", "resample_ablate",
    "rotated_patch", "run_with_cache", "run_with_interventions", "run_with_interventions_and_cache",
    "scale", "site_axes", "site_info", "sites", "stack", "subspace_patch", "unit_mask", "zero_ablate",
    "zero_input_unit", "zero_output_unit",
]
