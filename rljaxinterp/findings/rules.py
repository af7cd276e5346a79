"""Conclusion rules: a finding's thresholds, stated before any number, turned into a verdict.

An experiment measures one statistic per agent and per test (a site, a concept, a setting it
searched), draws that statistic's null many times, and hands both to :func:`evidence`. A
:class:`Rule` then decides, with the thresholds it was given before the measurement, whether
the finding holds, and writes the conclusion sentence; when the thresholds are not met it
says "no effect found".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rljaxinterp.findings.stats import (
    CORRECTION_NAMES,
    CORRECTIONS,
    Interval,
    _check_choice,
    correct,
    empirical_p,
    fmt_interval,
    interval,
    percentile,
    required_draws,
)

DIRECTIONS = ("increase", "decrease", "either")
NO_EFFECT = "no effect found"
EFFECT = "effect found"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Measurements of one statistic against its null, per agent and test.

    observed, effect, p, p_adjusted, percentile: ``(agents, tests)``. ``effect`` is the
    observed statistic minus the mean of its null unless the experiment gave its own.
    ``p`` is the empirical p-value ``(1 + #null at least as extreme) / (1 + draws)``,
    ``p_adjusted`` corrects it over the tests (the sites or settings searched) by
    ``correction``.
    """

    observed: np.ndarray
    effect: np.ndarray
    null_mean: np.ndarray
    p: np.ndarray
    p_adjusted: np.ndarray
    percentile: np.ndarray
    tests: tuple[str, ...]
    draws: int
    alternative: str
    correction: str

    @property
    def agents(self) -> int:
        return self.observed.shape[0]

    def interval(self, test: int | str, method: str = "t") -> Interval:
        """Mean effect of one test across agents with its 95% interval."""
        i = self.tests.index(test) if isinstance(test, str) else test
        return interval(self.effect[:, i], method)


def evidence(observed, null, tests: Sequence[str] | None = None, alternative: str = "greater",
             correction: str = "holm", effect=None) -> Evidence:
    """Compare ``observed`` ``(agents, tests)`` with ``null`` ``(agents, draws, tests)`` (a 1-D
    observed is one test per agent; a null without the agent axis is shared by every agent)."""
    _check_choice("correction", correction, CORRECTIONS)
    obs = np.asarray(observed, np.float64)
    obs = obs[:, None] if obs.ndim == 1 else obs
    if obs.ndim != 2:
        raise ValueError(f"observed has shape {obs.shape}; expected (agents, tests)")
    null = np.asarray(null, np.float64)
    if null.ndim == 1 and obs.shape[1] == 1:  # (draws,) of the one test
        null = null[:, None]
    if null.ndim == obs.ndim and null.shape[-1] != obs.shape[-1] and obs.shape[-1] == 1:
        null = null[..., None]
    if null.ndim == 2:  # (draws, tests), shared by all agents
        null = np.broadcast_to(null, (obs.shape[0], *null.shape))
    if null.ndim != 3 or null.shape[0] != obs.shape[0] or null.shape[2] != obs.shape[1]:
        raise ValueError(f"null has shape {null.shape}; expected (agents, draws, tests) = "
                         f"({obs.shape[0]}, draws, {obs.shape[1]}) to match observed {obs.shape}")
    names = tuple(tests) if tests is not None else tuple(str(i) for i in range(obs.shape[1]))
    if len(names) != obs.shape[1]:
        raise ValueError(f"{len(names)} test names for {obs.shape[1]} tests")
    p = np.stack([empirical_p(o, n, alternative) for o, n in zip(obs, null)])
    pct = np.stack([percentile(o, n) for o, n in zip(obs, null)])
    null_mean = null.mean(1)
    eff = obs - null_mean if effect is None else np.asarray(effect, np.float64).reshape(obs.shape)
    return Evidence(obs, eff, null_mean, p, correct(p, correction, axis=1), pct, names, null.shape[1],
                    alternative, correction)


