"""Behaviour under interventions: whole episodes, or whole games, played by an edited network.

A one-step effect (``steering_effect``) says how the policy moves on fixed states. Whether the
agent then *does* something else (reaches the cheese, blocks the threat, wins more) needs the
edited network to act at every step, on states that follow from its own moves, and a control:
the same edit in a random direction, or at random units, of equal size. ``rollout`` plays the
unedited network, every member of a list of interventions and each member's random control in
one compiled call, vmapped over members and episodes, all from the same keys (common random
numbers), so a difference between members is the edit's and not the dice's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs.base import Env, EnvState
from rljaxinterp.interp.cache import Params
from rljaxinterp.interp.interventions import (
    AnyIntervention,
    Intervention,
    SubspaceIntervention,
    _as_list,
    run_with_interventions,
)
from rljaxinterp.models.base import mask_logits

POLICIES = ("greedy", "sample")
OPPONENTS = ("random", "self")
# Per game, the concepts (of the concept library) that say "the mover can win now" and "the
# opponent threatens to win next move": the chosen-move statistics ``took_win`` and ``blocked``.
WIN_CONCEPTS = {
    "tic_tac_toe": ("can_win_now", "opponent_threatens_win"),
    "connect_four": ("immediate_win", "opponent_immediate_win"),
}

Opponent = str | Callable[[EnvState, jax.Array], jax.Array]


@struct.dataclass
class Behaviour:
    """Per-episode behaviour, each metric shaped ``(episodes,)`` for the unedited network,
    ``(members, episodes)`` for the edits and ``(members, controls, episodes)`` for their random
    controls (several independent draws per member: the null an edit is judged against).

    Rates whose denominator varies by episode (``blocked``: threats blocked out of threats
    faced) are kept as ``<name>`` numerators and ``<name>_of`` denominators; ``summary``
    pools them over episodes.
    """

    baseline: dict[str, jax.Array]
    edited: dict[str, jax.Array]
    control: dict[str, jax.Array]
    labels: tuple[str, ...] = struct.field(pytree_node=False)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per metric: the unedited mean; per member the edited mean and its standard error
        (over episodes; binomial for pooled rates), the control mean over every draw, each
        draw's mean, their spread (standard deviation across draws) and, with 2 or more draws,
        ``p``: the share of draws at least as far from the unedited mean as the edit, counting
        the edit itself ((1 + k) / (1 + draws)). Pooled rates also give their event counts."""
        out = {}
        for name in self.baseline:
            if name.endswith("_of"):
                continue
            base, edit = float(_mean(self.baseline, name)), _mean(self.edited, name)
            draws = _mean(self.control, name)  # (members, controls)
            control = _mean({k: _merge_draws(v) for k, v in self.control.items()}, name)
            far = np.abs(draws - base) >= np.abs(edit - base)[:, None] - 1e-12
            n_draws = draws.shape[1]
            out[name] = {"baseline": base, "edited": edit.tolist(), "edited_se": _se(self.edited, name).tolist(),
                         "control": control.tolist(), "control_draws": draws.tolist(),
                         "control_spread": (draws.std(1, ddof=1) if n_draws > 1 else np.full(len(edit), np.nan)).tolist(),
                         "p": ((1 + far.sum(1)) / (1 + n_draws) if n_draws > 1 else np.full(len(edit), np.nan)).tolist(),
                         "labels": list(self.labels)}
            if f"{name}_of" in self.baseline:
                out[name].update({f"{k}_n": np.asarray(d[f"{name}_of"]).sum(-1).astype(int).tolist()
                                  for k, d in (("baseline", self.baseline), ("edited", self.edited))})
        return {k: {f: _nulls(v) for f, v in d.items()} for k, d in out.items()}


