"""Look-ahead in a connect-four AlphaZero network: does the raw network represent moves that
have not been played yet (Jenner et al. 2024 found this in Leela Chess Zero)?

Setup. Agents: `--agents` seeded connect-four AlphaZero agents (`findings.connect_four_agents`,
the library's preset trained per tier). Positions: the distinct positions of games split over
the agents, each played by one agent greedily or, with probability 0.3, by a uniformly random
move (`findings.play_positions`; shared by all agents). Lines: each agent's own noise-free search at `REF_SIMS` simulations
gives a principal variation (`interp.search`); the labels are the board squares of its first
three moves (`my_next_move`, `opponent_reply`, `my_move_two_plies_ahead`) and whether the
mover will be able to win at once two plies ahead (`threat_in_two_plies`), where the line gets
that far (`interp.lookahead`; below the root the PV takes the most visited child, ties to the
higher prior). `my_next_move` is the search's own move, which the policy head reads: a positive
control, not a look-ahead test. Solver lines (descriptive): on positions with at least
`SOLVER_MIN_PIECES` pieces, the exact solver's line (`lookahead.solver_line`, ties among
optimal moves broken towards the centre column, not by the network). Probes: one-vs-rest ridge classifiers (`lookahead.square_probes`, l2 =
`L2`) on a 75/25 split, per site; accuracy is top-1 over the squares.

What counts as a finding (stated before any number):

L. Look-ahead is decodable beyond an untrained network. Per look-ahead label (the three after
   `my_next_move`),
   statistic: held-out probe accuracy at `RULE_SITE` (the tower's output, read by both heads)
   of the trained network. Null: the same probe on `--null` freshly initialised networks of
   the same architecture (default: the fewest draws for which Holm over 3 labels can reach
   0.05, plus 10). Holds when accuracy minus the null mean is >= +0.05 with empirical
   p <= 0.05 (Holm over the 3 labels) in each of >= 3 agents. Beside it, not a rule: every
   site's accuracy, the shuffled-label control (what memorisation gives), the majority
   baseline and a probe on the trained network's policy logits alone (a label the policy
   output already gives away needs no look-ahead to decode).
P. The future square carries what the move is chosen by. Pairs: a clean position and a
   corrupted one (one top piece moved to the top of another column; same side to move)
   whose principal variations share the first move and differ in the square of the move two
   plies ahead. In the clean position, patch one square's activations at a tower site with
   the corrupted position's and measure the drop of the log-probability of the clean first
   move (over the legal moves). Per site of `PATCH_SITES`, statistic: mean drop when patching
   the clean line's two-plies-ahead square. Null: the mean drop when patching one control
   square per pair as far from the moved piece as the future square (Chebyshev distance; not
   a moved square, not on either line; one draw per null sample, `--draws`), since the
   corrupted activations differ most near the moved piece. Holds when the statistic minus the null mean is >= +0.05 nats with empirical
   p <= 0.05 (Holm over the sites) in each of >= 3 agents.

One development look at agent seed 0 of the quick tier (ridge l2 in {1, 100, 1000, 10000},
two labels, one untrained network) chose `L2` = 1000 before the thresholds were applied. After a first quick
run, a review changed the design before the run reported here: `my_next_move` became a positive
control, the patching control became distance-matched, solver-line ties stopped following the
network, positions came from every agent's play, and PV ties went to the prior.

    python experiments/lookahead.py --tier quick --readme experiments/README.md
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp
from rljaxinterp.envs import EnvState
from rljaxinterp.envs.boards import from_boards, winning_lines
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.eval.truth import truth_fn
from rljaxinterp.interp import lookahead, search
from rljaxinterp.interp.probes import fit_probes, site_features
from rljaxinterp.reporting import echo_log, pyplot, save_figure

GAME = "connect_four"
REF_SIMS = 64
PLAY_GAMES = {"quick": 128, "full": 512}
EXPLORATION = 0.3
L2 = 1000.0
RULE_SITE = "block1.resid_post"
PATCH_SITES = ("stem.post", "block0.resid_post", "block1.resid_post")
LABELS = ("my_next_move", "opponent_reply", "my_move_two_plies_ahead", "threat_in_two_plies")
CONTROL = "my_next_move"  # the search's own move, which the policy head reads: a positive control
LOOKAHEAD = tuple(label for label in LABELS if label != CONTROL)  # the tests of rule L
CHANNEL_LABELS = ("my_next_move", "my_move_two_plies_ahead")
SOLVER_MIN_PIECES = 16
PROFILE_NULL = 5  # untrained networks in the descriptive per-site profile
MAX_PAIRS = 400
CANDIDATES = 6  # corruptions tried per clean position

RULE_L = findings.Rule(
    "a linear probe on the trained network decodes the future-play label beyond the same probe on untrained "
    "networks", min_effect=0.05, direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic=f"held-out accuracy at {RULE_SITE} minus the untrained-network mean")
RULE_P = findings.Rule(
    "patching the square of the move two plies ahead lowers the clean first move's log-probability more than "
    "patching another square", min_effect=0.05, direction="increase", alpha=0.05, agreement=1.0, min_agents=3,
    correction="holm", statistic="mean log-prob drop at the future square minus the control-square mean")


def take(states: EnvState, idx) -> EnvState:
    return jax.tree.map(lambda x: x[idx], states)


def label_sets(env, states, tree) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], lookahead.Line]:
    line = lookahead.follow(env, states, tree.pv, 3)
    labels = lookahead.square_labels(line)
    labels["threat_in_two_plies"] = lookahead.threat_after(GAME, line, 2)
    return labels, line


def probe(features, label, valid, key, shuffle=False) -> dict[str, float]:
    """Held-out accuracy per site for a square label (top-1) or a binary one."""
    label, valid = np.asarray(label), np.asarray(valid, bool)
    if label.dtype == bool:
        feats = {s: jnp.asarray(np.asarray(f)[valid]) for s, f in features.items()}
        scores = fit_probes(feats, {"y": label[valid].astype(np.float32)}, kind="ridge", key=key, l2=L2,
                            shuffle_labels=shuffle)
        return {s: float(scores.test[i, 0]) for i, s in enumerate(scores.sites)}
    return lookahead.square_probes(features, label, valid, key=key, l2=L2, kind="ridge",
                                   shuffle_labels=shuffle).accuracy


def centre_first(states: EnvState) -> jax.Array:
    """A tie-break among optimal moves that does not look at the network: the central column."""
    return jnp.broadcast_to(-jnp.abs(jnp.arange(7) - 3.0), states.legal_action_mask.shape)


def majority(label, valid) -> float:
    y = np.asarray(label)[np.asarray(valid, bool)]
    return float(np.bincount(y.astype(int)).max() / max(y.size, 1))


# -- counterfactual pairs --------------------------------------------------------------------------
def corruptions(boards: np.ndarray, rng: np.random.Generator, per_board: int):
    """Boards with one top piece moved to the top of another column, keeping the side to move and
    creating no line; returns (source index, corrupted board, moved-from square, moved-to square)."""
    lines = winning_lines(GAME)
    out = []
    for i, b in enumerate(boards):
        grid = b.reshape(6, 7)
        heights = (grid >= 0).sum(0)
        moves = [(c, d) for c in range(7) for d in range(7) if c != d and heights[c] > 0 and heights[d] < 6]
        for j in rng.permutation(len(moves))[:per_board]:
            c, d = moves[j]
            src, dst = (6 - heights[c]) * 7 + c, (5 - heights[d]) * 7 + d
            nb = b.copy()
            nb[dst], nb[src] = nb[src], -1
            if (nb[lines][:, :, None] == np.array([0, 1])).all(1).any():
                continue  # moving the piece completed a line: not a live position
            out.append((i, nb, src, dst))
    return out


def patch_drops(model, params, clean_obs, corrupt_obs, legal, first_move, site, squares) -> np.ndarray:
    """Drop of log p(first move) (over the legal moves) in the clean positions when ``site``'s
    activations at one square per (position, draw) come from the corrupted position:
    ``squares`` (pairs, draws) -> (pairs, draws)."""
    _, corrupt_cache = interp.run_with_cache(model, params, corrupt_obs, [site])
    donor = corrupt_cache[site]
    logp = interp.metrics.action_log_prob(first_move, legal)
    base = logp(interp.run_with_interventions(model, params, clean_obs, None))

    @jax.jit
    def one(square):
        mask = jax.nn.one_hot(square, 42).reshape(-1, 6, 7, 1)
        return base - logp(interp.run_with_interventions(model, params, clean_obs, [interp.patch(site, donor, mask)]))

    return np.stack([np.asarray(one(jnp.asarray(squares[:, k]))) for k in range(squares.shape[1])], 1)


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/lookahead")
    parser.add_argument("--null", type=int, default=None, help="untrained networks (default: Holm minimum + 10)")
    parser.add_argument("--draws", type=int, default=None, help="random-square draws for P (default: Holm min + 20)")
    findings.cli.add_play_options(parser)
    args = parser.parse_args()
    out = findings.output_folder(args)
    log, _ = echo_log(out / "log.txt")
    t_start = time.perf_counter()
    key = jax.random.key(args.seed)
    changes = findings.cli.training_changes(args)
    agents = findings.connect_four_agents(args.base or f"runs/c4_agents_{args.tier}", args.agents, args.tier, log=log,
                                          **changes)
    log(agents.describe())
    report = findings.Report("Look-ahead in a connect-four AlphaZero network", agents.seeds, args.tier)
    run0 = agents.runs[0]
    model, env = run0.model, run0.env
    states = findings.play_positions(agents, args.play_games or PLAY_GAMES[args.tier], jax.random.key(args.seed),
                                     EXPLORATION)
    boards = np.asarray(game_state(states).board)
    n = len(boards)
    log(f"{n} distinct positions from play")
    n_null = args.null or RULE_L.required_draws(len(LOOKAHEAD)) + 10
    n_draws = args.draws or RULE_P.required_draws(len(PATCH_SITES)) + 20
    untrained = findings.untrained_params(model, states.observation[:1], jax.random.fold_in(key, 7), n_null)
    null_feats = {f"u{u}": site_features(model, p, states.observation, [RULE_SITE])[RULE_SITE]
                  for u, p in enumerate(untrained)}
    all_sites = list(interp.sites(model, states.observation[:1]))  # the descriptive profile: every site
    profile_null = [site_features(model, p, states.observation, all_sites) for p in untrained[:PROFILE_NULL]]
    late = (boards >= 0).sum(1) >= SOLVER_MIN_PIECES

    l_obs, l_null, rows, profiles, solver_rows, p_obs, p_null, p_rows = [], [], [], [], [], [], [], []
    channel_rows: list[dict] = []
    channels = interp.sites(model, states.observation[:1])[RULE_SITE][-1]
    for a, run in enumerate(agents):
        t0 = time.perf_counter()
        params = run.params()
        tree = search.search_trees(run, params, states, num_simulations=REF_SIMS)
        labels, line = label_sets(env, states, tree)
        feats = site_features(model, params, states.observation, all_sites)
        pkey = jax.random.fold_in(key, a)
        obs_a, null_a = [], []
        for name in LABELS:
            lab, valid = labels[name]
            acc = probe(feats, lab, valid, pkey)
            shuffled = probe(feats, lab, valid, pkey, shuffle=True)
            untrained_profile = [probe(f, lab, valid, pkey) for f in profile_null]
            null_acc = probe(null_feats, lab, valid, pkey)
            nulls = [null_acc[f"u{u}"] for u in range(n_null)]
            if name in LOOKAHEAD:
                obs_a.append(acc[RULE_SITE])
                null_a.append(nulls)
            base = majority(lab, valid)
            rows.append((a, name, int(np.asarray(valid).sum()), acc[RULE_SITE], float(np.mean(nulls)),
                         shuffled[RULE_SITE], base, acc["logits"]))
            profiles.append({"agent": a, "label": name, "trained": acc, "shuffled": shuffled, "majority": base,
                             "untrained": {s: float(np.mean([u[s] for u in untrained_profile])) for s in all_sites}})
        l_obs.append(obs_a)
        l_null.append(np.array(null_a).T)
        # channel attribution: which channels of the rule site the future-move probes read
        for name in CHANNEL_LABELS:
            lab, valid = labels[name]
            fit = lookahead.square_probes({RULE_SITE: feats[RULE_SITE]}, lab, valid, key=pkey, l2=L2, kind="ridge")
            drops = lookahead.channel_importance(fit, RULE_SITE, feats[RULE_SITE], lab, valid, channels)
            channel_rows.append({"agent": a, "label": name, "accuracy": fit.accuracy[RULE_SITE],
                                 "drops": drops.tolist(), "top": np.argsort(-drops)[:3].tolist()})
        log(f"agent {a}: probes done ({time.perf_counter() - t0:.0f} s)")

        # solver lines on the late positions (descriptive)
        if late.any():
            sub = take(states, np.flatnonzero(late))
            moves, solved = lookahead.solver_line(env, sub, truth_fn(GAME), centre_first, 3)
            sline = lookahead.follow(env, sub, moves, 3)
            sub_feats = {s: np.asarray(f)[late] for s, f in feats.items()}
            for k, name in enumerate(LABELS[:3]):
                sq = np.asarray(sline.squares)[:, k]
                ok = (sq >= 0) & solved
                if ok.sum() >= 40:
                    acc = probe(sub_feats, sq, ok, pkey)
                    unt = [probe({s: np.asarray(f[s])[late] for s in (RULE_SITE,)}, sq, ok, pkey)[RULE_SITE]
                           for f in profile_null]
                    agree = float(np.mean(sq[ok] == np.asarray(line.squares)[late][:, k][ok]))
                    solver_rows.append((a, name, int(ok.sum()), acc[RULE_SITE], float(np.mean(unt)),
                                        majority(sq, ok), agree))
            log(f"agent {a}: solver lines on {int(late.sum())} positions ({time.perf_counter() - t0:.0f} s)")

        # P: counterfactual pairs and square patching
        obs_p, null_p, pairs = patching(run, params, states, boards, line, a, n_draws, log)
        p_obs.append(obs_p)
        p_null.append(null_p)
        p_rows.append(pairs)
        log(f"agent {a}: done ({time.perf_counter() - t0:.0f} s)")

    ev_l = findings.evidence(np.array(l_obs), np.stack(l_null), LOOKAHEAD, RULE_L.alternative, RULE_L.correction)
    ev_p = findings.evidence(np.array(p_obs), np.stack(p_null), PATCH_SITES, RULE_P.alternative, RULE_P.correction)
    report.add("## Setup", "", __doc__.split("What counts")[0].strip(), "", agents.describe(),
               f"{n} positions; {n_null} untrained networks; {n_draws} random-square draws.", "")
    report.finding(RULE_L, ev_l, "L: look-ahead decodable")
    report.finding(RULE_P, ev_p, "P: future-square patching")
    tables(report, rows, profiles, solver_rows, p_rows, channel_rows, all_sites)
    summary(report, rows, solver_rows, p_rows)
    plots(out, profiles, p_rows, channel_rows, all_sites)
    report.data.update({"probe_rows": rows, "profiles": profiles, "solver_rows": solver_rows, "patch_rows": p_rows,
                        "channel_rows": channel_rows})
    report.add("", f"Wall time {time.perf_counter() - t_start:.0f} s.")
    log(f"report: {report.write(out, args.readme, key=f'lookahead.{args.tier}')}")


def null_squares(future: np.ndarray, moved: np.ndarray, lines: np.ndarray, rng: np.random.Generator,
                 n: int) -> np.ndarray:
    """``n`` control squares per pair, each as far (Chebyshev distance) from the nearest moved
    piece as the pair's future square, and neither a moved square nor on either line: the
    corrupted activations differ most near the moved piece, so a control elsewhere would
    compare the future square with squares the corruption never reached. Falls back to the
    closest available distance when no square matches exactly."""
    rows, cols = np.divmod(np.arange(42), 7)

    def dist(sq):  # (pairs, k) squares -> (pairs, 42) distance of every square to the nearest of them
        r, c = np.divmod(sq, 7)
        return np.maximum(np.abs(rows[None, None] - r[..., None]), np.abs(cols[None, None] - c[..., None])).min(1)

    to_moved = dist(moved)
    target = to_moved[np.arange(len(future)), future]
    banned = np.zeros((len(future), 42), bool)
    for cols_ in (moved, lines):
        for k in range(cols_.shape[1]):
            ok = cols_[:, k] >= 0
            banned[np.flatnonzero(ok), cols_[ok, k]] = True
    gap = np.where(banned, 99, np.abs(to_moved - target[:, None]))
    allowed = gap == gap.min(1, keepdims=True)
    return np.stack([rng.choice(np.flatnonzero(row), n) for row in allowed])


def patching(run, params, states, boards, line, a, n_draws, log):
    """Rule P's statistic and null per patch site, and a summary of the pairs."""
    model, env = run.model, run.env
    squares = np.asarray(line.squares)
    alive2 = np.asarray(line.alive)[2]
    clean_ok = np.flatnonzero((squares[:, 2] >= 0) & alive2)
    rng = np.random.default_rng(1000 + a)
    cands = corruptions(boards[clean_ok], rng, CANDIDATES)
    src_idx = clean_ok[[c[0] for c in cands]]
    cboards = np.stack([c[1] for c in cands])
    players = np.asarray(states.current_player)[src_idx]
    corrupt = from_boards(GAME, cboards, players)
    ctree = search.search_trees(run, params, corrupt, num_simulations=REF_SIMS)
    cline = lookahead.follow(env, corrupt, ctree.pv, 3)
    csq = np.asarray(cline.squares)
    moved = np.array([[c[2], c[3]] for c in cands])
    keep = ((csq[:, 0] == squares[src_idx, 0]) & (csq[:, 2] >= 0) & (csq[:, 2] != squares[src_idx, 2])
            & ~(squares[src_idx, 2][:, None] == moved).any(1))
    keep = np.flatnonzero(keep)
    # one pair per clean position (the first kept corruption), at most MAX_PAIRS
    _, first = np.unique(src_idx[keep], return_index=True)
    keep = keep[np.sort(first)][:MAX_PAIRS]
    clean = src_idx[keep]
    log(f"agent {a}: {len(cands)} corruptions of {len(clean_ok)} positions, {len(keep)} pairs kept")
    if len(keep) < 10:
        raise SystemExit(f"only {len(keep)} counterfactual pairs for agent {a}; need at least 10")
    future = squares[clean, 2]
    rnd = null_squares(future, moved[keep], np.concatenate([squares[clean], csq[keep]], 1),
                       np.random.default_rng(500 + a), n_draws)
    clean_obs = states.observation[clean].astype(jnp.float32)
    corrupt_obs = corrupt.observation[keep].astype(jnp.float32)
    first_move = jnp.asarray(np.asarray(line.moves)[clean, 0])
    legal = jnp.asarray(states.legal_action_mask[clean])
    obs_p, null_p, rows = [], [], []
    for site in PATCH_SITES:
        drops = patch_drops(model, params, clean_obs, corrupt_obs, legal, first_move, site,
                            np.concatenate([future[:, None], csq[keep, 2][:, None], rnd], 1))
        obs_p.append(float(drops[:, 0].mean()))
        null_p.append(drops[:, 2:].mean(0))
        rows.append({"site": site, "pairs": len(keep), "future_square": float(drops[:, 0].mean()),
                     "corrupted_future_square": float(drops[:, 1].mean()), "random_square": float(drops[:, 2:].mean()),
                     "random_square_p95": float(np.quantile(drops[:, 2:].mean(0), 0.95))})
    return obs_p, np.stack(null_p, 1), rows


