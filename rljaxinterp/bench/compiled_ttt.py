"""Tier 1 of the benchmark zoo: tic-tac-toe strategy compiled by hand into an MLP.

The classic rule list (Newell & Simon; Wikipedia, "Tic-tac-toe", Strategy) is written as a
causal graph and compiled into ReLU layers with hand-set integer weights, so what every
unit computes, which units decide the move and which squares a decision reads are known
exactly. Interpretability methods are scored against that truth.

The rules, highest priority first (``RULES``), from the mover's view, at an empty square s:

1. ``win``             some line through s holds two of the mover's stones;
2. ``block``           some line through s holds two of the opponent's stones;
3. ``fork``            at least two lines through s each hold exactly one mover stone and
                       are otherwise empty (playing s makes two threats at once);
4. ``block_fork``      the same with the opponent's stones: the opponent has a fork square
                       and we take it. This is the simple version of the rule ("if the
                       opponent could fork at s, play s"), not Wikipedia's refinement (force
                       with a two-in-a-row when the opponent has two fork squares), so it is
                       not always optimal; ``verify`` reports how often it is;
5. ``centre``          s is the centre;
6. ``opposite_corner`` s is a corner whose opposite corner holds an opponent stone;
7. ``empty_corner``    s is a corner;
8. ``empty_side``      s is a side square.

The move is the lowest-index square of the highest-priority rule that applies anywhere
(``rule_move``); terminal boards (a line is complete or the board is full) have none.

High-level causal graph, one site per layer; ``x`` is the flattened observation, 18 values
``own[s], opp[s]`` square by square (plane 0 = the mover's stones, plane 1 = the
opponent's), and ``o`` ranges over the owners ("own", "opp")::

    input (row, col, channel)
      └─ lines    two[o,l,s]    the line's other two squares are o's, s empty         {0,1}
                  open[o,l,s]   #o-stones on the other two, if no other-side stone
                                on them and s empty, else 0                            {0,1,2}
                  three[o,l]    o owns the whole line (feeds only the value)           {0,1}
          └─ singles  single[o,l,s] = relu(open - 2 two): exactly one o stone,
                                    rest of the line empty, s empty                  {0,1}
                      nothreat[o,s] = relu(1 - sum_l two): no line completed at s      {0,1}
              └─ forks  over1[o,s] = relu(c - 1), over2[o,s] = relu(c - 2),
                        c = sum_l single[o,l,s] (lines through s that o would make
                        a threat on)                                                   {0..3}
                  └─ rules  (reads singles, forks and input)  rule k applies at s      {0,1}
                            win = relu(1 - nothreat[own]), block likewise for opp,
                            fork = relu(over1 - over2) = [c >= 2], block_fork for opp,
                            centre/corner/side = relu(1 - own[s] - opp[s]),
                            opposite_corner = relu(opp[8-s] - own[s] - opp[s])
                      └─ choice  rule k is the best rule at s:
                                 relu(rule[k,s] - sum_{j higher} rule[j,s])            {0,1}
                          └─ logits (reads choice and input)
                                 sum_k (8 - k) choice[k,s] - 16 (own[s] + opp[s]) - s/16
    value = sum_l three[own,l] - sum_l three[opp,l] (from lines; on reachable boards only
            the opponent can own a line, so it is minus the number of lines that lost the game)

Every empty square has exactly one choice unit on, worth 1..8 by priority; the s/16 term
breaks ties towards the lowest index and is too small to cross a priority step, and the
legality term puts occupied squares far below. All weights are small integers or
multiples of 1/16, so the float32 forward pass is exact. Rule units exist only for the
squares where the rule can apply (``RULE_SQUARES``), so no unit is dead.

Units are exact on boards, not under every edit: zero-ablating ``two[o,l,s]`` where the line
holds two o stones leaves ``open = 2``, so ``single = relu(open - 2 two)`` reads 2 and the
fork rule fires at s. Methods that ablate see that off-distribution path too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.eval import minimax
from rljaxinterp.eval.minimax import LINES
from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.sites import site

RULES: tuple[str, ...] = (
    "win", "block", "fork", "block_fork", "centre", "opposite_corner", "empty_corner", "empty_side",
)
CORNERS: tuple[int, ...] = (0, 2, 6, 8)
SIDES: tuple[int, ...] = (1, 3, 5, 7)
ALL_SQUARES: tuple[int, ...] = tuple(range(9))
RULE_SQUARES: dict[str, tuple[int, ...]] = {
    "win": ALL_SQUARES, "block": ALL_SQUARES, "fork": ALL_SQUARES, "block_fork": ALL_SQUARES,
    "centre": (4,), "opposite_corner": CORNERS, "empty_corner": CORNERS, "empty_side": SIDES,
}
OWNERS: tuple[str, ...] = ("own", "opp")
NONE = "none"  # the rule of a terminal board

# Read-out constants: a priority step is 1, the tie-break at most 8/16 < 1.
LEGAL_PENALTY = 16.0
TIE_BREAK = 1.0 / 16.0

HIDDEN_SITES: tuple[str, ...] = ("lines", "singles", "forks", "rules", "choice")

Params = dict


# --- unit layout ----------------------------------------------------------------------


def _line_slots() -> list[tuple[int, int, int]]:
    """(line, position in line, square) for the 24 (line, square) pairs, line-major."""
    return [(line, pos, sq) for line, squares in enumerate(LINES) for pos, sq in enumerate(squares)]


def _rule_slots() -> list[tuple[str, int]]:
    """(rule, square) of every rule and choice unit, in unit order."""
    return [(rule, sq) for rule in RULES for sq in RULE_SQUARES[rule]]


def _lines_names() -> list[str]:
    slots = [f"line{line}_sq{sq}" for line, _, sq in _line_slots()]
    two = [f"two_{o}_{s}" for o in OWNERS for s in slots]
    open_ = [f"open_{o}_{s}" for o in OWNERS for s in slots]
    three = [f"three_{o}_line{line}" for o in OWNERS for line in range(len(LINES))]
    return two + open_ + three


def _singles_names() -> list[str]:
    single = [f"single_{o}_line{line}_sq{sq}" for o in OWNERS for line, _, sq in _line_slots()]
    return single + [f"nothreat_{o}_sq{sq}" for o in OWNERS for sq in ALL_SQUARES]


def _forks_names() -> list[str]:
    return [f"forkcount_over{m}_{o}_sq{sq}" for o in OWNERS for sq in ALL_SQUARES for m in (1, 2)]


def _rules_names(prefix: str) -> list[str]:
    return [f"{prefix}{rule}_sq{sq}" for rule, sq in _rule_slots()]


@functools.cache
def unit_names() -> dict[str, tuple[str, ...]]:
    """Concept name of every unit of each hidden layer (the ``.post`` site's last axis)."""
    return {
        "lines": tuple(_lines_names()),
        "singles": tuple(_singles_names()),
        "forks": tuple(_forks_names()),
        "rules": tuple(_rules_names("")),
        "choice": tuple(_rules_names("choice_")),
    }


N_SLOTS = 24  # (line, square) pairs
N_LINES_UNITS = 2 * N_SLOTS * 2 + 2 * len(LINES)  # two, open, three
N_SINGLES_UNITS = 2 * N_SLOTS + 2 * 9
N_FORKS_UNITS = 2 * 9 * 2
N_RULE_UNITS = sum(len(v) for v in RULE_SQUARES.values())


def _two(o: int, slot: int) -> int:
    return o * N_SLOTS + slot


def _open(o: int, slot: int) -> int:
    return 2 * N_SLOTS + o * N_SLOTS + slot


def _three(o: int, line: int) -> int:
    return 4 * N_SLOTS + o * len(LINES) + line


def _single(o: int, slot: int) -> int:
    return o * N_SLOTS + slot


def _nothreat(o: int, sq: int) -> int:
    return 2 * N_SLOTS + o * 9 + sq


def _over(o: int, sq: int, m: int) -> int:
    """Unit of relu(c - m), m in (1, 2)."""
    return (o * 9 + sq) * 2 + (m - 1)


def _plane(sq: int, o: int) -> int:
    """Index of square ``sq``'s owner-``o`` plane in the flattened (3, 3, 2) observation."""
    return sq * 2 + o


# --- the network ------------------------------------------------------------------------


def _dense(module: nn.Module, name: str, x: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    """A hand-set Dense layer marked as ``name.pre`` / ``name.post``."""
    pre = site(module, f"{name}.pre", nn.Dense(width, name=name)(x), axes=("unit",), produced_by=name)
    post = site(module, f"{name}.post", nn.relu(pre), axes=("unit",), produced_by=name)
    return pre, post


class CompiledRules(nn.Module):
    """The compiled rule network; its weights come from ``compiled_params()``, never training.

    Sites: ``input`` (row, col, channel), ``{lines,singles,forks,rules,choice}.{pre,post}``
    (unit), ``logits`` (action), ``value``. ``rules`` and ``logits`` also read earlier
    layers (see the module docstring); each Dense still produces exactly its site's units.
    """

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        batch_shape = obs.shape[: obs.ndim - 3]
        board = site(self, "input", floating(obs), axes=("row", "col", "channel"))
        x = board.reshape(*batch_shape, 18)
        _, lines = _dense(self, "lines", x, N_LINES_UNITS)
        _, singles = _dense(self, "singles", lines, N_SINGLES_UNITS)
        _, forks = _dense(self, "forks", singles, N_FORKS_UNITS)
        _, rules = _dense(self, "rules", jnp.concatenate([singles, forks, x], -1), N_RULE_UNITS)
        _, choice = _dense(self, "choice", rules, N_RULE_UNITS)
        logits = nn.Dense(9, name="policy")(jnp.concatenate([choice, x], -1))
        logits = site(self, "logits", logits, axes=("action",))
        value = site(self, "value", nn.Dense(1, name="value_head")(lines)[..., 0], axes=())
        return ModelOutput(logits=logits, value=value)


def _lines_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((18, N_LINES_UNITS)), np.zeros(N_LINES_UNITS)
    for slot, (line, pos, sq) in enumerate(_line_slots()):
        others = [s for p, s in enumerate(LINES[line]) if p != pos]
        for o in range(2):
            two, open_ = _two(o, slot), _open(o, slot)
            for s in others:
                k[_plane(s, o), two] = 1.0  # relu(x_a + x_b - occ_s - 1)
                k[_plane(s, o), open_] = 1.0  # relu(x_a + x_b - 2 (y_a + y_b) - 2 occ_s)
                k[_plane(s, 1 - o), open_] = -2.0
            for p in range(2):
                k[_plane(sq, p), two] = -1.0
                k[_plane(sq, p), open_] = -2.0
            b[two] = -1.0
    for line, squares in enumerate(LINES):
        for o in range(2):
            for s in squares:
                k[_plane(s, o), _three(o, line)] = 1.0  # relu(x_a + x_b + x_c - 2)
            b[_three(o, line)] = -2.0
    return k, b


def _singles_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((N_LINES_UNITS, N_SINGLES_UNITS)), np.zeros(N_SINGLES_UNITS)
    for slot, (_, _, sq) in enumerate(_line_slots()):
        for o in range(2):
            k[_open(o, slot), _single(o, slot)] = 1.0  # relu(open - 2 two) = [open == 1]
            k[_two(o, slot), _single(o, slot)] = -2.0
            k[_two(o, slot), _nothreat(o, sq)] = -1.0  # relu(1 - sum_l two)
    for o in range(2):
        for sq in ALL_SQUARES:
            b[_nothreat(o, sq)] = 1.0
    return k, b


def _forks_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((N_SINGLES_UNITS, N_FORKS_UNITS)), np.zeros(N_FORKS_UNITS)
    for slot, (_, _, sq) in enumerate(_line_slots()):
        for o in range(2):
            for m in (1, 2):
                k[_single(o, slot), _over(o, sq, m)] = 1.0
    for o in range(2):
        for sq in ALL_SQUARES:
            for m in (1, 2):
                b[_over(o, sq, m)] = -float(m)
    return k, b


def _rules_layer() -> tuple[np.ndarray, np.ndarray]:
    n_in = N_SINGLES_UNITS + N_FORKS_UNITS + 18
    k, b = np.zeros((n_in, N_RULE_UNITS)), np.zeros(N_RULE_UNITS)

    def forks(i: int) -> int:
        return N_SINGLES_UNITS + i

    def board(i: int) -> int:
        return N_SINGLES_UNITS + N_FORKS_UNITS + i

    for unit, (rule, sq) in enumerate(_rule_slots()):
        if rule in ("win", "block"):
            k[_nothreat(0 if rule == "win" else 1, sq), unit] = -1.0
            b[unit] = 1.0
        elif rule in ("fork", "block_fork"):
            o = 0 if rule == "fork" else 1
            k[forks(_over(o, sq, 1)), unit] = 1.0
            k[forks(_over(o, sq, 2)), unit] = -1.0
        else:
            for p in range(2):
                k[board(_plane(sq, p)), unit] = -1.0
            if rule == "opposite_corner":
                k[board(_plane(8 - sq, 1)), unit] = 1.0
            else:
                b[unit] = 1.0
    return k, b


def _choice_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((N_RULE_UNITS, N_RULE_UNITS)), np.zeros(N_RULE_UNITS)
    slots = _rule_slots()
    for unit, (rule, sq) in enumerate(slots):
        k[unit, unit] = 1.0
        for other, (higher, sq2) in enumerate(slots):
            if sq2 == sq and RULES.index(higher) < RULES.index(rule):
                k[other, unit] = -1.0
    return k, b


def _policy_layer() -> tuple[np.ndarray, np.ndarray]:
    k = np.zeros((N_RULE_UNITS + 18, 9))
    for unit, (rule, sq) in enumerate(_rule_slots()):
        k[unit, sq] = float(len(RULES) - RULES.index(rule))
    for sq in ALL_SQUARES:
        for p in range(2):
            k[N_RULE_UNITS + _plane(sq, p), sq] = -LEGAL_PENALTY
    return k, -TIE_BREAK * np.arange(9.0)


def _value_layer() -> tuple[np.ndarray, np.ndarray]:
    k = np.zeros((N_LINES_UNITS, 1))
    for line in range(len(LINES)):
        k[_three(0, line), 0], k[_three(1, line), 0] = 1.0, -1.0
    return k, np.zeros(1)


_LAYERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "lines": _lines_layer, "singles": _singles_layer, "forks": _forks_layer, "rules": _rules_layer,
    "choice": _choice_layer, "policy": _policy_layer, "value_head": _value_layer,
}


def params_from(layers: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]]) -> Params:
    """A ``params`` collection from ``{layer: build() -> (kernel, bias)}``, in float32."""
    out = {}
    for name, build in layers.items():
        kernel, bias = build()
        out[name] = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
    return out


