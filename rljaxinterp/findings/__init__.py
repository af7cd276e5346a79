"""Findings that survive a retrain: seeded agent sets, null distributions, intervals across
agents, pre-stated conclusion rules and stamped reports, for any experiment and agent kind.

An experiment built on this package

1. states its rule before measuring anything (in its docstring, from ``Rule.describe()``);
2. trains or reuses N seeded agents (``seeded_runs``; default 3);
3. measures its statistic per agent and per test searched (sites, concepts, settings) and
   draws the matching null many times per agent (``draw_null`` with one of the controls);
4. turns both into ``evidence`` (empirical p, null percentile, correction over the tests)
   and lets the rule judge it; the report gives mean, 95% interval and per-agent values.

```python
from rljaxinterp import findings
rule = findings.Rule("the direction lowers P(centre)", min_effect=0.05, direction="decrease",
                     alpha=0.05, agreement=1.0, min_agents=3, correction="holm")
agents = findings.seeded_runs(config, "runs/ttt_agents", n=3)       # <base>/seed{k}
observed = ...                                                      # (agents, tests)
null = ...                                                          # (agents, draws, tests)
ev = findings.evidence(observed, null, tests=sites, alternative=rule.alternative,
                       correction=rule.correction)
report = findings.Report("Steering", seeds=agents.seeds, tier="quick")
report.finding(rule, ev, "centre direction")   # "effect found: ..." or "no effect found ..."
report.write(out, readme="experiments/README.md", key="ttt_steering.quick")
```

API

- Agent sets (``findings.agents``): ``seeded_runs(config, base, n=3, first_seed=0, seeds=None)
  -> AgentSet`` (``.runs``, ``.seeds``, ``.base``, ``.describe()``): each ``<base>/seed{s}``
  reused when it holds the finished run of ``config`` with that seed, resumed when
  unfinished. ``train_or_reuse(config, folder)`` for one run. ``tic_tac_toe_config(tier,
  model, seed)`` and ``tic_tac_toe_agents(base, n, tier)``: the pinned AlphaZero agents of
  the tic-tac-toe experiments (``full`` or the smaller ``quick`` tier); ``connect_four_config``
  and ``connect_four_agents`` likewise for the connect-four search experiments;
  ``play_positions(agents, games, key)``: distinct positions of the set's own epsilon-greedy play.
- Null draws (``findings.stats``): ``draw_null(statistic, key, n, batch=None)`` stacks
  ``statistic(key_i)``; controls to draw from: ``random_directions(key, like, n, norm)`` (equal
  norm), ``random_units(key, num_units, k, n, exclude)``, ``shuffled_labels(key, labels, n)``,
  ``untrained_params(model, obs, key, n)``.
- Comparison: ``empirical_p(observed, null, alternative)`` = (1 + #null at least as extreme) /
  (1 + n); ``percentile(observed, null)``; ``correct(p, "holm" | "bh" | "none", axis)``;
  ``required_draws(tests, alpha, method)``: the fewest draws for which a corrected p can
  reach ``alpha``.
- Intervals: ``interval(values, "t" | "bootstrap", level=0.95) -> Interval`` (mean, low, high,
  per-agent values, method); ``fmt_interval``.
- Rules (``findings.rules``): ``evidence(observed, null, tests, alternative, correction,
  effect=None) -> Evidence`` (effect defaults to observed minus the null mean);
  ``Rule(claim, min_effect, direction, alpha, agreement, min_agents, correction)`` with
  ``describe()``, ``passing(ev)``, ``judge(ev) -> Conclusion`` (``holds``, ``text`` starting
  with "effect found" or "no effect found", per-agent ``passing``, ``holding_tests``).
- Reports (``findings.report``): ``Report(title, seeds, tier)`` with ``add``, ``finding(rule,
  ev, name)``, ``write(out, readme=None, key=None)``: report.md and results.json stamped with
  commit, seeds, tier, wall time and machine (platform, CPUs, jax backend); with ``readme``
  the block ``<!-- findings:KEY -->`` is rewritten (``update_block``). ``evidence_table``,
  ``git_commit``, ``machine``.
- Controls through the model (``findings.controls``): ``steering_null(model, params, obs, site,
  direction, statistic, key, n, coefficient=1.0)`` -> the statistic for the direction and for
  ``n`` equal-norm random directions (vmapped, compiled once per model and site).
- Experiments share ``experiment_parser(doc, out)`` (``--agents``, ``--tier``, ``--base``,
  ``--out``, ``--seed``, ``--readme``), ``output_folder(args)`` (a fresh report folder per tier)
  and ``open_agents(args)`` (``findings.cli``: the tic-tac-toe agent set of ``--tier`` and that folder).
"""

import importlib

from rljaxinterp.findings.report import Report, evidence_table, git_commit, machine, update_block
from rljaxinterp.findings.rules import EFFECT, NO_EFFECT, Conclusion, Evidence, Rule, evidence
from rljaxinterp.findings.stats import (
    Interval,
    correct,
    draw_null,
    empirical_p,
    fmt_interval,
    interval,
    percentile,
    random_directions,
    random_units,
    required_draws,
    shuffled_labels,
    untrained_params,
)

# Agent sets, the experiments' command line and the model-level controls pull in the run
# layer (orbax, the agents) and the interp methods: imported on first use, so the statistics
# and rules stay cheap to import.
_LAZY = {
    "AgentSet": "agents", "seeded_runs": "agents", "tic_tac_toe_agents": "agents",
    "tic_tac_toe_config": "agents", "connect_four_agents": "agents", "connect_four_config": "agents",
    "play_positions": "agents",
    "total_steps": "agents", "train_or_reuse": "agents",
    "experiment_parser": "cli", "open_agents": "cli", "output_folder": "cli",
    "steering_null": "controls",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in ("agents", "cli", "controls"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EFFECT",
    "NO_EFFECT",
    "AgentSet",
    "Conclusion",
    "Evidence",
    "Interval",
    "Report",
    "Rule",
    "connect_four_agents",
    "connect_four_config",
    "correct",
    "draw_null",
    "empirical_p",
    "evidence",
    "evidence_table",
    "experiment_parser",
    "fmt_interval",
    "git_commit",
    "interval",
    "machine",
    "open_agents",
    "output_folder",
    "percentile",
    "play_positions",
    "random_directions",
    "random_units",
    "required_draws",
    "seeded_runs",
    "shuffled_labels",
    "steering_null",
    "tic_tac_toe_agents",
    "tic_tac_toe_config",
    "total_steps",
    "train_or_reuse",
    "untrained_params",
    "update_block",
]
