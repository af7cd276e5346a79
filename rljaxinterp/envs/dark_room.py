"""Dark Room of Laskin et al. (2022, "In-context reinforcement learning with algorithm
distillation"), jitted: a ``size`` x ``size`` room (9 x 9), five actions (up, down, left,
right, stay), ``episode_steps``-step episodes (20) from the centre, a hidden goal. The agent
observes only its position (one-hot row, one-hot column); a step that ends on the goal earns
+1 (``DarkRoom-v0``), or only the first such step of an episode (``DarkRoomHard-v0``).

Also here, because algorithm distillation needs them and nothing else does:

* :func:`source_histories`: the learning histories AD distils. The source algorithm is
  tabular Q-learning with Dyna-style planning sweeps (one Q-table per goal, vmapped over
  goals, ``lax.scan`` over steps): it learns a reward table (unvisited cells optimistically
  valued ``optimism``) and backs Q up through the room's moves, epsilon-greedy. Optimism
  makes it explore the room systematically, so it finds a goal in a few episodes and then
  walks straight to it: a whole learning history fits in a transformer's context.
* :class:`DarkRoomTrials`: several episodes in a row on one goal ("a trial"); its observation
  is the history table an AD transformer reads, so ``rljaxinterp probe`` and random play
  work on in-context states.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs.base import Env, EnvState, check_options, single_agent_state, tree_select
from rljaxinterp.envs.registry import register

ACTIONS = ("up", "down", "left", "right", "stay")
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], np.int32)


@struct.dataclass
class RoomState:
    pos: jax.Array  # cell index, row * size + col
    goal: jax.Array  # cell index (hidden from the agent)
    found: jax.Array  # the goal was reached in this episode (Hard rewards only the first time)


def next_cells(size: int) -> np.ndarray:
    """``(cells, 5)`` the cell each action leads to (walls keep the agent in place)."""
    rc = np.stack(np.divmod(np.arange(size * size), size), -1)
    moved = np.clip(rc[:, None, :] + MOVES[None], 0, size - 1)
    return (moved[..., 0] * size + moved[..., 1]).astype(np.int32)


def optimal_return(size: int, episode_steps: int, hard: bool, goal) -> np.ndarray:
    """Best return of an episode from the centre: 1 in the Hard variant (every goal is within
    reach), else one reward per step from arrival on (``episode_steps`` for the centre)."""
    goal = np.asarray(goal)
    centre = size // 2
    d = np.abs(goal // size - centre) + np.abs(goal % size - centre)
    best = np.ones_like(d, np.float32) if hard else np.minimum(episode_steps, episode_steps + 1 - d).astype(np.float32)
    return np.where(d <= episode_steps, best, 0.0)


class DarkRoom(Env):
    """One episode of Dark Room (see the module docstring); ``reset_to(goal)`` picks the goal."""

    num_players = 1

    def __init__(self, size: int = 9, episode_steps: int = 20, hard: bool = False, **options):
        self.name = "DarkRoomHard-v0" if hard else "DarkRoom-v0"
        check_options(self.name, options, ["size", "episode_steps"])
        for key, value, lo in (("size", size, 3), ("episode_steps", episode_steps, 1)):
            if not (isinstance(value, int) and value >= lo):
                raise ValueError(f"{key}={value!r} is not allowed; need an integer >= {lo}")
        self.size, self.episode_steps, self.hard = size, episode_steps, hard
        self.num_cells, self.num_actions = size * size, len(ACTIONS)
        self.centre = (size // 2) * size + size // 2
        self.next_np = next_cells(size)
        self.next = jnp.asarray(self.next_np)
        self.observation_shape = (2 * size,)

    def position_features(self, cell: jax.Array) -> jax.Array:
        """One-hot row then one-hot column: all the agent observes."""
        return jnp.concatenate([jax.nn.one_hot(cell // self.size, self.size),
                                jax.nn.one_hot(cell % self.size, self.size)], -1)

    def optimal_return(self, goal) -> np.ndarray:
        return optimal_return(self.size, self.episode_steps, self.hard, goal)

    def check_goal(self, goal: int) -> None:
        if not 0 <= int(goal) < self.num_cells:
            raise ValueError(f"goal={int(goal)} is not a cell; allowed: 0..{self.num_cells - 1}")

    def reset_to(self, goal: jax.Array) -> EnvState:
        inner = RoomState(jnp.int32(self.centre), jnp.asarray(goal, jnp.int32), jnp.bool_(False))
        return single_agent_state(self.position_features(inner.pos), inner, self.num_actions, 0.0, False, False, 0)

    def init(self, key: jax.Array) -> EnvState:
        return self.reset_to(jax.random.randint(key, (), 0, self.num_cells))

    def transition(self, inner: RoomState, action: jax.Array) -> tuple[RoomState, jax.Array]:
        """The room's dynamics without the episode clock: ``(new inner state, reward)``."""
        pos = self.next[inner.pos, jnp.asarray(action, jnp.int32)]
        at_goal = pos == inner.goal
        reward = (at_goal & ~(inner.found & self.hard)).astype(jnp.float32)
        return RoomState(pos, inner.goal, inner.found | at_goal), reward

    def step(self, state: EnvState, action: jax.Array, key: jax.Array) -> EnvState:
        inner, reward = self.transition(state.inner, action)
        t = state.step_count + 1
        new = single_agent_state(self.position_features(inner.pos), inner, self.num_actions, reward, False,
                                 t >= self.episode_steps, t)
        return tree_select(state.done, state.replace(rewards=jnp.zeros_like(state.rewards)), new)