def compiled_params() -> Params:
    """The hand-set weights, as the ``params`` collection of ``CompiledRules``."""
    return params_from(_LAYERS)


# --- numpy reference -------------------------------------------------------------------


def _board(board_row) -> np.ndarray:
    b = np.asarray(board_row, np.int64).reshape(-1)
    if b.shape != (9,) or not np.isin(b, (-1, 0, 1)).all():
        raise ValueError(f"a board is 9 values in {{-1, 0, 1}}; got {board_row!r}")
    return b


def _rule_squares(b: np.ndarray, rule: str) -> list[int]:
    """Squares where ``rule`` applies on board ``b``, by direct enumeration (no arrays of
    concepts), so the reference is independent of the unit definitions."""
    me = minimax.mover(tuple(b))
    empty = [s for s in ALL_SQUARES if b[s] < 0]

    def lines_at(s: int) -> list[list[int]]:
        return [[t for t in line if t != s] for line in LINES if s in line]

    def completes(s: int, who: int) -> bool:
        return any(all(b[t] == who for t in rest) for rest in lines_at(s))

    def forks(s: int, who: int) -> bool:
        open_ones = [rest for rest in lines_at(s) if sorted(int(b[t]) for t in rest) == [-1, who]]
        return len(open_ones) >= 2

    tests = {
        "win": lambda s: completes(s, me),
        "block": lambda s: completes(s, 1 - me),
        "fork": lambda s: forks(s, me),
        "block_fork": lambda s: forks(s, 1 - me),
        "centre": lambda s: s == 4,
        "opposite_corner": lambda s: s in CORNERS and b[8 - s] == 1 - me,
        "empty_corner": lambda s: s in CORNERS,
        "empty_side": lambda s: s in SIDES,
    }
    return [s for s in empty if tests[rule](s)]


