"""The quickstart's finding: does the agent see an immediate win, and what does it read it from?

On every reachable position where the side to move has exactly one winning line, three
measurements, each with its control:

1. behaviour: the share of those positions where the raw network's greedy move takes the win;
2. attribution by occlusion: the change of log P(winning move) when one square is emptied,
   for the two stones of the winning line against the mover's other stones and the
   opponent's stones (a network that reads the line drops most on the line);
3. a logistic probe for "can win now" over all live positions at every site, against the
   same probe on ``CONTROLS`` untrained networks of the same shape and the majority class.
   The best trained site is compared with the best (site, untrained network) pair, so picking
   the best of many sites does not manufacture a finding.

Thresholds, stated before any number: the line "carries" the decision when emptying a line
stone lowers log P(win) at least twice as much as emptying any other kind of square; the
concept is "decodable" at a site when held-out accuracy beats both controls by 0.05.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.interp.attribution import occlusion
from rljaxinterp.interp.concepts.tic_tac_toe import LINES, planes, threats
from rljaxinterp.interp.probes import fit_probes, site_features
from rljaxinterp.models.base import mask_logits, masked_log_softmax
from rljaxinterp.reporting import pyplot, save_figure

LINE_FACTOR = 2.0  # line stones must matter this many times more than other squares
PROBE_MARGIN = 0.05  # probe accuracy above both controls
CONTROLS = 5  # untrained networks drawn for the probe control


def _win_log_prob(out, data):
    return jnp.take_along_axis(masked_log_softmax(out.logits, data["legal"]), data["win"][:, None], -1)[:, 0]


def win_now_finding(model, params, states, out: Path, seed: int = 0) -> dict:
    """Measure, write ``win_now.png`` and return the numbers and the one-sentence finding."""
    own, opp, empty = (np.asarray(p) for p in planes(states))
    live = ~np.asarray(states.terminated)
    lines = np.asarray(threats(jnp.asarray(own), jnp.asarray(empty)))
    chosen = np.flatnonzero(live & (lines.sum(-1) == 1))
    line_squares = np.asarray(LINES)[lines[chosen].argmax(-1)]  # (positions, 3)
    win = line_squares[empty[chosen][np.arange(len(chosen))[:, None], line_squares]]  # the empty one
    obs = jnp.asarray(states.observation[chosen], jnp.float32)
    data = {"win": jnp.asarray(win), "legal": states.legal_action_mask[chosen]}

    logits = model.apply({"params": params}, obs).logits
    greedy = np.asarray(jnp.argmax(mask_logits(logits, data["legal"]), -1))
    takes_win = float(np.mean(greedy == win))
    chance = float(np.mean(1.0 / np.asarray(data["legal"]).sum(-1)))  # a uniformly random legal move

    effect = np.asarray(occlusion(model, params, obs, _win_log_prob, metric_data=data)).reshape(len(chosen), 9)
    on_line = np.zeros((len(chosen), 9), bool)
    np.put_along_axis(on_line, line_squares, True, -1)
    kinds = {
        "line stone": on_line & own[chosen],
        "other own stone": ~on_line & own[chosen],
        "opponent stone": opp[chosen],
    }
    by_kind = {k: float(effect[m].mean()) if m.any() else float("nan") for k, m in kinds.items()}

    live_obs = jnp.asarray(states.observation[live], jnp.float32)
    concept = {"can_win_now": jnp.asarray(lines[live].any(-1))}
    key = jax.random.key(seed)
    trained = fit_probes(site_features(model, params, live_obs), concept, "logistic", key)
    untrained = np.max([fit_probes(site_features(model, model.init(k, live_obs[:1])["params"], live_obs), concept,
                                   "logistic", key).test[:, 0]
                        for k in jax.random.split(jax.random.key(seed + 1), CONTROLS)], axis=0)
    probe = {s: (float(trained.test[i, 0]), float(untrained[i])) for i, s in enumerate(trained.sites)
             if s not in ("input", "logits", "value")}
    majority = float(trained.baseline[0])
    best = max(probe, key=lambda s: probe[s][0])
    control = max(b for _, b in probe.values())

    others = [v for k, v in by_kind.items() if k != "line stone" and np.isfinite(v)]
    carries = by_kind["line stone"] < 0 and all(by_kind["line stone"] <= LINE_FACTOR * min(o, 0) for o in others)
    decodable = probe[best][0] - max(control, majority) >= PROBE_MARGIN
    sentence = (
        f"The agent takes an immediate win in {100 * takes_win:.0f}% of the {len(chosen)} positions that have "
        f"exactly one (a uniformly random legal move: {100 * chance:.0f}%); emptying a stone of the winning line changes log P(winning move) by "
        f"{by_kind['line stone']:+.2f} on average, against {by_kind['other own stone']:+.2f} for the mover's "
        f"other stones and {by_kind['opponent stone']:+.2f} for the opponent's "
        f"({'the line carries the decision' if carries else 'no sign that the line carries the decision'}); "
        f"'can win now' {'is' if decodable else 'is not'} linearly decodable at `{best}` beyond the controls "
        f"(held-out accuracy {probe[best][0]:.3f}; {CONTROLS} untrained networks, best site {control:.3f}; "
        f"majority class "
        f"{majority:.3f})."
    )
    figure = _plot(by_kind, probe, majority, out / "win_now.png")
    return {"sentence": sentence, "positions": int(len(chosen)), "takes_win": takes_win, "random_takes_win": chance,
            "occlusion_by_square_kind": by_kind, "line_carries_decision": bool(carries),
            "probe_accuracy": {s: {"trained": a, "untrained_best": b} for s, (a, b) in probe.items()},
            "probe_majority_baseline": majority, "best_probe_site": best, "probe_control_best": control, "decodable": bool(decodable),
            "figure": figure.name}


def _plot(by_kind: dict, probe: dict, majority: float, path: Path) -> Path:
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    ax.bar(list(by_kind), list(by_kind.values()), color=["C3", "C0", "C7"])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("change of log P(winning move)"), ax.set_title("emptying one square (occlusion)")
    ax.tick_params(axis="x", labelsize=8)
    sites = list(probe)
    x = np.arange(len(sites))
    ax2.bar(x - 0.2, [probe[s][0] for s in sites], 0.4, label="trained")
    ax2.bar(x + 0.2, [probe[s][1] for s in sites], 0.4, label=f"best of {CONTROLS} untrained (control)")
    ax2.axhline(majority, color="k", ls="--", lw=1, label="majority class")
    ax2.set_xticks(x, sites, rotation=30, ha="right", fontsize=8)
    ax2.set_ylim(min(0.5, majority - 0.05), 1.0), ax2.set_title("probe for 'can win now' (held-out accuracy)")
    ax2.legend(fontsize=8)
    return save_figure(fig, path)
