"""Search trees as data: the AlphaZero agent's mctx tree for a batch of positions, and what
search adds on top of the raw network.

An AlphaZero agent is a network and a search; interpreting only the network misses where
the two disagree. ``search_trees`` returns mctx's whole tree for every position (one
compiled call, vmapped over positions by mctx itself) as a ``SearchTree`` pytree with the
principal variation and node depths worked out, so every question about search is array
indexing. ``network_vs_search``, ``search_moves_by_budget`` and ``simulations_to_fix`` compare raw network, search and a
solver's truth position by position.

Values are from the view of the player to move at the node (mctx's convention here, since
the agent's discount is -1 when the mover changes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mctx
import numpy as np
from flax import struct

from rljaxinterp.agents.common import compiled
from rljaxinterp.envs import EnvState

Params = Any
UNVISITED = mctx.Tree.UNVISITED


@struct.dataclass
class SearchTree:
    """One search per position; node 0 is the root, nodes are numbered in creation order.

    Shapes: ``P`` positions, ``N = simulations + 1`` nodes, ``A`` actions, ``D`` PV length.
    """

    visits: jax.Array  # (P, N) node visit counts (the root's is simulations + 1)
    value: jax.Array  # (P, N) searched value of the node, its mover's view
    raw_value: jax.Array  # (P, N) the network's value when the node was expanded
    parent: jax.Array  # (P, N) parent node, -1 for the root and unused nodes
    action: jax.Array  # (P, N) move from the parent into the node, -1 for the root
    depth: jax.Array  # (P, N) plies below the root; -1 for nodes the search never created
    children: jax.Array  # (P, N, A) child node index, -1 where unexpanded
    prior: jax.Array  # (P, N, A) the network's move probabilities at the node (legal moves only)
    child_visits: jax.Array  # (P, N, A)
    child_q: jax.Array  # (P, N, A) reward + discount * child value: the node mover's view of each move
    legal: jax.Array  # (P, A) the moves the search chose among at the root
    policy: jax.Array  # (P, A) the search's improved policy at the root (its training target)
    search_move: jax.Array  # (P,) the move the search plays
    pv: jax.Array  # (P, D) principal variation: the search move, then the most visited child; -1 pads
    pv_length: jax.Array  # (P,)
    states: EnvState | None = None  # (P, N, ...) env state of every node, with keep_states=True

    @property
    def num_simulations(self) -> int:
        return self.visits.shape[1] - 1

    @property
    def raw_move(self) -> jax.Array:
        """The raw network's greedy move (the highest prior among the legal moves)."""
        return jnp.argmax(jnp.where(self.legal, self.prior[:, 0], -1.0), axis=-1)

    @property
    def search_value(self) -> jax.Array:
        return self.value[:, 0]

    @property
    def raw_root_value(self) -> jax.Array:
        return self.raw_value[:, 0]

    @property
    def root_visits(self) -> jax.Array:
        return self.child_visits[:, 0]

    def position(self, i: int) -> SearchTree:
        """The tree of position ``i`` alone, with a batch axis of one (for rendering)."""
        return jax.tree.map(lambda x: x[i:i + 1], self)


def has_search(agent: Any) -> bool:
    return callable(getattr(agent, "search", None)) and callable(getattr(agent, "recurrent_fn", None))


def searching_agent(run_or_agent: Any) -> Any:
    """The AlphaZero agent of a run (or the agent itself); a clear error for agents that do
    not search (PPO, DQN, distilled students, sequence models)."""
    agent = getattr(run_or_agent, "agent", run_or_agent)
    if not has_search(agent):
        where = getattr(run_or_agent, "folder", None)
        kind = getattr(getattr(run_or_agent, "kind", None), "name", type(agent).__name__)
        raise ValueError(f"{'the run in ' + str(where) if where else 'this agent'} is of kind {kind!r}, which has "
                         "no search; search trees need an AlphaZero run (kind 'alphazero')")
    return agent


def check_positions(states: EnvState) -> None:
    """Search needs at least one position, none of them finished."""
    terminal = np.asarray(states.terminated) | np.asarray(states.truncated)
    if terminal.ndim != 1 or terminal.size == 0:
        raise ValueError(f"states must be a non-empty batch (positions,); got terminated of shape {terminal.shape}")
    if terminal.any():
        bad = np.flatnonzero(terminal)
        raise ValueError(f"{len(bad)} of {terminal.size} positions are terminal (first: index {bad[0]}); "
                         "search needs positions where a move remains to be played")


def _check_simulations(num_simulations: Any) -> int:
    if isinstance(num_simulations, bool) or not isinstance(num_simulations, (int, np.integer)) or num_simulations < 1:
        raise ValueError(f"num_simulations={num_simulations!r} is not allowed; use a positive integer")
    return int(num_simulations)


def node_depths(parent: jax.Array) -> jax.Array:
    """Depth of every node from its parent pointers (parents are created before children)."""
    def one(parents):
        def body(n, depth):
            p = parents[n]
            return depth.at[n].set(jnp.where(p >= 0, depth[jnp.maximum(p, 0)] + 1, -1))
        return jax.lax.fori_loop(1, parents.shape[0], body, jnp.zeros_like(parents).at[1:].set(-1))
    return jax.vmap(one)(parent)