def _first_rule(board_row) -> tuple[str, int]:
    b = _board(board_row)
    if minimax.is_terminal(tuple(b)):
        return NONE, -1
    for rule in RULES:
        squares = _rule_squares(b, rule)
        if squares:
            return rule, squares[0]
    raise AssertionError("a non-terminal board has an empty square, so some rule applies")


def rule_move(board_row) -> int:
    """The square the rule list plays (lowest index within the first rule that applies);
    -1 on a terminal board."""
    return _first_rule(board_row)[1]


def rule_applied(board_row) -> str:
    """Name of the rule that picks the move (``"none"`` on a terminal board)."""
    return _first_rule(board_row)[0]


def observations(boards) -> np.ndarray:
    """(n, 3, 3, 2) float32 observations: plane 0 the mover's stones, plane 1 the opponent's."""
    b = np.asarray(boards).reshape(-1, 9)
    mover = ((b == 0).sum(1) != (b == 1).sum(1)).astype(int)[:, None]
    planes = np.stack([b == mover, b == 1 - mover], -1)
    return planes.reshape(-1, 3, 3, 2).astype(np.float32)


def concept_values(boards) -> dict[str, np.ndarray]:
    """Every hidden unit's concept (``"<layer>.post"`` -> (n, units)), computed from the
    boards with boolean logic rather than the network's arithmetic."""
    b = np.asarray(boards).reshape(-1, 9)
    obs = observations(b).reshape(-1, 9, 2).astype(bool)
    who = [obs[..., 0], obs[..., 1]]  # own, opp: (n, 9)
    empty = ~(who[0] | who[1])
    slots = _line_slots()
    others = np.array([[s for p, s in enumerate(LINES[line]) if p != pos] for line, pos, _ in slots])
    move = np.array([sq for _, _, sq in slots])
    mine = [w[:, others].sum(-1) for w in who]  # (n, 24): stones on the other two squares
    free = empty[:, move]
    two = [(mine[o] == 2) & free for o in range(2)]
    open_ = [np.where((mine[1 - o] == 0) & free, mine[o], 0) for o in range(2)]
    three = [w[:, np.array(LINES)].all(-1) for w in who]
    single = [(mine[o] == 1) & (mine[1 - o] == 0) & free for o in range(2)]
    at = move[None, :] == np.arange(9)[:, None]  # (9 squares, 24 slots)
    nothreat = [~(two[o][:, None, :] & at).any(-1) for o in range(2)]
    count = [(single[o][:, None, :] & at).sum(-1) for o in range(2)]  # (n, 9)
    over = [np.stack([np.maximum(count[o] - m, 0) for m in (1, 2)], -1).reshape(len(b), 18) for o in range(2)]
    rule_table = _rule_table(b)
    applies = np.stack([rule_table[:, RULES.index(r), s] for r, s in _rule_slots()], -1)
    best = rule_table & (np.cumsum(rule_table, 1) == 1)  # first rule that applies at each square
    chosen = np.stack([best[:, RULES.index(r), s] for r, s in _rule_slots()], -1)
    cat = np.concatenate
    return {
        "lines.post": cat([*two, *open_, *three], -1).astype(np.float32),
        "singles.post": cat([*single, *nothreat], -1).astype(np.float32),
        "forks.post": cat(over, -1).astype(np.float32),
        "rules.post": applies.astype(np.float32),
        "choice.post": chosen.astype(np.float32),
    }