def tables(report, rows, profiles, solver_rows, p_rows, channel_rows, sites) -> None:
    report.add("## Measurements", "", f"Probe accuracy at {RULE_SITE} (held out):", "",
               "| agent | label | positions | trained | untrained mean | shuffled labels | majority | "
               "trained network's policy logits |", "|---|---|---|---|---|---|---|---|")
    for a, name, npos, acc, unt, shuf, base, logits in rows:
        report.add(f"| {a} | {name}{' (positive control)' if name == CONTROL else ''} | {npos} | {acc:.3f} | "
                   f"{unt:.3f} | {shuf:.3f} | {base:.3f} | {logits:.3f} |")
    first = [p for p in profiles if p["agent"] == 0]
    report.add("", f"Every site, agent 0 (trained / mean of {PROFILE_NULL} untrained networks / shuffled labels):", "",
               "| site | " + " | ".join(p["label"] for p in first) + " |", "|---" * (len(first) + 1) + "|")
    for s in sites:
        report.add(f"| {s} | " + " | ".join(f"{p['trained'][s]:.3f} / {p['untrained'][s]:.3f} / {p['shuffled'][s]:.3f}"
                                            for p in first) + " |")
    if solver_rows:
        report.add("", f"Solver lines (positions with >= {SOLVER_MIN_PIECES} pieces), accuracy at {RULE_SITE}:", "",
                   "| agent | label | positions | trained | untrained mean | majority | agrees with the agent's PV |",
                   "|---|---|---|---|---|---|---|")
        for a, name, npos, acc, unt, base, agree in solver_rows:
            report.add(f"| {a} | {name} | {npos} | {acc:.3f} | {unt:.3f} | {base:.3f} | {agree:.3f} |")
    report.add("", f"Channels the probes read at {RULE_SITE} (held-out accuracy lost when a channel is replaced by "
               "its per-square mean; the three largest):", "", "| agent | label | probe accuracy | top channels (loss) | "
               "sum over all channels |", "|---|---|---|---|---|")
    for r in channel_rows:
        top = ", ".join(f"{c} ({r['drops'][c]:.3f})" for c in r["top"])
        report.add(f"| {r['agent']} | {r['label']} | {r['accuracy']:.3f} | {top} | {sum(r['drops']):.3f} |")
    report.add("", "Patching one square (mean drop of the clean first move's log-probability, nats):", "",
               "| agent | site | pairs | clean future square | corrupted line's future square | control square (distance-"
               "matched) | control 95th percentile |", "|---|---|---|---|---|---|---|")
    for a, rows_a in enumerate(p_rows):
        for r in rows_a:
            report.add(f"| {a} | {r['site']} | {r['pairs']} | {r['future_square']:.4f} | "
                       f"{r['corrupted_future_square']:.4f} | {r['random_square']:.4f} | {r['random_square_p95']:.4f} |")


