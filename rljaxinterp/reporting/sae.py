"""An SAE grid on an agent, scored and drawn: fit on some states, measure on the others.

``sae_report`` trains the grid on the activations of a training share of the states and
measures each member on the held-out states: reconstruction (L0, FVE, dead, dense), the cost
of splicing it into the agent (policy KL, value MSE, share of greedy moves changed), and its
features as concepts (best feature per concept, coverage, board-reconstruction F1 from the
observation's piece planes). ``write_dashboard`` turns that into figures and a Markdown page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from rljaxinterp.interp import feature_concepts as fc
from rljaxinterp.interp import sae
from rljaxinterp.interp.cache import cache_states
from rljaxinterp.reporting import jsonable, pyplot, save_figure

STRONG = 0.9  # AUROC at which a concept counts as having its own feature


def board_planes(obs: np.ndarray) -> dict[str, np.ndarray] | None:
    """Per-square piece facts read off board observations ``(states, rows, cols, planes)`` whose
    planes are 0/1 piece maps (mover, opponent, ...): one ``(states, squares)`` table per plane
    and one for empty squares; None for observations that are not boards."""
    o = np.asarray(obs)
    if o.ndim != 4 or o.shape[-1] > 4 or not np.all((o == 0) | (o == 1)):
        return None
    names = ["own_piece", "opponent_piece"] + [f"plane{i}" for i in range(2, o.shape[-1])]
    facts = {names[i]: o[..., i].reshape(len(o), -1) for i in range(o.shape[-1])}
    facts["empty"] = (o.sum(-1) == 0).reshape(len(o), -1)
    return facts


def _spatial(acts: jax.Array, obs: np.ndarray) -> bool:
    return acts.ndim == 4 and obs.ndim == 4 and acts.shape[1:3] == obs.shape[1:3]


def feature_scores(s: sae.SAE, acts: jax.Array, obs: np.ndarray, concepts: Mapping[str, np.ndarray]) -> dict:
    """One SAE's features against the state concepts and the board: at a spatial site each
    (state, square) row is compared with the facts of that square, elsewhere each state with
    the whole board."""
    f = np.asarray(s.encode(acts))
    per_state = fc.state_features(f)
    binary = {k: v for k, v in concepts.items() if fc.is_binary(np.asarray(v))}
    match = fc.match_concepts(per_state, concepts)
    cover = fc.coverage(per_state, np.stack([np.asarray(v) for v in binary.values()], 1)) if binary else np.zeros(0)
    result = {"match": match, "coverage": dict(zip(binary, cover.tolist())),
              "coverage_mean": float(cover.mean()) if cover.size else float("nan")}
    planes = board_planes(obs)
    if planes is not None:
        if _spatial(acts, obs):  # local facts: what is on this square
            local = np.stack([p.reshape(-1) for p in planes.values()], 1)
            rows = f.reshape(-1, f.shape[-1])
            result["board_f1"] = fc.board_reconstruction_f1(rows, local)
        else:
            table, _ = fc.square_table(planes)
            result["board_f1"] = fc.board_reconstruction_f1(per_state, table)
    result["feature_activations"] = f
    return result


def sae_report(model, params, obs: jax.Array, concepts: Mapping[str, np.ndarray], sites: Sequence[str],
               kinds: Sequence[str], widths: Sequence[int], sparsities, config: sae.SAEConfig,
               legal_mask: jax.Array | None = None, test_fraction: float = 0.25, progress: bool = True) -> dict:
    """Fit the grid on a random ``1 - test_fraction`` of the states, score it on the rest."""
    n = obs.shape[0]
    order = np.random.default_rng(config.seed).permutation(n)
    test = np.sort(order[: max(1, int(test_fraction * n))])
    train = np.sort(order[len(test):])
    rows = sae.site_rows(model, params, obs[train], sites)
    grid = sae.fit_saes(rows, kinds, widths, sparsities, config, progress=progress)
    test_obs = obs[test]
    test_rows = sae.site_rows(model, params, test_obs, sites)
    quality = sae.evaluate_saes(grid, test_rows)
    cost = sae.splice_cost(model, params, test_obs, grid, legal_mask=None if legal_mask is None else legal_mask[test])
    cache = cache_states(model, params, test_obs, list(sites))  # sharded over the devices when several
    test_concepts = {k: np.asarray(v)[test] for k, v in concepts.items()}
    members = []
    for i, member in enumerate(grid.members):
        scores = feature_scores(grid[i], cache[member.site], np.asarray(test_obs), test_concepts)
        best = scores["match"].best_feature()
        members.append({"site": member.site, "kind": member.kind, "width": member.width, "sparsity": member.sparsity,
                        **{k: v for k, v in quality[i].items() if k != "frequency"}, **cost[i],
                        "coverage_mean": scores["coverage_mean"], "board_f1": scores.get("board_f1"),
                        "concepts_with_own_feature": sorted(
                            c for c, (_, a) in best.items() if c in scores["coverage"] and a >= STRONG),
                        "best_feature_per_concept": {c: {"feature": f, "score": a} for c, (f, a) in best.items()},
                        "frequency": quality[i]["frequency"], "_scores": scores})
    return {"grid": grid, "members": members, "train_states": train, "test_states": test,
            "test_obs": np.asarray(test_obs)}


def chosen_member(members: list[dict], site: str) -> int:
    """The member shown in a site's feature cards: the best coverage among those whose splice
    recovers at least 90% of the policy (all of the site's members if none does)."""
    at_site = [i for i, m in enumerate(members) if m["site"] == site]
    faithful = [i for i in at_site if np.nan_to_num(members[i]["kl_recovered"]) >= 0.9] or at_site
    return max(faithful, key=lambda i: np.nan_to_num(members[i]["coverage_mean"], nan=-1.0))


def plot_pareto(members: list[dict], path: Path, title: str) -> Path:
    """L0 against variance explained, against the policy KL of the spliced agent, against
    concept coverage; plus every member's feature-density histogram."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    sites = sorted({m["site"] for m in members})
    widths = sorted({m["width"] for m in members})
    markers = "os^Dv<>"
    for m in members:
        c = f"C{sites.index(m['site'])}"
        mk = markers[widths.index(m["width"]) % len(markers)]
        for ax, key in zip(axes[:3], ("fve", "policy_kl", "coverage_mean")):
            ax.scatter(m["l0"], m[key], color=c, marker=mk, s=28)
        freq = np.asarray(m["frequency"])
        axes[3].hist(np.log10(freq[freq > 0]), bins=30, histtype="step", color=c, alpha=0.6)
    for ax, label in zip(axes, ("variance explained", "policy KL when spliced in", "concept coverage (F1)",
                                "features")):
        ax.set_ylabel(label)
        ax.set_xlabel("L0 (active features per row)")
    axes[1].set_yscale("symlog", linthresh=1e-4)
    axes[3].set_xlabel("log10 firing frequency (dead features left out)")
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ls="", label=s) for i, s in enumerate(sites)]
    handles += [plt.Line2D([], [], color="grey", marker=markers[i % len(markers)], ls="", label=f"width {w}")
                for i, w in enumerate(widths)]
    axes[0].legend(handles=handles, fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_feature_cards(member: dict, obs: np.ndarray, path: Path, title: str, features: int = 8,
                       boards: int = 5) -> Path:
    """One row per feature (the ones tracking a concept best): its activation histogram and
    the boards where it is strongest, the feature's activation drawn on each square when the
    site is spatial."""
    from rljaxinterp.interp.plots import draw_board

    scores = member["_scores"]
    f = scores["feature_activations"]
    per_state = fc.state_features(f)
    match = scores["match"]
    strength = match.strength().max(1)
    live = np.flatnonzero(per_state.max(0) > 0)
    shown = live[np.argsort(-strength[live])][:features]
    best = match.best()
    plt = pyplot()
    fig, axes = plt.subplots(max(1, len(shown)), boards + 1, figsize=(1.6 * boards + 2.6, 1.7 * max(1, len(shown))),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    board = obs.ndim == 4
    for r, j in enumerate(shown):
        ax = axes[r, 0]
        ax.axis("on")
        values = per_state[:, j]
        ax.hist(values[values > 0], bins=20, color="C0")
        concept, score = best[j]
        ax.set_title(f"feature {j}: {concept} {score:.2f}\nfires on {100 * np.mean(values > 0):.0f}% of states",
                     fontsize=7)
        ax.tick_params(labelsize=6)
        if not board:
            continue
        for c, s in enumerate(np.argsort(-values)[:boards]):
            spatial = f.ndim == 4
            heat = f[s, ..., j] if spatial else np.zeros(obs.shape[1:3])
            own = obs[s, ..., 0] if obs.shape[-1] >= 2 else None
            opp = obs[s, ..., 1] if obs.shape[-1] >= 2 else None
            axes[r, c + 1].axis("on")
            draw_board(axes[r, c + 1], heat, own, opp, title=f"{values[s]:.2f}", cmap="viridis" if spatial else "Greys",
                       bound=float(per_state[:, j].max()) or 1.0)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def write_dashboard(report: dict, out: Path, header: dict) -> Path:
    """``results.json``, ``pareto.png``, ``features-<site>.png`` and ``README.md`` in ``out``."""
    out = Path(out)
    members = report["members"]
    plot_pareto(members, out / "pareto.png", f"SAE grid, {len(members)} members, scored on "
                f"{len(report['test_states'])} held-out states")
    cards = {}
    for site in dict.fromkeys(m["site"] for m in members):
        i = chosen_member(members, site)
        name = f"features-{site.replace('.', '_')}.png"
        plot_feature_cards(members[i], report["test_obs"], out / name,
                           f"{site}: {members[i]['kind']} width {members[i]['width']}, "
                           f"sparsity {members[i]['sparsity']:g} (features tracking a concept best; top states)")
        cards[site] = (i, name)
    public = [{k: (jsonable(v) if k == "frequency" else v) for k, v in m.items() if not k.startswith("_")}
              for m in members]
    (out / "results.json").write_text(json.dumps({**header, "members": public}, indent=1, default=float))
    lines = [f"# SAEs on {header.get('run', 'an agent')}", "",
             (f"{len(members)} SAEs trained in one `fit_saes` call on {len(report['train_states'])} states, "
             f"measured on {len(report['test_states'])} held-out states. L0: active features per row; FVE: "
             "variance explained; KL: policy KL of the agent with the SAE spliced in (mean-ablating the site "
             "gives the KL in the last column); coverage: mean best-feature F1 over binary concepts; board F1: "
             "board reconstruction from piece planes (Karvonen et al. 2024)."), "",
             ("| site | kind | width | sparsity | L0 | FVE | dead | KL | KL mean-abl. | greedy changed | coverage "
             "| board F1 | concepts with a feature (AUROC ≥ 0.9) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in members:
        board = "—" if m["board_f1"] is None else f"{m['board_f1']:.2f}"
        lines.append(f"| {m['site']} | {m['kind']} | {m['width']} | {m['sparsity']:g} | {m['l0']:.1f} | "
                     f"{m['fve']:.3f} | {m['dead']} | {m['policy_kl']:.4f} | {m['policy_kl_mean_ablation']:.3f} | "
                     f"{100 * m['greedy_changed']:.1f}% | {m['coverage_mean']:.2f} | {board} | "
                     f"{', '.join(m['concepts_with_own_feature']) or '—'} |")
    lines += ["", "![pareto](pareto.png)", ""]
    for site, (i, name) in cards.items():
        lines += [f"## {site}: member {i}", "", f"![features]({name})", ""]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out