# -- the source algorithm: Q-learning with planning sweeps, vmapped over goals ------------------
@functools.partial(jax.jit, static_argnames=("room", "episodes", "sweeps"))
def source_histories(room: DarkRoom, goals: jax.Array, key: jax.Array, episodes: int, epsilon: float = 0.1,
                     gamma: float = 0.9, optimism: float = 0.1, sweeps: int = 4) -> dict:
    """Whole learning histories of the source algorithm, one per entry of ``goals``, each a
    fresh learner trained for ``episodes`` episodes (see the module docstring).

    Every step: act epsilon-greedily on Q (ties broken at random), observe the reward of the
    cell reached, record it in the reward table the first time the cell is entered (so the
    Hard variant's later zeros do not erase a found goal), then ``sweeps`` Q-learning
    backups of every (cell, action) through the room's moves from the current Q.
    Returns ``pos``, ``action``, ``reward`` of shape ``(histories, episodes, steps)``
    (``pos`` is where the agent was when it acted) and ``goal (histories,)``.
    """
    n, steps = room.num_cells, room.episode_steps
    nxt = room.next

    def backup(q, rhat):
        return rhat[nxt] + gamma * q.max(-1)[nxt]

    def one_history(goal, key):
        def step(carry, key):
            inner, q, rhat, seen = carry
            k_eps, k_rand, k_tie = jax.random.split(key, 3)
            tie = jax.random.uniform(k_tie, (room.num_actions,), maxval=1e-6)
            greedy = jnp.argmax(q[inner.pos] + tie)
            action = jnp.where(jax.random.uniform(k_eps) < epsilon,
                               jax.random.randint(k_rand, (), 0, room.num_actions), greedy)
            new, reward = room.transition(inner, action)
            rhat = jnp.where(seen[new.pos], rhat, rhat.at[new.pos].set(reward))
            seen = seen.at[new.pos].set(True)
            q = jax.lax.fori_loop(0, sweeps, lambda _, q: backup(q, rhat), q)
            return (new, q, rhat, seen), (inner.pos, action, reward)

        def episode(carry, key):
            _, q, rhat, seen = carry
            start = room.reset_to(goal).inner
            (_, q, rhat, seen), out = jax.lax.scan(step, (start, q, rhat, seen), jax.random.split(key, steps))
            return (start, q, rhat, seen), out

        rhat0 = jnp.full(n, optimism, jnp.float32)
        q0 = jnp.full((n, room.num_actions), optimism / (1 - gamma), jnp.float32)
        carry = (room.reset_to(goal).inner, q0, rhat0, jnp.zeros(n, bool))
        _, (pos, action, reward) = jax.lax.scan(episode, carry, jax.random.split(key, episodes))
        return pos, action, reward

    goals = jnp.asarray(goals, jnp.int32)
    pos, action, reward = jax.vmap(one_history)(goals, jax.random.split(key, goals.shape[0]))
    return {"pos": pos, "action": action, "reward": reward, "goal": goals}