@dataclasses.dataclass(frozen=True)
class Conclusion:
    holds: bool
    text: str
    passing: np.ndarray  # (agents, tests): this agent's effect met the size and significance
    holding_tests: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Rule:
    """What counts as a finding, fixed before measuring.

    A test (site, concept, ...) holds for an agent when its effect is at least
    ``min_effect`` in ``direction`` and its corrected p-value is at most ``alpha``; the
    finding holds at a test when at least ``agreement`` (a share) of at least ``min_agents``
    agents pass there. ``claim`` is the sentence that is true when it holds.
    """

    claim: str
    min_effect: float
    direction: str = "either"
    alpha: float = 0.05
    agreement: float = 1.0
    min_agents: int = 3
    correction: str = "holm"
    statistic: str = "effect"

    def __post_init__(self) -> None:
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("correction", self.correction, CORRECTIONS)
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect={self.min_effect} must be >= 0 (the direction is given separately)")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1)")
        if not 0 < self.agreement <= 1:
            raise ValueError(f"agreement={self.agreement} must be a share in (0, 1]")
        if self.min_agents < 1:
            raise ValueError(f"min_agents={self.min_agents} must be >= 1")

    @property
    def alternative(self) -> str:
        return {"increase": "greater", "decrease": "less", "either": "two-sided"}[self.direction]

    def required_draws(self, tests: int) -> int:
        """Null draws needed for a corrected p-value to be able to reach ``alpha``."""
        return required_draws(tests, self.alpha, self.correction)

    def describe(self) -> str:
        """The pre-stated thresholds as one sentence (for docstrings and reports)."""
        sign = {"increase": ">= +", "decrease": "<= -", "either": "|.| >= "}[self.direction]
        agents = ("every agent" if self.agreement == 1 else f"at least {100 * self.agreement:.0f}% of agents")
        return (f"{self.statistic} {sign}{self.min_effect:g} and empirical p <= {self.alpha:g} against the null "
                f"after {CORRECTION_NAMES[self.correction]} correction over the tests searched, in {agents} "
                f"(at least {self.min_agents} agents)")

    def passing(self, ev: Evidence) -> np.ndarray:
        eff = ev.effect
        big = {"increase": eff >= self.min_effect, "decrease": eff <= -self.min_effect,
               "either": np.abs(eff) >= self.min_effect}[self.direction]
        return big & (ev.p_adjusted <= self.alpha)

    def judge(self, ev: Evidence) -> Conclusion:
        """The conclusion the thresholds allow, as a sentence naming the numbers it rests on."""
        if ev.correction != self.correction:
            raise ValueError(f"evidence corrected by {ev.correction!r} but the rule states {self.correction!r}")
        if ev.alternative != self.alternative:
            raise ValueError(f"evidence tested {ev.alternative!r} but the rule's direction {self.direction!r} "
                             f"needs {self.alternative!r}")
        ok = self.passing(ev)
        share = ok.mean(0)
        enough = ev.agents >= self.min_agents
        holds_at = np.flatnonzero((share >= self.agreement - 1e-12) & enough)
        holding = tuple(ev.tests[i] for i in holds_at)
        if holding:
            best = max(holds_at, key=lambda i: abs(ev.effect[:, i].mean()))
        else:  # the test closest to holding: most agents passing, then largest mean effect
            signed = ev.effect.mean(0) * (-1 if self.direction == "decrease" else 1)
            if self.direction == "either":
                signed = np.abs(signed)
            best = max(range(len(ev.tests)), key=lambda i: (ok[:, i].sum(), signed[i]))
        where = f" at `{ev.tests[best]}`" if len(ev.tests) > 1 else ""
        numbers = (f"{self.statistic}{where} {fmt_interval(ev.interval(best))}, 95% t-interval across "
                   f"{ev.agents} agents; null percentile per agent "
                   f"{', '.join(f'{x:.1f}' for x in ev.percentile[:, best])}; corrected p per agent "
                   f"{', '.join(f'{x:.3g}' for x in ev.p_adjusted[:, best])} ({ev.draws} null draws, "
                   f"{CORRECTION_NAMES[self.correction]} over {len(ev.tests)} tests); "
                   f"{int(ok[:, best].sum())}/{ev.agents} agents pass")
        if holding:
            more = f" (holds at {len(holding)} of {len(ev.tests)} tests: {', '.join(holding)})" if len(ev.tests) > 1 else ""
            return Conclusion(True, f"{EFFECT}: {self.claim}{more}. {numbers}.", ok, holding)
        reason = (f"only {ev.agents} agents, the rule needs {self.min_agents}" if not enough else
                  f"the rule needs {self.describe()}")
        floor = min(1.0, (1 + 0) / (1 + ev.draws) * (1 if self.correction == "none" else len(ev.tests)))
        if floor > self.alpha:
            reason += (f"; with {ev.draws} null draws and {len(ev.tests)} tests no corrected p can go below "
                       f"{floor:.3g} (need >= {self.required_draws(len(ev.tests))} draws)")
        return Conclusion(False, f"{NO_EFFECT} ({self.claim} is not supported). Closest: {numbers}; {reason}.",
                          ok, ())