def _merge_draws(x) -> np.ndarray:
    """(members, controls, episodes) -> (members, controls * episodes)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)


def _nulls(v):
    """NaN -> None, so a summary is valid JSON."""
    if isinstance(v, list):
        return [_nulls(x) for x in v]
    return None if isinstance(v, float) and np.isnan(v) else v


def _mean(d: dict, name: str) -> np.ndarray:
    """Mean over episodes; a rate with a denominator is pooled (sum over sum)."""
    x = np.asarray(d[name], np.float64)
    if f"{name}_of" not in d:
        return x.mean(-1)
    den = np.asarray(d[f"{name}_of"], np.float64).sum(-1)
    return np.where(den > 0, x.sum(-1) / np.maximum(den, 1), np.nan)


def _se(d: dict, name: str) -> np.ndarray:
    """Standard error over episodes; for a pooled rate the binomial one, sqrt(p (1 - p) / n)
    over its n events (it ignores that events of one episode are not independent)."""
    x = np.asarray(d[name], np.float64)
    if f"{name}_of" in d:
        n = np.asarray(d[f"{name}_of"], np.float64).sum(-1)
        p = _mean(d, name)
        return np.where(n > 0, np.sqrt(p * (1 - p) / np.maximum(n, 1)), np.nan)
    if x.shape[-1] < 2:
        return np.full(x.shape[:-1], np.nan)
    return x.std(-1, ddof=1) / np.sqrt(x.shape[-1])


def identity_like(iv: AnyIntervention) -> AnyIntervention:
    """The same intervention doing nothing, exactly (mask 0, or an empty basis)."""
    if isinstance(iv, SubspaceIntervention):
        return iv.replace(basis=jnp.zeros_like(iv.basis))
    return iv.replace(mask=jnp.zeros_like(iv.mask))


def random_like(iv: AnyIntervention, key: jax.Array) -> AnyIntervention:
    """The control of an edit: the same kind and size of edit aimed at random.

    An addition (scale 1) gets a Gaussian direction with the norm of ``mask * shift``; any
    other elementwise edit (ablation, patch, scaling) has its mask (and scale) permuted over the
    elements they are given for, each element keeping its own target value (its mean, its
    patched value), so the same number of units is edited at random places (a mask over the
    whole site has no random placement and is its own control);
    a subspace edit gets a random orthonormal basis of the same rank.
    """
    if isinstance(iv, SubspaceIntervention):
        q, _ = jnp.linalg.qr(jax.random.normal(key, iv.basis.shape, iv.basis.dtype))
        return iv.replace(basis=q)
    if np.all(np.asarray(iv.scale) == 1.0):
        vector = jnp.broadcast_to(iv.mask * iv.shift, np.broadcast_shapes(np.shape(iv.mask), np.shape(iv.shift)))
        direction = jax.random.normal(key, vector.shape)
        norm = jnp.linalg.norm(vector)
        return Intervention(iv.site, jnp.ones((), jnp.float32), jnp.ones((), jnp.float32),
                            direction * norm / jnp.maximum(jnp.linalg.norm(direction), 1e-12))
    shape = np.broadcast_shapes(np.shape(iv.mask), np.shape(iv.scale))
    perm = jax.random.permutation(key, int(np.prod(shape)))
    mask, factor = (jnp.broadcast_to(x, shape).reshape(-1)[perm].reshape(shape) for x in (iv.mask, iv.scale))
    return Intervention(iv.site, mask, factor, iv.shift)


def _stack_members(members: Sequence[list[AnyIntervention]]) -> list[AnyIntervention]:
    """Members (each a list of interventions of one structure) -> one list of batched ones."""
    structure = [[(type(iv).__name__, iv.site, getattr(iv, "axis", None)) for iv in m] for m in members]
    if any(s != structure[0] for s in structure):
        raise ValueError(f"every member needs the same interventions (kind, site, axis) in the same order; got "
                         f"{structure[0]} and {next(s for s in structure if s != structure[0])}")

    def stack(*leaves):
        shape = np.broadcast_shapes(*(np.shape(x) for x in leaves))
        return jnp.stack([jnp.broadcast_to(jnp.asarray(x), shape) for x in leaves])

    return [jax.tree.map(stack, *column) for column in zip(*members)]


def _members(interventions, key, controls: int = 1) -> tuple[list[AnyIntervention], int]:
    """Unedited, the edits, ``controls`` random controls per edit: one batched list, and the
    number of edits."""
    members = [_as_list(m) for m in interventions]
    if not members or any(not m for m in members):
        raise ValueError("interventions must be a non-empty list of members, each an intervention or a non-empty "
                         "list of interventions applied together (e.g. [add(site, c * v) for c in coefficients])")
    keys = jax.random.split(key, (len(members), controls, len(members[0])))
    drawn = [[random_like(iv, k) for iv, k in zip(m, ks)] for m, draws in zip(members, keys) for ks in draws]
    unedited = [identity_like(iv) for iv in members[0]]
    return _stack_members([unedited, *members, *drawn]), len(members)


def _act(model, params, ivs, obs, legal, key, policy):
    logits = mask_logits(run_with_interventions(model, params, obs.astype(jnp.float32), ivs).logits, legal)
    greedy = jnp.argmax(logits, -1)
    return greedy if policy == "greedy" else jax.random.categorical(key, logits)


def _single_agent(model, params, env, ivs, states, key, steps, policy):
    """Episodes run for ``steps`` with no reset (finished ones stay frozen)."""
    plain = [identity_like(iv) for iv in ivs]

    def body(carry, key):
        states, ret, agree, alive = carry
        k_act, k_env = jax.random.split(key)
        action = _act(model, params, ivs, states.observation, states.legal_action_mask, k_act, policy)
        reference = _act(model, params, plain, states.observation, states.legal_action_mask, k_act, "greedy")
        live = ~states.done
        nxt = jax.vmap(env.step)(states, action, jax.random.split(k_env, action.shape[0]))
        return (nxt, ret + nxt.rewards[:, 0], agree + (live & (action == reference)), alive + live), None

    zeros = jnp.zeros(states.done.shape, jnp.float32)
    (states, ret, agree, alive), _ = jax.lax.scan(body, (states, zeros, zeros, zeros), jax.random.split(key, steps))
    out = {"return": ret, "length": alive, "finished": states.terminated.astype(jnp.float32),
           "greedy_move_kept": agree / jnp.maximum(alive, 1)}
    if hasattr(env, "episode_metrics"):
        out.update({k: jnp.asarray(v, jnp.float32) for k, v in env.episode_metrics(states).items()})
    return out


def _game(model, params, env, ivs, states, key, steps, policy, opponent, env_name):
    """Games against ``opponent``: the agent moves first in even episodes, second in odd ones."""
    from rljaxinterp.interp import concepts

    plain = [identity_like(iv) for iv in ivs]
    n = states.done.shape[0]
    agent_id = jnp.where(jnp.arange(n) % 2 == 0, states.current_player, 1 - states.current_player)
    win_names = WIN_CONCEPTS.get(env_name)

    def opponent_move(states, key):
        if opponent == "random":
            from rljaxinterp.agents.common import uniform_legal_action

            return uniform_legal_action(key, states.legal_action_mask)
        if opponent == "self":
            return _act(model, params, plain, states.observation, states.legal_action_mask, key, "greedy")
        return opponent(states, key)

    def body(carry):
        states, stats, key, t = carry
        key, k_act, k_opp, k_env = jax.random.split(key, 4)
        mine = (states.current_player == agent_id) & ~states.done
        action = _act(model, params, ivs, states.observation, states.legal_action_mask, k_act, policy)
        reference = _act(model, params, plain, states.observation, states.legal_action_mask, k_act, "greedy")
        action = jnp.where(mine, action, opponent_move(states, k_opp))
        nxt = jax.vmap(env.step)(states, action, jax.random.split(k_env, n))
        reward = jnp.take_along_axis(nxt.rewards, agent_id[:, None], axis=1)[:, 0]
        new = {"outcome": reward, "agent_moves": mine, "greedy_move_kept": mine & (action == reference)}
        if win_names is not None:
            before = concepts.compute(env_name, states, win_names)
            after = concepts.compute(env_name, nxt, win_names[:1])  # the opponent, now to move, can win at once
            can_win, threatened = (before[c].astype(bool) & mine for c in win_names)
            new.update(took_win=can_win & (reward > 0), took_win_of=can_win,
                       blocked=threatened & (nxt.done | ~after[win_names[0]].astype(bool)), blocked_of=threatened)
        stats = {k: stats[k] + new[k].astype(jnp.float32) for k in stats}
        return nxt, stats, key, t + 1

    names = ["outcome", "agent_moves", "greedy_move_kept"]
    names += ["took_win", "took_win_of", "blocked", "blocked_of"] if win_names is not None else []
    zeros = {k: jnp.zeros(n, jnp.float32) for k in names}
    states, stats, _, _ = jax.lax.while_loop(lambda c: ~c[0].done.all() & (c[3] < steps), body,
                                             (states, zeros, key, jnp.int32(0)))
    outcome = stats.pop("outcome")
    kept = stats.pop("greedy_move_kept") / jnp.maximum(stats["agent_moves"], 1)
    return {"win": (outcome > 0).astype(jnp.float32), "draw": (outcome == 0).astype(jnp.float32),
            "loss": (outcome < 0).astype(jnp.float32), "finished": states.done.astype(jnp.float32),
            "greedy_move_kept": kept, **stats}


def rollout(
    model: nn.Module,
    params: Params,
    env: Env,
    interventions: Sequence[AnyIntervention | Sequence[AnyIntervention]],
    *,
    episodes: int,
    key: jax.Array,
    steps: int | None = None,
    policy: str = "greedy",
    opponent: Opponent = "random",
    labels: Sequence[Any] | None = None,
    controls: int = 1,
) -> Behaviour:
    """Play ``episodes`` episodes (one-player tasks) or games (two-player games, half with the
    agent moving first) with each member of ``interventions`` applied at every step.

    ``interventions`` is a list of members; a member is an intervention or a list applied
    together, every member of one structure (e.g. ``[add(site, c * v) for c in coefficients]``).
    Arrays are given for one state (site shape); they apply to every state of every episode.
    ``policy``: the edited network's ``greedy`` (legal argmax) or ``sample``d move. In games,
    ``opponent`` is ``"random"`` (uniform legal), ``"self"`` (the unedited network, greedy) or
    a player ``(states, key) -> actions``. ``steps`` defaults to the env's ``max_steps``
    (one-player) or 512 moves (games; they stop when every game is over).

    Metrics: one-player tasks give ``return``, ``length``, ``finished``, the env's
    ``episode_metrics`` (gridworlds: reached goal, reached the proxy, ...); games give
    ``win``/``draw``/``loss`` from the agent's side, ``agent_moves`` and, for tic-tac-toe and
    connect four, ``took_win`` (a win on the board taken) and ``blocked`` (a threat of an
    immediate win answered so the opponent cannot win at once). Both give
    ``greedy_move_kept``: the share of the agent's moves equal to the unedited network's greedy
    move on the same state.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not allowed; use one of {POLICIES}")
    if isinstance(opponent, str) and opponent not in OPPONENTS:
        raise ValueError(f"opponent {opponent!r} is not allowed; use one of {OPPONENTS} or a player function")
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} must be a positive integer")
    if isinstance(interventions, (Intervention, SubspaceIntervention)):
        interventions = [interventions]
    if isinstance(controls, bool) or not isinstance(controls, (int, np.integer)) or controls < 1:
        raise ValueError(f"controls={controls!r} must be a positive integer (random controls per member)")
    members, count = _members(list(interventions), jax.random.fold_in(key, 1), controls)
    labels = tuple(str(x) for x in (labels if labels is not None else range(count)))
    if len(labels) != count:
        raise ValueError(f"got {len(labels)} labels for {count} members of interventions")
    two_player = getattr(env, "num_players", 1) == 2
    if steps is None:
        steps = 512 if two_player else int(getattr(env, "max_steps", 0)) or 1000
    k_init, k_play = jax.random.split(key)
    states = jax.vmap(env.init)(jax.random.split(k_init, episodes))
    env_name = getattr(env, "name", "")
    if two_player:
        play = lambda ivs: _game(model, params, env, ivs, states, k_play, steps, policy, opponent, env_name)
    else:
        play = lambda ivs: _single_agent(model, params, env, ivs, states, k_play, steps, policy)
    results = jax.jit(jax.vmap(play))(members)
    return Behaviour(
        baseline={k: v[0] for k, v in results.items()},
        edited={k: v[1 : count + 1] for k, v in results.items()},
        control={k: v[count + 1 :].reshape(count, controls, episodes) for k, v in results.items()},
        labels=labels,
    )

