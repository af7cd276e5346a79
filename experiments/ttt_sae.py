"""SAEs on the tic-tac-toe AlphaZero agents: which per-square concepts get their own feature,
at which sites, how the features change over training, and whether ablating or steering with
a feature changes play as its concept predicts (judged by the exact minimax solver).

Setup. States: the 4,520 non-terminal reachable positions, split once (seed `--seed`) into
75% train and 25% held out. SAEs: top-k, width 4x the tower's channels, k in `KS`, one per
(site, k) at the tower's spatial sites (`stem.post`, every block's `conv1.post` and
`resid_post`); a row is one (state, square) vector (`site_rows`). Fit on the train states,
scored on the held-out ones. Per-square concepts (`square_concepts`): `own_piece`,
`opponent_piece`, `empty`, `winning_move`, `blocking_move`, `fork_move`, each (states, 9).

What counts as a finding (stated before any number; `RULE_A`, `RULE_B`, `RULE_C` below):

A. Own feature. Statistic per agent and concept: the best single-feature AUROC over the
   held-out (state, square) rows, best over every feature of the k = `K_FINDING` SAEs of
   all sites (the site search is inside the statistic). Null: the same SAEs fitted the same
   way on `--null` untrained networks of the agents' architecture (one `fit_saes` program;
   default the fewest draws for which Holm over the 6 concepts can reach 0.05, plus 20). The
   finding holds for a concept when the AUROC exceeds the untrained mean by >= 0.05 with
   empirical p <= 0.05 (one-sided, Holm over the 6 concepts) in each of >= 3 agents.
   Separately, and also stated here: a concept "has its own feature" in the library's sense
   (`reporting.sae.STRONG`) only if that AUROC is >= 0.9 in every agent. Beside it, not a
   rule: the same statistic for the raw channels of the same sites (do SAE features beat
   neurons?), and the other k of `KS` (agents only: fitting every k on every untrained
   network would double the null's cost).
B. Ablation. For `winning_move` (held-out states where the mover can win at once) and
   `blocking_move` (held-out states where the opponent threatens and the mover cannot win),
   take the feature that detects the concept best on the *train* states (any site, any k),
   subtract it from the site on every square (`ablate_features`: the SAE error term kept),
   and measure the change of the rate at which the agent's greedy legal move is such a
   square. Null: the same ablation of one random live feature of the same SAE (vmapped
   draws). Holds when the change minus the null mean is <= -0.05 with empirical p <= 0.05
   (Holm over the 2 concepts) in each of >= 3 agents.
C. Steering. For `winning_move`, `blocking_move` and `fork_move`: in held-out states where
   no square has the concept, pick (seeded) one empty square that is not the greedy move and
   add the concept feature's decoder direction (`SAE.direction`) there only, scaled to the
   feature's mean activation when on (train rows). Statistic: the rate at which the greedy
   move becomes that square, minus the same rate unsteered. Null: equal-norm random
   directions at the same square (`findings.random_directions` via `steering_null`). Holds
   when the statistic minus the null mean is >= +0.05 with empirical p <= 0.05 (Holm over the
   3 concepts) in each of >= 3 agents. Not a rule: the solver's verdict on the steered moves
   (how often the square the feature pushes the agent to is optimal), and a dose curve.

Training dynamics (descriptive): agent seed 0's grid refitted at every saved checkpoint
(FVE, L0, best-feature AUROC per concept, the agent's play judged by the solver), in the
same `fit_saes` program as everything else.

Before the thresholds above were fixed, one development look on seed 0 of the quick tier
(SAE AUROCs of one grid at k = 4 and 8, the agents' winning/blocking rates) was used to size
the SAE training (steps, batch, learning rate) to the 15-minute budget and to pick
`K_FINDING` = 8 (denser codes gave higher single-feature AUROCs there); the thresholds are
the same 0.05 the other tic-tac-toe experiments use.

    python experiments/ttt_sae.py --tier quick --readme experiments/README.md
    python experiments/ttt_sae.py --tier full --out runs/ttt_sae
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.eval import minimax
from rljaxinterp.findings.controls import steering_null
from rljaxinterp.interp import feature_concepts as fc
from rljaxinterp.interp import sae
from rljaxinterp.interp.concepts.tic_tac_toe import square_concepts
from rljaxinterp.interp.metrics import log_policy
from rljaxinterp.reporting import pyplot, save_figure
from rljaxinterp.reporting.sae import STRONG, plot_feature_cards

CONCEPTS = ["own_piece", "opponent_piece", "empty", "winning_move", "blocking_move", "fork_move"]
ABLATED = ["winning_move", "blocking_move"]
STEERED = ["winning_move", "blocking_move", "fork_move"]
KS = (4, 8)
K_FINDING = 8  # the k of finding A (and of its untrained-network null)
WIDTH_MULT = 4
# SAE training per tier: sized so the quick tier's null (~140 untrained networks x 3 sites)
# trains in a few minutes on 2 shared CPU cores.
SAE_CONFIG = {"quick": {"steps": 600, "batch_size": 256, "learning_rate": 1e-3, "steps_per_chunk": 25},
              "full": {"steps": 1500, "batch_size": 512, "learning_rate": 1e-3, "steps_per_chunk": 25}}
DOSES = (0.5, 1.0, 2.0, 4.0, 8.0)

RULE_A = findings.Rule(
    "an SAE feature of the trained network detects the per-square concept beyond the SAE features of an "
    "untrained network", min_effect=0.05, direction="increase", alpha=0.05, agreement=1.0, min_agents=3,
    correction="holm", statistic="best held-out single-feature AUROC minus the untrained-network mean")
RULE_B = findings.Rule(
    "ablating the concept's feature lowers the rate of playing a concept square beyond ablating a random "
    "live feature", min_effect=0.05, direction="decrease", alpha=0.05, agreement=1.0, min_agents=3,
    correction="holm", statistic="change of the concept-move rate minus the random-feature mean")
RULE_C = findings.Rule(
    "adding the concept's feature direction at a square makes the agent play that square beyond "
    "equal-norm random directions", min_effect=0.05, direction="increase", alpha=0.05, agreement=1.0,
    min_agents=3, correction="holm", statistic="increase of the target-move rate minus the random-direction mean")


# -- activations and scoring ----------------------------------------------------------------
@jax.jit
def _encode(s: sae.SAE, x: jax.Array) -> jax.Array:
    return s.encode(x)


def encode(s: sae.SAE, x) -> jax.Array:
    """Feature activations, compiled once per (width, k) whatever the SAE's site name."""
    return _encode(s.replace(site=""), jnp.asarray(x, jnp.float32))