def summary(report, rows, solver_rows, p_rows) -> None:
    for name in LABELS:
        r = [x for x in rows if x[1] == name]
        report.conclusions.append(
            f"Measured ({name}, {len(r)} agents): accuracy at {RULE_SITE} trained "
            f"{min(x[3] for x in r):.3f}-{max(x[3] for x in r):.3f}, untrained mean "
            f"{min(x[4] for x in r):.3f}-{max(x[4] for x in r):.3f}, shuffled {min(x[5] for x in r):.3f}-"
            f"{max(x[5] for x in r):.3f}, majority {min(x[6] for x in r):.3f}-{max(x[6] for x in r):.3f}, "
            f"probe on the policy logits alone {min(x[7] for x in r):.3f}-{max(x[7] for x in r):.3f}"
            f"{' (positive control)' if name == CONTROL else ''}.")
    fut = [r["future_square"] - r["random_square"] for rows_a in p_rows for r in rows_a]
    report.conclusions.append(f"Measured (patching): future-square minus distance-matched control-square drop "
                              f"ranges {min(fut):+.4f} to {max(fut):+.4f} nats over agents and sites.")


def plots(out, profiles, p_rows, channel_rows, sites) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(LABELS), figsize=(4 * len(LABELS), 3.4), sharey=False)
    x = np.arange(len(sites))
    for ax, name in zip(axes, LABELS):
        for p in profiles:
            if p["label"] != name:
                continue
            first = p["agent"] == 0
            ax.plot(x, [p["trained"][s] for s in sites], "o-", color="C0", label="trained" if first else None)
            ax.plot(x, [p["untrained"][s] for s in sites], "s--", color="C1",
                    label="untrained" if first else None)
            ax.plot(x, [p["shuffled"][s] for s in sites], ":", color="C2", label="shuffled" if first else None)
            ax.axhline(p["majority"], color="grey", lw=0.6)
        ax.set_xticks(x)
        ax.set_xticklabels(sites, rotation=45, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("held-out accuracy")
        ax.legend(fontsize=7)
    save_figure(fig, out / "probe_profile.png")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for a, rows_a in enumerate(p_rows):
        ax.plot([r["site"] for r in rows_a], [r["future_square"] for r in rows_a], "o-", color=f"C{a}",
                label=f"agent {a}: future square")
        ax.plot([r["site"] for r in rows_a], [r["random_square"] for r in rows_a], "x--", color=f"C{a}",
                label=f"agent {a}: random square")
    ax.set_ylabel("drop of log p(first move)")
    ax.set_title("patching one square from the corrupted position", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, out / "patching.png")
    fig, axes = plt.subplots(1, len(CHANNEL_LABELS), figsize=(5 * len(CHANNEL_LABELS), 3.2))
    for ax, name in zip(np.atleast_1d(axes), CHANNEL_LABELS):
        for r in channel_rows:
            if r["label"] == name:
                ax.plot(r["drops"], "o-", ms=3, label=f"agent {r['agent']}")
        ax.set(xlabel=f"channel of {RULE_SITE}", ylabel="probe accuracy lost", title=name)
        ax.legend(fontsize=7)
    save_figure(fig, out / "channels.png")


if __name__ == "__main__":
    main()