def expert_histories(room: DarkRoom, goals: jax.Array, key: jax.Array, episodes: int, **kwargs) -> dict:
    """Expert distillation's data: the converged source policy's episodes (still
    epsilon-greedy, as the source acts), i.e. the last ``episodes`` episodes of histories
    run ``4 * episodes`` long (same layout)."""
    data = source_histories(room, goals, key, 4 * episodes, **kwargs)
    return {k: v if k == "goal" else v[:, -episodes:] for k, v in data.items()}


# -- several episodes in a row: what an AD transformer reads -------------------------------
@struct.dataclass
class TrialState:
    room: RoomState
    episode: jax.Array  # episodes finished in this trial
    found_before: jax.Array  # the goal was reached at some earlier step of the trial
    table: jax.Array  # the observation


TRANSITION_FEATURES = ("previous action (one-hot)", "previous reward", "first step of an episode",
                       "row (one-hot)", "column (one-hot)")


def history_rows(room: DarkRoom, prev_action, prev_reward, first, pos) -> jax.Array:
    """Rows of the history table (any leading shape): ``valid``, then the step's transition
    token (a_{t-1}, r_{t-1}, o_t as in Laskin et al.; see ``TRANSITION_FEATURES``). The
    previous action is -1 (all zeros) at the first step of a trial."""
    ones = jnp.ones(jnp.shape(pos) + (1,))
    return jnp.concatenate([ones, jax.nn.one_hot(prev_action, room.num_actions),
                            jnp.asarray(prev_reward, jnp.float32)[..., None],
                            jnp.asarray(first, jnp.float32)[..., None], room.position_features(pos)], -1)


class DarkRoomTrials(Env):
    """``episodes`` episodes of ``room`` on one hidden goal, back to back; the observation is
    the table of every step so far (``(episodes * episode_steps, 1 + 25)``, see
    :func:`history_rows`), so a sequence model's context accumulates its own episodes.
    Rewards are the room's; the trial ends after the last episode."""

    num_players = 1

    def __init__(self, room: DarkRoom, episodes: int):
        if not (isinstance(episodes, int) and episodes >= 1):
            raise ValueError(f"episodes={episodes!r} is not allowed; need an integer >= 1")
        self.room, self.episodes = room, episodes
        self.name, self.num_actions = room.name, room.num_actions
        self.max_steps = episodes * room.episode_steps
        self.token_widths = (room.num_actions + 2 + 2 * room.size,)
        self.observation_shape = (self.max_steps, 1 + sum(self.token_widths))

    def reset_to(self, goal: jax.Array) -> EnvState:
        room = self.room.reset_to(goal).inner
        row = history_rows(self.room, -1, 0.0, 1.0, room.pos)
        table = jnp.zeros(self.observation_shape).at[0].set(row)
        inner = TrialState(room, jnp.int32(0), jnp.bool_(False), table)
        return single_agent_state(table, inner, self.num_actions, 0.0, False, False, 0)

    def init(self, key: jax.Array) -> EnvState:
        return self.reset_to(jax.random.randint(key, (), 0, self.room.num_cells))

    def step(self, state: EnvState, action: jax.Array, key: jax.Array) -> EnvState:
        inner = state.inner
        action = jnp.asarray(action, jnp.int32)
        room, reward = self.room.transition(inner.room, action)
        t = state.step_count + 1
        ends = t % self.room.episode_steps == 0
        episode = inner.episode + ends
        fresh = self.room.reset_to(room.goal).inner
        room = tree_select(ends, fresh, room)
        row = history_rows(self.room, action, reward, ends, room.pos)
        table = jnp.where(t < self.max_steps, inner.table.at[jnp.minimum(t, self.max_steps - 1)].set(row), inner.table)
        found = inner.found_before | (reward > 0)
        new_inner = TrialState(room, episode, found, table)
        new = single_agent_state(table, new_inner, self.num_actions, reward, False, episode >= self.episodes, t)
        return tree_select(state.done, state.replace(rewards=jnp.zeros_like(state.rewards)), new)


register("DarkRoom-v0", DarkRoom)
register("DarkRoomHard-v0", functools.partial(DarkRoom, hard=True))