def principal_variation(tree: mctx.Tree, first_move: jax.Array, max_depth: int) -> tuple[jax.Array, jax.Array]:
    """The search's move, then at each node below its most visited child, while that child
    exists; ``(P, max_depth)`` moves padded with -1, and lengths. Deep nodes often have several
    children with one visit each: ties go to the network's prior there, not to the lowest
    move index (which would bias look-ahead labels towards low squares)."""
    prior = jax.nn.softmax(tree.children_prior_logits, axis=-1)

    def one(children, child_visits, child_prior, first):
        def step(carry, d):
            node, alive = carry
            visits = child_visits[node]
            move = jnp.where(d == 0, first, jnp.argmax(visits + 0.5 * child_prior[node]))
            child = children[node, move]
            alive = alive & (child != UNVISITED) & (visits[move] > 0)
            return (jnp.where(alive, child, node), alive), jnp.where(alive, move, -1)
        _, moves = jax.lax.scan(step, (jnp.int32(0), jnp.bool_(True)), jnp.arange(max_depth))
        return moves, (moves >= 0).sum()
    return jax.vmap(one)(tree.children_index, tree.children_visits, prior, first_move)


def _build(agent, num_simulations: int, deterministic: bool, keep_states: bool, max_depth: int):
    def run(params, states, key):
        out = agent.search(params, states, key, num_simulations=num_simulations, deterministic=deterministic)
        t = out.search_tree
        qvalues = t.children_rewards + t.children_discounts * t.children_values  # mctx's Tree.qvalues, every node
        pv, length = principal_variation(t, out.action, max_depth)
        legal = agent.legal_actions(states)
        prior = jax.nn.softmax(t.children_prior_logits, axis=-1)
        return SearchTree(
            visits=t.node_visits, value=t.node_values, raw_value=t.raw_values, parent=t.parents,
            action=t.action_from_parent, depth=node_depths(t.parents), children=t.children_index,
            prior=prior, child_visits=t.children_visits, child_q=qvalues, legal=legal,
            policy=out.action_weights, search_move=out.action, pv=pv, pv_length=length,
            states=t.embeddings if keep_states else None)
    return jax.jit(run)


def search_trees(run_or_agent: Any, params: Params, states: EnvState, *, num_simulations: int,
                 key: jax.Array | None = None, deterministic: bool = True, keep_states: bool = False,
                 max_depth: int | None = None) -> SearchTree:
    """The agent's search from every position in one compiled call.

    ``deterministic`` (default) searches as in evaluation (no Gumbel or Dirichlet noise), so
    a tree is a function of the position and the parameters. ``keep_states`` also returns
    every node's env state (memory: positions x nodes states). ``max_depth`` bounds the
    stored principal variation (default: the simulation count, which no line can exceed).
    Compiled once per (config, simulations, options) and reused for every batch of that size.
    """
    agent = searching_agent(run_or_agent)
    num_simulations = _check_simulations(num_simulations)
    check_positions(states)
    max_depth = num_simulations if max_depth is None else _check_simulations(max_depth)
    fn = compiled("search_trees", agent.config, lambda: _build(agent, num_simulations, bool(deterministic),
                                                                bool(keep_states), max_depth),
                  num_simulations, bool(deterministic), bool(keep_states), max_depth)
    return fn(params, states, jax.random.PRNGKey(0) if key is None else key)


# -- summaries ---------------------------------------------------------------------------------
def tree_statistics(tree: SearchTree) -> dict[str, jax.Array]:
    """Per-position numbers that describe a search: how deep, how focused, how much it moved
    off the network's prior."""
    root = tree.root_visits.astype(jnp.float32)
    share = root / jnp.maximum(root.sum(-1, keepdims=True), 1.0)
    entropy = -jnp.sum(jnp.where(share > 0, share * jnp.log(share), 0.0), axis=-1)
    prior = tree.prior[:, 0]
    kl = jnp.sum(jnp.where(tree.policy > 0, tree.policy * (jnp.log(tree.policy) - jnp.log(prior + 1e-12)), 0.0), -1)
    return {
        "max_depth": tree.depth.max(-1),
        "pv_length": tree.pv_length,
        "root_children_visited": (root > 0).sum(-1),
        "top_move_share": share.max(-1),
        "visit_entropy": entropy,
        "policy_kl_from_prior": kl,
        "raw_value": tree.raw_root_value,
        "search_value": tree.search_value,
        "search_changes_move": tree.raw_move != tree.search_move,
    }


def summarise(stats: dict[str, jax.Array]) -> dict[str, float]:
    """Means over positions (rates for boolean entries)."""
    return {k: float(np.mean(np.asarray(v, np.float64))) for k, v in stats.items()}


