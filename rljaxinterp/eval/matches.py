"""How strong is an agent: matches against reference players, and for tic-tac-toe an
exhaustive check against every opponent line and the exact solver.

A *player* is ``act(states, key) -> actions`` on a batch of states; seats are the order
of play (``first`` moves first), never pgx player ids, which pgx assigns at random.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import mctx
import numpy as np

from rljaxinterp.agents.alphazero import Agent, Params
from rljaxinterp.agents.common import uniform_legal_action
from rljaxinterp.envs import Env, EnvState
from rljaxinterp.eval import minimax
from rljaxinterp.models.base import mask_logits

Player = Callable[[EnvState, jax.Array], jax.Array]


# -- players ---------------------------------------------------------------------------------
def random_player() -> Player:
    def act(states: EnvState, key: jax.Array) -> jax.Array:
        return uniform_legal_action(key, states.legal_action_mask)
    return act


def greedy_player(agent: Agent, params: Params) -> Player:
    """The raw network: argmax over legal logits, no search."""
    return lambda states, key: agent.greedy_action(params, states)


def search_player(agent: Agent, params: Params, num_simulations: int | None = None) -> Player:
    """The network with noise-free search (Gumbel scale 0 / no Dirichlet, greedy)."""
    def act(states: EnvState, key: jax.Array) -> jax.Array:
        return agent.search(params, states, key, num_simulations=num_simulations, deterministic=True).action
    return act


def pure_mcts_player(env: Env, num_simulations: int = 64) -> Player:
    """Plain MCTS: uniform prior, zero leaf value, true rewards from the env."""
    def recurrent_fn(params, key, action, states):
        mover = states.current_player
        nxt = jax.vmap(env.step)(states, action, jax.random.split(key, action.shape[0]))
        reward = jnp.take_along_axis(nxt.rewards, mover[:, None], axis=1)[:, 0]
        discount = jnp.where(nxt.done, 0.0, jnp.where(nxt.current_player == mover, 1.0, -1.0))
        logits = mask_logits(jnp.zeros(nxt.legal_action_mask.shape), nxt.legal_action_mask)
        return mctx.RecurrentFnOutput(reward=reward, discount=discount, prior_logits=logits,
                                      value=jnp.zeros_like(reward)), nxt

    def act(states: EnvState, key: jax.Array) -> jax.Array:
        logits = mask_logits(jnp.zeros(states.legal_action_mask.shape), states.legal_action_mask)
        root = mctx.RootFnOutput(prior_logits=logits, value=jnp.zeros(logits.shape[0]), embedding=states)
        out = mctx.muzero_policy(None, key, root, recurrent_fn, num_simulations,
                                 invalid_actions=~states.legal_action_mask, dirichlet_fraction=0.0)
        return out.action
    return act


# -- generic matches ---------------------------------------------------------------------------
def play_match(env: Env, agent_player: Player, opponent: Player, games: int, key: jax.Array,
               max_steps: int = 1000) -> dict[str, dict[str, int]]:
    """``games`` games per seat; returns wins/draws/losses of the agent for each seat."""
    return match_runner(env, lambda _: agent_player, opponent, games, max_steps)(None, key)


def match_runner(env: Env, make_player: Callable[[Params], Player], opponent: Player, games: int,
                 max_steps: int = 1000) -> Callable[[Params, jax.Array], dict[str, dict[str, int]]]:
    """``play_match`` as ``run(params, key)``, compiled once for every parameter set of one
    network (a training curve): the player is built from ``params`` inside the program, so
    new weights are an argument, not constants that force a recompile."""
    run = _match_fn(env, make_player, opponent, games, max_steps)

    def play(params: Params, key: jax.Array) -> dict[str, dict[str, int]]:
        results = {}
        for seat, agent_first in (("first", True), ("second", False)):
            key, k_init, k_play = jax.random.split(key, 3)
            outcome = np.asarray(run(params, jnp.bool_(agent_first), k_init, k_play))
            results[seat] = {"win": int((outcome > 0).sum()), "draw": int((outcome == 0).sum()),
                             "loss": int((outcome < 0).sum())}
        return results
    return play


def _match_fn(env, make_player, opponent, games, max_steps):
    @jax.jit
    def run(params, agent_first, k_init, k_play):
        agent_player = make_player(params)
        states = jax.vmap(env.init)(jax.random.split(k_init, games))
        agent_id = jnp.where(agent_first, states.current_player, 1 - states.current_player)

        def cond(carry):
            states, _, _, t = carry
            return (~states.done.all()) & (t < max_steps)

        def body(carry):
            states, total, key, t = carry
            key, ka, ko, ke = jax.random.split(key, 4)
            mine = states.current_player == agent_id
            action = jnp.where(mine, agent_player(states, ka), opponent(states, ko))
            states = jax.vmap(env.step)(states, action, jax.random.split(ke, games))
            total = total + jnp.take_along_axis(states.rewards, agent_id[:, None], axis=1)[:, 0]
            return states, total, key, t + 1

        _, total, _, _ = jax.lax.while_loop(cond, body, (states, jnp.zeros(games), k_play, 0))
        return total

    return run


# -- tic-tac-toe, exhaustively --------------------------------------------------------------------
def tic_tac_toe_states() -> EnvState:
    """All 5,478 positions as one batched state, rows in :func:`minimax.solve` order."""
    from rljaxinterp.envs import from_boards
    return from_boards("tic_tac_toe", minimax.solve().boards)


def moves_table(actions: Any) -> np.ndarray:
    """Actions for all positions (any array-like) as a numpy table indexed like ``solve()``."""
    return np.asarray(actions).astype(np.int64)


def raw_moves(agent: Agent, params: Params) -> np.ndarray:
    states = tic_tac_toe_states()
    return moves_table(jax.jit(agent.greedy_action)(params, states))


def search_moves(agent: Agent, params: Params, num_simulations: int | None = None) -> np.ndarray:
    states = tic_tac_toe_states()
    fn = jax.jit(lambda p, s, k: agent.search(p, s, k, num_simulations=num_simulations,
                                              deterministic=True).action)
    return moves_table(fn(params, states, jax.random.PRNGKey(0)))


def exhaustive(moves: np.ndarray, seat: int, opponent: str = "any") -> dict[str, int]:
    """Count the agent's results over every opponent line, the agent playing ``moves``
    (indexed like ``solve()``) as X (``seat=0``) or O (``seat=1``).

    ``opponent="any"`` branches on every legal opponent move; ``"minimax"`` only on the
    opponent's optimal moves (all of a perfect player's choices).
    """
    sol = minimax.solve()
    counts = {"win": 0, "draw": 0, "loss": 0}

    def walk(board):
        w = minimax.winner(board)
        if w >= 0 or all(s >= 0 for s in board):
            counts["draw" if w < 0 else ("win" if w == seat else "loss")] += 1
            return
        row = sol.index[board]
        if minimax.mover(board) == seat:
            walk(minimax.play(board, int(moves[row])))
        else:
            options = minimax.legal_moves(board) if opponent == "any" else np.flatnonzero(sol.optimal[row])
            for a in options:
                walk(minimax.play(board, int(a)))

    walk(minimax.EMPTY)
    return counts


def optimal_move_share(moves: np.ndarray) -> float:
    """Share of the 4,520 non-terminal positions where the move is game-theoretically optimal."""
    sol = minimax.solve()
    live = ~sol.terminal
    return float(sol.optimal[np.flatnonzero(live), moves[live]].mean())


def value_sign_agreement(values: np.ndarray) -> float:
    """Share of non-terminal positions whose value, rounded to the nearest of -1/0/+1,
    equals the minimax value (mover's view)."""
    sol = minimax.solve()
    live = ~sol.terminal
    predicted = np.clip(np.round(np.asarray(values)), -1, 1)
    return float((predicted[live] == sol.value[live]).mean())


def decisive_sign_agreement(values: np.ndarray) -> float:
    """Share of non-terminal won/lost positions (minimax value +-1) whose value has the right sign."""
    sol = minimax.solve()
    decisive = (~sol.terminal) & (sol.value != 0)
    return float((np.sign(np.asarray(values))[decisive] == sol.value[decisive]).mean())


def tic_tac_toe_report(agent: Agent, params: Params, with_search: bool = True) -> dict[str, Any]:
    """Exhaustive strength of the raw network (and with search) in both seats."""
    states = tic_tac_toe_states()
    values = np.asarray(jax.jit(agent.masked_policy_value)(params, states)[1])
    raw = raw_moves(agent, params)
    report = {
        "raw": {seat: exhaustive(raw, i) for i, seat in enumerate(("first", "second"))},
        "raw_vs_minimax": {seat: exhaustive(raw, i, "minimax") for i, seat in enumerate(("first", "second"))},
        "optimal_move_share": optimal_move_share(raw),
        "value_sign_agreement": value_sign_agreement(values),
        "decisive_sign_agreement": decisive_sign_agreement(values),
    }
    report["unbeatable"] = all(r["loss"] == 0 for r in report["raw"].values())
    if with_search:
        s = search_moves(agent, params)
        report["search"] = {seat: exhaustive(s, i) for i, seat in enumerate(("first", "second"))}
        report["search_optimal_move_share"] = optimal_move_share(s)
        report["search_unbeatable"] = all(r["loss"] == 0 for r in report["search"].values())
    return report


# -- a whole run ----------------------------------------------------------------------------------
def evaluate_run(run: Any, step: int | None = None, games: int = 64, num_simulations: int | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """Raw network and search of an AlphaZero run (``rljaxinterp.runs.load_run(folder)``)
    against random, pure MCTS and the first checkpoint, both seats; for tic-tac-toe also the
    exhaustive report."""
    agent, env = run.agent, run.env
    step = run.steps[-1] if step is None else step
    params = run.params(step)
    earliest = run.steps[0]
    raw, search = greedy_player(agent, params), search_player(agent, params, num_simulations)
    opponents = {
        "random": random_player(),
        "pure_mcts": pure_mcts_player(env, num_simulations or agent.config.num_simulations),
        f"checkpoint_{earliest}": greedy_player(agent, run.params(earliest)),
    }
    key = jax.random.PRNGKey(seed)
    report: dict[str, Any] = {"run": str(run.folder), "step": step, "games_per_seat": games}
    for pname, player in (("raw", raw), ("search", search)):
        for oname, opp in opponents.items():
            key, k = jax.random.split(key)
            report[f"{pname}_vs_{oname}"] = play_match(env, player, opp, games, k)
    if agent.config.env == "tic_tac_toe":
        report["tic_tac_toe"] = tic_tac_toe_report(agent, params)
    return report