def _rule_table(boards: np.ndarray) -> np.ndarray:
    """(n, rules, 9) bool: rule k applies at square s (any board, terminal or not)."""
    out = np.zeros((len(boards), len(RULES), 9), bool)
    for i, row in enumerate(boards):
        b = _board(row)
        for k, rule in enumerate(RULES):
            out[i, k, _rule_squares(b, rule)] = True
    return out


# --- ground truth -----------------------------------------------------------------------


def _decision_squares_one(row) -> np.ndarray:
    """Squares the chosen move reads: the move, plus the stones that make its rule fire
    there (both stones of every completing line for win/block; the single stone of every
    open line through the move for fork/block-fork; the opponent's opposite corner for
    opposite_corner). None on a terminal board."""
    b = _board(row)
    rule, move = _first_rule(b)
    out = np.zeros(9, bool)
    if move < 0:
        return out
    out[move] = True
    me = minimax.mover(tuple(b))
    who = me if rule in ("win", "fork") else 1 - me
    for line in LINES:
        if move not in line:
            continue
        rest = [t for t in line if t != move]
        stones = [t for t in rest if b[t] == who]
        if rule in ("win", "block") and len(stones) == 2:
            out[stones] = True
        if rule in ("fork", "block_fork") and len(stones) == 1 and all(b[t] in (-1, who) for t in rest):
            out[stones] = True
    if rule == "opposite_corner":
        out[8 - move] = True
    return out