def best_auroc(features, labels: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per concept (columns of ``labels``), the best single-feature AUROC and that feature."""
    y = np.asarray(labels)
    a = fc.match_concepts(np.asarray(features), {str(j): y[:, j] for j in range(y.shape[1])}).score
    return a.max(0), a.argmax(0)


def greedy(logits, legal) -> jax.Array:
    return jnp.argmax(log_policy(logits, legal), -1)


def on_site(s: sae.SAE, site: str) -> sae.SAE:
    """The SAE with its real site name (the grid keys sites by network: ``a0/stem.post``)."""
    return s.replace(site=site)


_ABLATE: dict = {}


def ablation_rates(model, params, obs, legal, s: sae.SAE, masks, targets) -> np.ndarray:
    """Per row of ``masks`` (draws, width): remove those features from every square and give
    the rate at which the greedy move lands on a ``targets`` square, ``targets`` (states, 9)
    or a stack of such tables (tables, states, 9) -> (draws,) or (draws, tables)."""
    key = (repr(model), s.site, s.kind, s.k)
    if key not in _ABLATE:
        site = s.site

        def run(params, obs, legal, s, masks, targets):
            a = interp.run_with_cache(model, params, obs, [site])[1][site]
            f = s.encode(a)

            def one(mask):
                out = interp.run_with_interventions(model, params, obs,
                                                    interp.patch(site, a - ((f * mask) @ s.w_dec) * s.scale))
                g = greedy(out.logits, legal)
                return jnp.mean(jnp.take_along_axis(targets, g[None, :, None], 2)[..., 0], -1)

            return jax.lax.map(one, masks, batch_size=16)

        _ABLATE[key] = jax.jit(run)
    return np.asarray(_ABLATE[key](params, obs, legal, s, jnp.asarray(masks, jnp.float32),
                                   jnp.asarray(targets, jnp.float32)))


def target_statistic(legal, target):
    """(steered, unsteered) -> change of the rate at which the greedy move is ``target``."""
    def statistic(steered, base):
        return jnp.mean(greedy(steered.logits, legal) == target) - jnp.mean(greedy(base.logits, legal) == target)
    return statistic


_ADD: dict = {}


def run_with_add(model, params, obs, site, direction, mask):
    key = (repr(model), site)
    if key not in _ADD:
        _ADD[key] = jax.jit(lambda p, o, d, m: interp.run_with_interventions(model, p, o, interp.add(site, d, m)))
    return _ADD[key](params, obs, direction, mask)


class Clock:
    def __init__(self):
        self.t0 = self.t = time.perf_counter()
        self.parts: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] = round(now - self.t, 1)
        print(f"[{now - self.t0:6.0f} s] {name} ({now - self.t:.0f} s)", flush=True)
        self.t = now


# -- the experiment -------------------------------------------------------------------------
def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/ttt_sae")
    parser.add_argument("--null", type=int, default=None,
                        help="untrained networks for finding A (default: fewest for Holm over 6 concepts + 20)")
    parser.add_argument("--draws", type=int, default=None,
                        help="null draws per agent for findings B and C (default: fewest for Holm + 20)")
    parser.add_argument("--sae-steps", type=int, default=None, help="SAE training steps (default: by tier)")
    args = parser.parse_args()
    clock = Clock()
    agents, out = findings.open_agents(args)
    report = findings.Report("SAEs on tic-tac-toe AlphaZero agents", agents.seeds, args.tier)
    clock.lap("agents")

    # states, labels, solver
    states, boards = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    obs = states.observation[live].astype(jnp.float32)
    legal = jnp.asarray(states.legal_action_mask[live])
    squares = {k: np.asarray(v) for k, v in square_concepts(jax.tree.map(lambda x: x[live], states)).items()}
    solution = minimax.solve()
    optimal = solution.optimal[[solution.row(b) for b in boards[live]]]
    order = np.random.default_rng(args.seed).permutation(live.size)
    test = np.sort(order[: live.size // 4])
    train = np.sort(order[live.size // 4:])
    y_train = jnp.asarray(np.stack([squares[c][train].reshape(-1) for c in CONCEPTS], 1), jnp.float32)
    y_test = jnp.asarray(np.stack([squares[c][test].reshape(-1) for c in CONCEPTS], 1), jnp.float32)

    model = agents.runs[0].model
    shapes = interp.sites(model, obs[:1])
    sites = [s for s in shapes if s == "stem.post" or s.endswith((".conv1.post", ".resid_post"))]
    channels = shapes[sites[0]][-1]
    width = WIDTH_MULT * channels
    n_null = args.null or RULE_A.required_draws(len(CONCEPTS)) + 20
    n_b = args.draws or RULE_B.required_draws(len(ABLATED)) + 20
    n_c = args.draws or RULE_C.required_draws(len(STEERED)) + 20
    config = sae.SAEConfig(**{**SAE_CONFIG[args.tier], "seed": args.seed,
                              **({"steps": args.sae_steps} if args.sae_steps else {})})

    # the networks: the agents (final), seed 0's earlier checkpoints, untrained networks
    run0 = agents.runs[0]
    checkpoints = run0.steps
    nets: dict[str, object] = {f"a{a}": run.params() for a, run in enumerate(agents)}
    nets.update({f"c{step}": run0.params(step) for step in checkpoints[:-1]})
    untrained = findings.untrained_params(model, obs, jax.random.fold_in(jax.random.key(args.seed), 17), n_null)
    nets.update({f"u{i}": p for i, p in enumerate(untrained)})
    train_rows, test_rows = {}, {}
    for name, params in nets.items():
        for s, x in sae.site_rows(model, params, obs[train], sites).items():
            train_rows[f"{name}/{s}"] = x
        for s, x in sae.site_rows(model, params, obs[test], sites).items():
            test_rows[f"{name}/{s}"] = x
    clock.lap(f"rows of {len(nets)} networks x {len(sites)} sites")

    # two programs: the agents and checkpoints at every k of KS, the untrained networks at K_FINDING
    # (a member's training does not depend on the rest of its grid, so the two are comparable)
    trained_keys = [k for k in train_rows if not k.startswith("u")]
    grid_t = sae.fit_saes({k: train_rows[k] for k in trained_keys}, "topk", width, KS, config, progress=False)
    clock.lap(f"{len(grid_t)} SAEs of the agents and checkpoints")
    grid_u = sae.fit_saes({k: v for k, v in train_rows.items() if k.startswith("u")}, "topk", width, K_FINDING,
                          config, progress=False)
    clock.lap(f"{len(grid_u)} SAEs of {n_null} untrained networks")

    def members(grid, name, k=None):
        return [i for i, m in enumerate(grid.members)
                if m.site.split("/")[0] == name and (k is None or m.sparsity == k)]

    def site_of(grid, i):
        return grid.members[i].site.split("/", 1)[1]

    # -- A: best single-feature AUROC, SAE features and raw channels ---------------------------
    held_t = {i: best_auroc(encode(grid_t[i], test_rows[m.site]), y_test) for i, m in enumerate(grid_t.members)}
    held_u = {i: best_auroc(encode(grid_u[i], test_rows[m.site]), y_test)[0] for i, m in enumerate(grid_u.members)}

    def best_of(name, k=K_FINDING):
        idx = members(grid_t, name, k)
        scores = np.stack([held_t[i][0] for i in idx])
        return scores.max(0), [idx[j] for j in scores.argmax(0)]

    def channel_best(name):
        return np.stack([best_auroc(test_rows[f"{name}/{s}"], y_test)[0] for s in sites]).max(0)

    agent_names = [f"a{a}" for a in range(len(agents))]
    observed = np.stack([best_of(n)[0] for n in agent_names])
    where = [best_of(n)[1] for n in agent_names]
    other_k = {k: np.stack([best_of(n, k)[0] for n in agent_names]) for k in KS}
    null = np.stack([np.stack([held_u[i] for i in members(grid_u, f"u{u}")]).max(0) for u in range(n_null)])
    chan_obs = np.stack([channel_best(n) for n in agent_names])
    chan_null = np.stack([channel_best(f"u{u}") for u in range(n_null)])
    ev_a = findings.evidence(observed, null, CONCEPTS, RULE_A.alternative, RULE_A.correction)
    for k in [k for k in test_rows if k.startswith("u")]:
        del test_rows[k], train_rows[k]
    clock.lap("finding A scored")

    # reconstruction quality and splice cost of the agents' and checkpoints' SAEs (held out)
    quality = {}
    for i, m in enumerate(grid_t.members):
        one = sae.SAEGrid((dataclasses.replace(m, site=""),), (grid_t[i].replace(site=""),), (grid_t.history[i],),
                          grid_t.config)
        quality[i] = sae.evaluate_saes(one, {"": test_rows[m.site]})[0]
    cost = {}
    for a, run in enumerate(agents):
        idx = members(grid_t, f"a{a}")
        sub = sae.SAEGrid(tuple(dataclasses.replace(grid_t.members[i], site=site_of(grid_t, i)) for i in idx),
                          tuple(on_site(grid_t[i], site_of(grid_t, i)) for i in idx),
                          tuple(grid_t.history[i] for i in idx), grid_t.config)
        cost.update(zip(idx, sae.splice_cost(run.model, run.params(), obs[test], sub, legal_mask=legal[test])))
    clock.lap("quality and splice cost")

    # the feature each agent's intervention uses: best train-state AUROC over its SAEs (any site, k)
    train_score = {i: best_auroc(encode(grid_t[i], train_rows[m.site]), y_train)
                   for i, m in enumerate(grid_t.members) if m.site.startswith("a")}
    picks = {}
    for a in range(len(agents)):
        for c, concept in enumerate(CONCEPTS):
            i = max(members(grid_t, f"a{a}"), key=lambda i: train_score[i][0][c])
            picks[(a, concept)] = (float(train_score[i][0][c]), i, int(train_score[i][1][c]))

    # -- B: ablation ------------------------------------------------------------------------
    can_win = squares["winning_move"][test].any(1)
    must_block = squares["blocking_move"][test].any(1) & ~can_win
    b_obs = np.zeros((len(agents), len(ABLATED)))
    b_null = np.zeros((len(agents), n_b, len(ABLATED)))
    b_rows = []
    for a, run in enumerate(agents):
        params = run.params()
        for t, concept in enumerate(ABLATED):
            score, i, j = picks[(a, concept)]
            site = site_of(grid_t, i)
            sel = test[can_win if concept == "winning_move" else must_block]
            s = on_site(grid_t[i], site)
            fires = np.asarray(encode(s, train_rows[grid_t.members[i].site])).max(0) > 0
            draws = findings.random_units(jax.random.fold_in(jax.random.key(args.seed), 100 * a + t), width, 1, n_b,
                                          exclude=np.union1d(np.flatnonzero(~fires), [j]))
            masks = np.zeros((n_b + 2, width), np.float32)  # none, the concept feature, random features
            masks[1, j] = 1.0
            masks[np.arange(2, n_b + 2), draws[:, 0]] = 1.0
            rates = ablation_rates(run.model, params, obs[sel], legal[sel], s, masks,
                                   np.stack([squares[concept][sel], optimal[sel]]))
            b_obs[a, t] = rates[1, 0] - rates[0, 0]
            b_null[a, :, t] = rates[2:, 0] - rates[0, 0]
            b_rows.append((a, concept, site, grid_t.members[i].sparsity, j, score, sel.size, *rates[:2, 0],
                           float(rates[2:, 0].mean()), *rates[:2, 1], float(rates[2:, 1].mean())))
        print(f"agent {agents.seeds[a]}: ablation change {np.round(b_obs[a], 3).tolist()}", flush=True)
    ev_b = findings.evidence(b_obs, b_null, ABLATED, RULE_B.alternative, RULE_B.correction)
    clock.lap("finding B")

    # -- C: steering at one square -------------------------------------------------------------
    c_obs = np.zeros((len(agents), len(STEERED)))
    c_null = np.zeros((len(agents), n_c, len(STEERED)))
    c_rows, doses = [], np.zeros((len(agents), len(STEERED), len(DOSES), 2))
    rng = np.random.default_rng(args.seed + 1)
    for a, run in enumerate(agents):
        params = run.params()
        base_greedy = np.asarray(greedy(run.model.apply({"params": params}, obs[test]).logits, legal[test]))
        for t, concept in enumerate(STEERED):
            score, i, j = picks[(a, concept)]
            site = site_of(grid_t, i)
            s = on_site(grid_t[i], site)
            f_train = np.asarray(encode(s, train_rows[grid_t.members[i].site]))[:, j]
            typical = float(f_train[f_train > 0].mean())
            direction = s.direction(j) * typical
            keep = ~squares[concept][test].any(1) & (np.asarray(legal[test]).sum(1) >= 2)
            sel, g0 = test[keep], base_greedy[keep]
            choices = squares["empty"][sel].copy()
            choices[np.arange(sel.size), g0] = False
            target = np.array([rng.choice(np.flatnonzero(row)) for row in choices])
            mask = jax.nn.one_hot(target, 9).reshape(-1, 3, 3, 1)
            stat = target_statistic(legal[sel], jnp.asarray(target))
            key = jax.random.fold_in(jax.random.key(args.seed), 1000 + 100 * a + t)
            c_obs[a, t], c_null[a, :, t] = steering_null(run.model, params, obs[sel], site, direction, stat,
                                                         key, n_c, mask=mask)
            # the solver's verdict on the steered moves
            g1 = np.asarray(greedy(run_with_add(run.model, params, obs[sel], site, direction, mask).logits,
                                   legal[sel]))
            moved = g1 == target
            opt, ar = optimal[sel], np.arange(sel.size)
            c_rows.append((a, concept, site, grid_t.members[i].sparsity, j, score, typical, sel.size,
                           float(moved.mean()), float(opt[ar, g0].mean()), float(opt[ar, g1].mean()),
                           float(opt[ar, target][moved].mean()) if moved.any() else float("nan"),
                           float(opt[ar, target].mean())))
            for d, dose in enumerate(DOSES):
                o, nl = steering_null(run.model, params, obs[sel], site, direction, stat,
                                      jax.random.fold_in(key, d), 10, coefficient=dose, mask=mask)
                doses[a, t, d] = (o, nl.mean())
        print(f"agent {agents.seeds[a]}: steering {np.round(c_obs[a], 3).tolist()}", flush=True)
    ev_c = findings.evidence(c_obs, c_null, STEERED, RULE_C.alternative, RULE_C.correction)
    clock.lap("finding C")

    # -- training dynamics of seed 0 ------------------------------------------------------------
    dyn = []
    for step, name in zip(checkpoints, [f"c{s}" for s in checkpoints[:-1]] + ["a0"]):
        params = run0.params(step)
        g = np.asarray(greedy(model.apply({"params": params}, obs[test]).logits, legal[test]))
        ar = np.arange(test.size)
        idx = members(grid_t, name)
        label = {i: f"{site_of(grid_t, i)} k={grid_t.members[i].sparsity:g}" for i in idx}
        dyn.append({"step": step, "auroc": best_of(name)[0].tolist(), "channel_auroc": channel_best(name).tolist(),
                    "fve": {label[i]: quality[i]["fve"] for i in idx}, "l0": {label[i]: quality[i]["l0"] for i in idx},
                    "win_rate": float(squares["winning_move"][test][ar, g][can_win].mean()),
                    "block_rate": float(squares["blocking_move"][test][ar, g][must_block].mean()),
                    "optimal_rate": float(optimal[test][ar, g].mean())})

    # -- figures ----------------------------------------------------------------------------
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [d["step"] for d in dyn]
    for c, concept in enumerate(CONCEPTS):
        axes[0].plot(steps, [d["auroc"][c] for d in dyn], marker="o", color=f"C{c}", label=concept)
        axes[0].plot(steps, [d["channel_auroc"][c] for d in dyn], ls=":", color=f"C{c}")
        axes[0].axhline(null[:, c].mean(), color=f"C{c}", lw=0.6, alpha=0.5)
    axes[0].set_ylabel(f"best single-feature AUROC (held out, k={K_FINDING})\n"
                       "solid: SAE, dotted: channels, thin: untrained SAE mean", fontsize=8)
    for label in dyn[0]["fve"]:
        axes[1].plot(steps, [d["fve"][label] for d in dyn], marker="o", label=label)
    axes[1].set_ylabel("SAE variance explained (held out)")
    for key_, name in (("win_rate", "wins when it can"), ("block_rate", "blocks when it must (cannot win)"),
                       ("optimal_rate", "greedy move optimal")):
        axes[2].plot(steps, [d[key_] for d in dyn], marker="o", label=name)
    axes[2].set_ylabel("agent's greedy play (held out, solver)")
    for ax in axes:
        ax.set_xlabel("AlphaZero iteration (checkpoint)")
        ax.legend(fontsize=6)
    fig.suptitle(f"Agent seed {agents.seeds[0]}: SAE features over training", fontsize=10)
    save_figure(fig, out / "dynamics.png")

    fig, axes = plt.subplots(1, len(STEERED), figsize=(4.5 * len(STEERED), 3.6), squeeze=False)
    for t, concept in enumerate(STEERED):
        ax = axes[0, t]
        for a in range(len(agents)):
            ax.plot(DOSES, doses[a, t, :, 0], marker="o", color=f"C{a}", label=f"seed {agents.seeds[a]} feature")
            ax.plot(DOSES, doses[a, t, :, 1], ls=":", color=f"C{a}", label=f"seed {agents.seeds[a]} random (10)")
        ax.set_xscale("log")
        ax.set_xlabel("coefficient (x the feature's mean activation when on)")
        ax.set_ylabel("change of P(greedy move = target)")
        ax.set_title(concept, fontsize=9)
        ax.legend(fontsize=6)
    save_figure(fig, out / "steering_doses.png")

    # feature cards: agent seed 0, the SAE holding its best winning_move feature
    i_card = picks[(0, "winning_move")][1]
    f_card = np.asarray(encode(grid_t[i_card], test_rows[grid_t.members[i_card].site]))
    match = fc.match_concepts(f_card, {c: np.asarray(y_test[:, k]) for k, c in enumerate(CONCEPTS)})
    plot_feature_cards({"_scores": {"feature_activations": f_card.reshape(test.size, 3, 3, -1), "match": match}},
                       np.asarray(obs[test]), out / "feature_cards.png",
                       f"seed {agents.seeds[0]} {site_of(grid_t, i_card)} top-k k={grid_t.members[i_card].sparsity:g}:"
                       f" features matching a per-square concept best (held-out AUROC over squares)")
    clock.lap("dynamics and figures")

    # -- report -----------------------------------------------------------------------------
    quick = (" Quick tier: small agents (conv 16 channels, 1 block, 30 AlphaZero iterations), shorter SAE "
             "training." if args.tier == "quick" else "")
    report.add(
        f"Agents: {agents.describe()}. {live.size} non-terminal reachable positions: {train.size} train / "
        f"{test.size} held out (seed {args.seed}); rows are (state, square) vectors at {len(sites)} sites "
        f"({', '.join(sites)}). SAEs: top-k, width {width} ({WIDTH_MULT}x {channels} channels), {config.steps} steps "
        f"of batch {config.batch_size}, lr {config.learning_rate:g}, AuxK on; the agents and {len(checkpoints) - 1} "
        f"earlier checkpoints of seed {agents.seeds[0]} at k in {list(KS)} ({len(grid_t)} SAEs), {n_null} untrained "
        f"networks at k = {K_FINDING} ({len(grid_u)} SAEs). Null draws: A {n_null} untrained networks (shared by the "
        f"agents), B {n_b} random live features, C {n_c} random directions, per agent and test.{quick}", "")
    report.finding(RULE_A, ev_a, "A. Per-square concepts get their own SAE feature (pre-stated rule)")
    strong = [c for k, c in enumerate(CONCEPTS) if (observed[:, k] >= STRONG).all()]
    rows = [f"| concept | SAE k={K_FINDING}: best AUROC per agent (site) | untrained SAE: mean [2.5%, 97.5%] | "
            + " | ".join(f"SAE k={k} per agent" for k in KS if k != K_FINDING)
            + " | channels: best AUROC per agent | untrained channels: mean | SAE - channels (trained) |",
            "|---|---|---|" + "---|" * (len(KS) - 1) + "---|---|---|"]
    for k, c in enumerate(CONCEPTS):
        lo, hi = np.quantile(null[:, k], [0.025, 0.975])
        at = ", ".join(f"{observed[a, k]:.3f} ({site_of(grid_t, where[a][k])})" for a in range(len(agents)))
        extra = "".join(f" {', '.join(f'{x:.3f}' for x in other_k[kk][:, k])} |" for kk in KS if kk != K_FINDING)
        rows.append(f"| `{c}` | {at} | {null[:, k].mean():.3f} [{lo:.3f}, {hi:.3f}] |{extra} "
                    f"{', '.join(f'{x:.3f}' for x in chan_obs[:, k])} | {chan_null[:, k].mean():.3f} | "
                    f"{findings.fmt_interval(observed[:, k] - chan_obs[:, k])} |")
    report.add("#### Best single-feature AUROC (held-out (state, square) rows)", "", *rows, "",
               f"Concepts with their own feature in the library's sense (AUROC >= {STRONG} in every agent): "
               f"{', '.join(strong) or 'none'}.", "")
    rows = ["| agent | SAE | held-out L0 | FVE | dead | policy KL spliced | KL mean-ablated | greedy changed |",
            "|---|---|---|---|---|---|---|---|"]
    for a in range(len(agents)):
        for i in members(grid_t, f"a{a}"):
            q, c = quality[i], cost[i]
            rows.append(f"| {agents.seeds[a]} | {site_of(grid_t, i)} k={grid_t.members[i].sparsity:g} | "
                        f"{q['l0']:.2f} | {q['fve']:.3f} | {q['dead']} | {c['policy_kl']:.4f} | "
                        f"{c['policy_kl_mean_ablation']:.3f} | {100 * c['greedy_changed']:.1f}% |")
    report.add("#### The agents' SAEs (held out)", "", *rows, "", "![cards](feature_cards.png)", "")

    report.finding(RULE_B, ev_b, "B. Ablating the concept feature (pre-stated rule)")
    rows = [("| agent | concept | feature (train AUROC) | states | concept-move rate: clean -> ablated (random "
            "feature mean) | optimal-move rate: clean -> ablated (random feature mean) |"), "|---|---|---|---|---|---|"]
    for a, concept, site, k, j, score, n, r0, r1, rn, o0, o1, on in b_rows:
        rows.append(f"| {agents.seeds[a]} | `{concept}` | {site} k={k:g} #{j} ({score:.3f}) | {n} | "
                    f"{r0:.3f} -> {r1:.3f} ({rn:.3f}) | {o0:.3f} -> {o1:.3f} ({on:.3f}) |")
    report.add(*rows, "")

    report.finding(RULE_C, ev_c, "C. Steering with the concept feature at one square (pre-stated rule)")
    rows = [("| agent | concept | feature (train AUROC), scale | states | moved to target | greedy move optimal: "
            "before -> after | target optimal where moved there | target optimal (all) |"),
            "|---|---|---|---|---|---|---|---|"]
    for a, concept, site, k, j, score, typical, n, moved, o0, o1, om, ot in c_rows:
        rows.append(f"| {agents.seeds[a]} | `{concept}` | {site} k={k:g} #{j} ({score:.3f}), {typical:.2f} | {n} | "
                    f"{moved:.3f} | {o0:.3f} -> {o1:.3f} | {om:.3f} | {ot:.3f} |")
    dose_rows = ["| concept | " + " | ".join(f"x{d:g}" for d in DOSES) + " |", "|---" * (len(DOSES) + 1) + "|"]
    for t, concept in enumerate(STEERED):
        dose_rows.append(f"| `{concept}` | " + " | ".join(
            f"{doses[:, t, d, 0].mean():+.3f} / {doses[:, t, d, 1].mean():+.3f}" for d in range(len(DOSES))) + " |")
    report.add(*rows, "", "Dose curve: change of P(greedy move = target), feature / mean of 10 equal-norm random "
               "directions, mean over agents, per coefficient (x the feature's mean activation when on):", "",
               *dose_rows, "", "![doses](steering_doses.png)", "")

    rows = ["| checkpoint | " + " | ".join(f"`{c}` SAE / ch." for c in CONCEPTS) + " | FVE (min-max over SAEs) "
            "| wins / blocks / optimal |", "|---" * (len(CONCEPTS) + 3) + "|"]
    for d in dyn:
        fv = list(d["fve"].values())
        rows.append(f"| {d['step']} | " + " | ".join(f"{x:.3f} / {y:.3f}" for x, y in
                                                     zip(d["auroc"], d["channel_auroc"]))
                    + f" | {min(fv):.3f}-{max(fv):.3f} | {d['win_rate']:.3f} / {d['block_rate']:.3f} / "
                    f"{d['optimal_rate']:.3f} |")
    report.add(f"### Training dynamics (agent seed {agents.seeds[0]}, descriptive; best over sites at k={K_FINDING})",
               "", *rows, "", "![dynamics](dynamics.png)", "")
    clock.lap("report")
    report.add(f"Wall time per part (s): {clock.parts}.")
    report.data.update(
        concepts=CONCEPTS, sites=sites, ks=list(KS), k_finding=K_FINDING, width=width,
        sae_config=dataclasses.asdict(config), sae_auroc=observed.tolist(), untrained_auroc=null.tolist(),
        sae_auroc_by_k={k: v.tolist() for k, v in other_k.items()}, channel_auroc=chan_obs.tolist(),
        untrained_channel_auroc=chan_null.tolist(), ablation=[list(r) for r in b_rows],
        steering=[list(r) for r in c_rows], doses=doses.tolist(), dynamics=dyn, wall_parts=clock.parts,
        quality={grid_t.members[i].site + f" k={grid_t.members[i].sparsity:g}":
                 {k: v for k, v in q.items() if k != "frequency"} for i, q in quality.items()},
        splice={grid_t.members[i].site + f" k={grid_t.members[i].sparsity:g}": c for i, c in cost.items()})
    path = report.write(out, args.readme, f"ttt_sae.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