# -- network versus search versus truth -------------------------------------------------------
@struct.dataclass
class Gap:
    """Raw network, search and truth per position; truth entries are NaN/False where unsolved."""

    raw_move: np.ndarray  # (P,)
    search_move: np.ndarray  # (P,)
    raw_value: np.ndarray  # (P,) mover's view
    search_value: np.ndarray  # (P,)
    true_value: np.ndarray  # (P,) float, NaN where unsolved
    raw_optimal: np.ndarray  # (P,) bool: the raw move achieves the true value
    search_optimal: np.ndarray  # (P,) bool
    solved: np.ndarray  # (P,) bool
    decisive: np.ndarray  # (P,) bool: solved, and some legal move is not optimal (a move choice matters)

    @property
    def disagree(self) -> np.ndarray:
        return self.raw_move != self.search_move

    def summary(self) -> dict[str, float]:
        """Rates over the solved positions, except ``disagree_rate`` (all positions: it needs no
        truth); ``*_decisive`` only over positions where some legal move is not optimal (in a lost
        position every move is optimal, which flatters both raw network and search)."""
        s, dec = self.solved, self.decisive
        n, nd = max(int(s.sum()), 1), max(int(dec.sum()), 1)
        raw_err = np.abs(self.raw_value - self.true_value)[s]
        search_err = np.abs(self.search_value - self.true_value)[s]
        return {
            "positions": float(len(self.solved)),
            "solved": float(s.sum()),
            "disagree_rate": float(self.disagree.mean()),
            "raw_optimal_rate": float(self.raw_optimal[s].sum() / n),
            "search_optimal_rate": float(self.search_optimal[s].sum() / n),
            "decisive": float(dec.sum()),
            "raw_optimal_rate_decisive": float(self.raw_optimal[dec].sum() / nd),
            "search_optimal_rate_decisive": float(self.search_optimal[dec].sum() / nd),
            "search_fixes": float((~self.raw_optimal & self.search_optimal)[s].sum()),
            "search_breaks": float((self.raw_optimal & ~self.search_optimal)[s].sum()),
            "raw_value_mae": float(raw_err.mean()) if raw_err.size else float("nan"),
            "search_value_mae": float(search_err.mean()) if search_err.size else float("nan"),
        }


def network_vs_search(tree: SearchTree, true_value: Any, optimal: Any, solved: Any | None = None) -> Gap:
    """Compare each position's raw and searched move and value with the truth (a solver's
    value for the mover and its set of optimal moves, ``(P,)`` and ``(P, A)``)."""
    raw, move = np.asarray(tree.raw_move), np.asarray(tree.search_move)
    optimal = np.asarray(optimal, bool)
    p = len(raw)
    if optimal.shape != (p, tree.legal.shape[-1]):
        raise ValueError(f"optimal must have shape {(p, tree.legal.shape[-1])} (positions, actions); got {optimal.shape}")
    solved = np.ones(p, bool) if solved is None else np.asarray(solved, bool)
    rows = np.arange(p)
    return Gap(raw_move=raw, search_move=move, raw_value=np.asarray(tree.raw_root_value, np.float64),
               search_value=np.asarray(tree.search_value, np.float64),
               true_value=np.where(solved, np.asarray(true_value, np.float64), np.nan),
               raw_optimal=optimal[rows, raw] & solved, search_optimal=optimal[rows, move] & solved, solved=solved,
               decisive=solved & (np.asarray(tree.legal) & ~optimal).any(1))


def search_moves_by_budget(run_or_agent: Any, params: Params, states: EnvState, budgets: Sequence[int],
                 key: jax.Array | None = None, positions_per_call: int = 4096) -> np.ndarray:
    """The searched move of every position at every simulation budget, ``(P, budgets)``."""
    out = []
    n = len(np.asarray(states.terminated))
    for b in budgets:
        parts = []
        for start in range(0, n, positions_per_call):
            chunk = jax.tree.map(lambda x, s=slice(start, start + positions_per_call): x[s], states)
            parts.append(np.asarray(search_trees(run_or_agent, params, chunk, num_simulations=b, key=key,
                                                 max_depth=1).search_move))
        out.append(np.concatenate(parts))
    return np.stack(out, 1)


def simulations_to_fix(moves: np.ndarray, optimal: Any, budgets: Sequence[int]) -> np.ndarray:
    """The smallest budget from which the searched move is optimal at that budget and every
    larger one in ``budgets``, per position; ``-1`` where even the largest budget errs.

    ``moves`` is ``search_moves_by_budget``'s ``(P, budgets)`` output; ``optimal`` is ``(P, A)``.
    """
    budgets = np.asarray(budgets)
    if np.any(np.diff(budgets) <= 0):
        raise ValueError(f"budgets must increase; got {budgets.tolist()}")
    ok = np.take_along_axis(np.asarray(optimal, bool), np.asarray(moves), axis=1)  # (P, budgets)
    stays = np.flip(np.logical_and.accumulate(np.flip(ok, 1), axis=1), 1)  # ok from here on
    first = np.argmax(stays, axis=1)
    return np.where(stays.any(1), budgets[first], -1)