@dataclasses.dataclass(frozen=True)
class Truth:
    """What the compiled network computes, known by construction.

    ``unit_concepts`` and ``circuit`` are keyed by site (``"lines.pre"``, ``"lines.post"``,
    ...; a ``.pre`` site holds the same units before the ReLU). ``circuit`` marks the units
    with a path to the logits: every unit except the ``three_*`` line-complete units, which
    feed only the value.
    """

    unit_concepts: dict[str, list[str]]
    circuit: dict[str, np.ndarray]

    def decision_squares(self, boards) -> np.ndarray:
        """(n, 9) bool: the squares the chosen move depends on (see ``_decision_squares_one``)."""
        return np.stack([_decision_squares_one(r) for r in np.asarray(boards).reshape(-1, 9)])

    def rule_of(self, boards) -> list[str]:
        """The rule that picks each board's move (``"none"`` for terminal boards)."""
        return [rule_applied(r) for r in np.asarray(boards).reshape(-1, 9)]


def truth() -> Truth:
    concepts, circuit = {}, {}
    for layer, names in unit_names().items():
        mask = np.array([not n.startswith("three_") for n in names])
        for kind in ("pre", "post"):
            concepts[f"{layer}.{kind}"] = list(names)
            circuit[f"{layer}.{kind}"] = mask
    return Truth(unit_concepts=concepts, circuit=circuit)


