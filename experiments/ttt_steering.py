"""Steering tic-tac-toe AlphaZero networks with a "centre is taken" direction.

What counts as a finding (stated before any number; `RULE` below): at a site, adding the
direction once (coefficient 1) lowers the network's probability of playing the centre by at
least 0.05 more than the mean of equal-norm random directions at that site, with an empirical
p <= 0.05 against those random directions (one-sided, Holm-corrected over every site
searched), in every one of at least 3 independently seeded agents. Otherwise the report says
"no effect found".

The direction at a site is the mean activation over non-terminal positions where the centre
is occupied minus the mean over those where it is free (activation addition, Turner et al.).
It is added on a fixed random sample of positions where the centre is free (and legal). The
null: the same statistic for `--null` random directions of the direction's norm at the same
site (default: enough draws that one site can reach p <= 0.05 after Holm over all sites).

    python experiments/ttt_steering.py --tier quick     # smaller agents, see the report
    python experiments/ttt_steering.py --agents 3 --out runs/ttt_steering
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.findings.controls import steering_null
from rljaxinterp.interp.metrics import log_policy
from rljaxinterp.interp.steering import mean_difference, steering_effect
from rljaxinterp.reporting import pyplot, save_figure

CENTRE = 4
RULE = findings.Rule(
    "adding the centre-taken direction lowers P(play centre) beyond equal-norm random directions",
    min_effect=0.05, direction="decrease", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic="change of P(centre) minus the random-direction mean")
COEFFICIENTS = [-1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1]


def centre_prob_change(legal):
    def statistic(steered, base):
        return jnp.mean(jnp.exp(log_policy(steered.logits, legal))[:, CENTRE]
                        - jnp.exp(log_policy(base.logits, legal))[:, CENTRE])
    return statistic


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/ttt_steering")
    parser.add_argument("--null", type=int, default=None, help="random directions per site (default: by tier)")
    parser.add_argument("--positions", type=int, default=None, help="free-centre positions steered (default: by tier)")
    args = parser.parse_args()
    agents, out = findings.open_agents(args)
    report = findings.Report("Steering with a \"centre taken\" direction", agents.seeds, args.tier)
    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    obs = states.observation[live].astype(jnp.float32)
    legal = jnp.asarray(states.legal_action_mask[live])
    taken = np.asarray(obs[:, 1, 1].sum(-1) > 0)
    free = np.flatnonzero(~taken)
    n_pos = args.positions or (128 if args.tier == "quick" else 512)
    sample = np.sort(np.random.default_rng(args.seed).choice(free, min(n_pos, free.size), replace=False))
    sites = [s for s in interp.sites(agents.runs[0].model, obs[:1]) if s not in ("input", "tokens", "logits", "value")]
    n_null = args.null or RULE.required_draws(len(sites)) + 20
    statistic = centre_prob_change(legal[sample])

    observed = np.zeros((len(agents), len(sites)))
    null = np.zeros((len(agents), n_null, len(sites)))
    curves = np.zeros((len(agents), len(sites), len(COEFFICIENTS)))
    norms, base_centre = np.zeros((len(agents), len(sites))), []
    for a, run in enumerate(agents):
        model, params = run.model, run.params()
        _, cache = interp.run_with_cache(model, params, obs, sites)
        base = model.apply({"params": params}, obs[sample])
        base_centre.append(float(jnp.exp(log_policy(base.logits, legal[sample]))[:, CENTRE].mean()))
        for s, site in enumerate(sites):
            direction = mean_difference(cache[site][taken], cache[site][~taken])
            norms[a, s] = float(jnp.linalg.norm(direction))
            key = jax.random.fold_in(jax.random.key(args.seed), a * 1000 + s)
            observed[a, s], null[a, :, s] = steering_null(model, params, obs[sample], site, direction, statistic,
                                                          key, n_null)
            effect = steering_effect(model, params, obs[sample], site, direction, COEFFICIENTS, legal[sample])
            curves[a, s] = np.asarray(effect["action_prob_change"][:, CENTRE])
        print(f"agent seed {agents.seeds[a]}: best site {sites[int(observed[a].argmin())]} "
              f"{observed[a].min():+.3f} (P(centre) {base_centre[-1]:.3f})", flush=True)

    ev = findings.evidence(observed, null, sites, RULE.alternative, RULE.correction)
    raw = findings.evidence(observed, null, sites, RULE.alternative, RULE.correction, effect=observed)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, site in enumerate(sites):
        ax.plot(COEFFICIENTS, curves[:, s].mean(0), marker="o", label=site)
    ax.set_xlabel("coefficient")
    ax.set_ylabel("change of P(play centre), mean over agents")
    ax.legend(fontsize=6)
    save_figure(fig, out / "steering_curves.png")

    quick = (" Quick tier: small agents (conv 16 channels, 1 block, 30 AlphaZero iterations) and the fewest "
             "null draws that can reach significance; the full tier's agents are the ones earlier reports used.")
    report.add(
        f"Agents: {agents.describe()}. Direction per site: mean activation over the {int(taken.sum())} non-terminal "
        f"positions with the centre occupied minus the mean over the {free.size} with it free, added at "
        f"coefficient 1 on {sample.size} free-centre positions (seed {args.seed}), where the unsteered agents play "
        f"the centre with mean probability {', '.join(f'{b:.3f}' for b in base_centre)}. Null: {n_null} "
        f"random directions of the same norm per site and agent; {len(sites)} sites searched."
        + (quick if args.tier == "quick" else ""), "")
    report.finding(RULE, ev, "Centre-taken direction (pre-stated rule)")
    report.add("### Raw change of P(centre) at coefficient 1 (not corrected for the random-direction mean)", "",
               *findings.evidence_table(raw), "",
               "Direction norms (per agent): " + "; ".join(
                   f"`{s}` {', '.join(f'{x:.2f}' for x in norms[:, i])}" for i, s in enumerate(sites)), "",
               "![curves](steering_curves.png)")
    report.data.update(coefficients=COEFFICIENTS, sites=sites, curves=curves.tolist(), norms=norms.tolist(),
                       base_centre_prob=base_centre, positions=sample.tolist())
    path = report.write(out, args.readme, f"ttt_steering.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
