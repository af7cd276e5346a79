"""Interpretability as pure functions over parameter and activation trees."""

from rljaxinterp.interp import metrics
from rljaxinterp.interp.cache import run_with_cache, sites
from rljaxinterp.interp.interventions import (
    Intervention,
    add,
    mean_ablate,
    patch,
    resample_ablate,
    run_with_interventions,
    run_with_interventions_and_cache,
    scale,
    stack,
    zero_ablate,
)
from rljaxinterp.interp.param_edits import (
    edit_leaf,
    remove_unit,
    unit_mask,
    zero_input_unit,
    zero_output_unit,
)
from rljaxinterp.interp.patching import patching_sweep

__all__ = [
    "Intervention", "add", "edit_leaf", "mean_ablate", "metrics", "patch", "patching_sweep",
    "remove_unit", "resample_ablate", "run_with_cache", "run_with_interventions",
    "run_with_interventions_and_cache", "scale", "sites", "stack", "unit_mask", "zero_ablate",
    "zero_input_unit", "zero_output_unit",
]