# --- verification ------------------------------------------------------------------------


@functools.cache
def _reachable() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], tuple[tuple[str, int], ...]]:
    """All reachable boards, the environment's own observations of them, their unit
    concepts and (rule, move) references: computed once, since verify is called often."""
    from rljaxinterp.envs.boards import tic_tac_toe_reachable

    states, boards = tic_tac_toe_reachable()
    boards = np.asarray(boards)
    return (
        boards, np.asarray(states.observation, np.float32), concept_values(boards),
        tuple(_first_rule(row) for row in boards),
    )


def _check_units(cache: dict[str, jax.Array], boards: np.ndarray, expected: dict[str, np.ndarray]) -> int:
    for layer, names in unit_names().items():
        got = np.asarray(cache[f"{layer}.post"])
        want = expected[f"{layer}.post"]
        bad = np.argwhere(got != want)
        if bad.size:
            i, u = bad[0]
            raise ValueError(
                f"unit {layer}.post[{u}] ({names[u]}) is {got[i, u]:g} but its concept is {want[i, u]:g} "
                f"on reachable board {i} {boards[i].tolist()} ({len(np.unique(bad[:, 1]))} unit(s) wrong)"
            )
    return sum(len(n) for n in unit_names().values())


def verify(model: nn.Module, params: Params) -> dict:
    """Check the network against its truth on all 5,478 reachable positions.

    (a) every hidden unit equals its concept; (b) the argmax over legal moves equals
    ``rule_move`` on every non-terminal position; (c) reports, per rule, the share of
    non-terminal positions whose rule move is minimax-optimal. Raises ``ValueError`` naming
    the first failing unit or position if (a) or (b) fails.
    """
    from rljaxinterp.interp.cache import run_with_cache

    boards, obs, expected, reference = _reachable()
    if not np.array_equal(obs, observations(boards)):
        raise ValueError("the environment's observation no longer has plane 0 = mover, plane 1 = opponent")
    out, cache = run_with_cache(model, params, jnp.asarray(obs))
    units = _check_units(cache, boards, expected)
    return {"positions": len(boards), **check_moves(np.asarray(out.logits), boards, reference, units)}


def check_moves(logits: np.ndarray, boards: np.ndarray, reference, units: int) -> dict:
    """Raise ``ValueError`` at the first non-terminal board whose legal argmax is not the rule
    move; else the move and optimality counts of ``verify`` (shared by the compiled networks)."""
    from rljaxinterp.eval.minimax import solve

    solution = solve()
    counts = dict.fromkeys(RULES, 0)
    optimal = dict.fromkeys(RULES, 0)
    nonterminal = 0
    for i, (row, (rule, move)) in enumerate(zip(boards, reference, strict=True)):
        if move < 0:
            continue
        nonterminal += 1
        legal = row < 0
        net = int(np.argmax(np.where(legal, logits[i], -np.inf)))
        if net != move:
            raise ValueError(
                f"on reachable board {i} {row.tolist()} the network plays {net} but rule {rule!r} plays {move}"
            )
        counts[rule] += 1
        optimal[rule] += bool(solution.optimal[solution.row(row), move])
    return {
        "nonterminal": nonterminal,
        "units_checked": units,
        "moves_match": nonterminal,
        "rule_counts": counts,
        "optimal_share": {r: optimal[r] / counts[r] if counts[r] else float("nan") for r in RULES},
        "optimal_share_all": sum(optimal.values()) / nonterminal,
    }


def make_compiled() -> tuple[CompiledRules, Params, Truth]:
    """The verified model, its weights and its truth."""
    model, params = CompiledRules(), compiled_params()
    verify(model, params)
    return model, params, truth()
