"""The one frozen, JSON-round-trippable description of an AlphaZero run."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

POLICIES = ("gumbel", "muzero")
PRESETS = ("cpu", "accelerator")  # the presets of rljaxinterp.runs.presets, per backend


LEGACY_DEFAULTS = {"symmetries": False, "restrict_pass": False}


@dataclasses.dataclass(frozen=True)
class AlphaZeroConfig:
    """Everything that determines a run; two runs with equal configs are bit-identical.

    The defaults are the tic-tac-toe config (``benchmarks/alphazero_tictactoe.py``): a wide
    exploration rate covers the positions that perfect play never reaches, so the raw network
    learns the right move and value sign there too.

    ``exploration`` is the probability of playing a uniformly random legal move in
    self-play (the search's improved policy stays the policy target): pure self-play
    collapses onto the network's favourite lines. ``value_target_mix`` interpolates the
    value target between the (bootstrapped) game outcome (0) and the root search value (1).
    ``symmetries`` augments each training sample with a random board symmetry of its game
    (:mod:`rljaxinterp.agents.symmetry`; no-op for games without one, e.g. chess).
    ``restrict_pass`` (Go only) lets the agent pass only when it has no other legal move or
    its opponent has just passed; see ``Agent.legal_actions``.

    ``preset`` labels the preset the config started from ("cpu" or "accelerator", set by
    ``runs.default_config``; None if built directly or read from an older run folder). A
    label, not a setting: equality, resume checks and compile caches ignore it, and
    ``to_dict`` omits it when None, so older run folders and cached configs load and compare
    as before.
    """

    env: str = "tic_tac_toe"
    model: str = "mlp"
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"hidden": [128, 128]})
    policy: str = "gumbel"
    num_simulations: int = 16
    max_num_considered_actions: int = 16
    games: int = 256
    unroll_length: int = 9
    exploration: float = 0.7
    value_target_mix: float = 0.0
    cut_exploration: bool = True
    symmetries: bool = True
    restrict_pass: bool = False
    learning_rate: float = 1e-3
    final_learning_rate_fraction: float = 0.1  # cosine decay over the run to this fraction
    updates_per_iteration: int = 64
    minibatch_size: int = 256
    replay_size: int = 16384
    seed: int = 0
    checkpoint_every: int = 10
    iterations: int = 300
    preset: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        # JSON form is canonical (tuples -> lists), so a config read back compares equal.
        object.__setattr__(self, "model_kwargs", json.loads(json.dumps(dict(self.model_kwargs))))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value and its allowed range."""
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"AlphaZeroConfig.{name}={getattr(self, name)!r} is not allowed; {allowed}")

        def is_int(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        from rljaxinterp.envs import available
        from rljaxinterp.models import KINDS

        need(isinstance(self.env, str) and self.env in available(), "env",
             "use a registered two-player game, e.g. tic_tac_toe, connect_four, othello, go_9x9, chess")
        need(self.model in KINDS, "model", f"allowed: {', '.join(KINDS)}")
        need(self.policy in POLICIES, "policy", f"allowed: {', '.join(POLICIES)}")
        for name, lo in [("num_simulations", 1), ("max_num_considered_actions", 1), ("games", 1),
                         ("unroll_length", 1), ("updates_per_iteration", 0), ("minibatch_size", 1),
                         ("replay_size", 1), ("seed", 0), ("checkpoint_every", 1), ("iterations", 0)]:
            need(is_int(name) and getattr(self, name) >= lo, name, f"need an integer >= {lo}")
        need(is_num("exploration") and 0.0 <= self.exploration <= 1.0, "exploration", "need 0 <= value <= 1")
        need(is_num("value_target_mix") and 0.0 <= self.value_target_mix <= 1.0, "value_target_mix",
             "need 0 <= value <= 1")
        need(isinstance(self.cut_exploration, bool), "cut_exploration", "need True or False")
        need(isinstance(self.symmetries, bool), "symmetries", "need True or False")
        need(isinstance(self.restrict_pass, bool) and (not self.restrict_pass or self.env.startswith("go_")),
             "restrict_pass", "need True or False, and True only for Go (go_9x9, go_19x19)")
        need(is_num("learning_rate") and 0.0 < self.learning_rate <= 1.0, "learning_rate",
             "need 0 < value <= 1")
        need(is_num("final_learning_rate_fraction") and 0.0 <= self.final_learning_rate_fraction <= 1.0,
             "final_learning_rate_fraction", "need 0 <= value <= 1")
        need(self.seed < 2**31, "seed", "need 0 <= seed < 2**31")
        need(self.preset is None or self.preset in PRESETS, "preset", f"allowed: None, {', '.join(PRESETS)}")
        need(self.replay_size >= self.games * self.unroll_length, "replay_size",
             f"need >= games * unroll_length = {self.games * self.unroll_length} (one iteration's positions)")

    def to_dict(self) -> dict[str, Any]:
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        if data["preset"] is None:
            del data["preset"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlphaZeroConfig:
        data = dict(data)
        if data.get("agent", "alphazero") != "alphazero":
            raise ValueError(f"this is a {data['agent']!r} config, not an AlphaZero one")
        data.pop("agent", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AlphaZeroConfig field(s) {unknown}; allowed: {sorted(known)}")
        # Runs written before a field existed trained without that feature.
        return cls(**{**LEGACY_DEFAULTS, **data})

    def replace(self, **changes: Any) -> AlphaZeroConfig:
        return dataclasses.replace(self, **changes)
