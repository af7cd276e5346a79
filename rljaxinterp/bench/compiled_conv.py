"""Tier 1 of the benchmark zoo, convolutional: the compiled tic-tac-toe strategy of
``compiled_ttt`` written into a network of shared-kernel convolutions with hand-set weights.

Same rules, same causal graph, same layer names (``lines``, ``singles``, ``forks``, ``rules``,
``choice``) as the MLP, but every hidden site is ``(batch, 3, 3, channels)`` and one kernel is
shared by all nine squares, so a method meets the weight sharing and spatial layout of the
AlphaZero conv towers while the truth stays exact. The unit of the truth is a (square,
channel) pair; channel ``c`` means the same concept at every square.

A 5x5 kernel with SAME padding reaches every square of the row, column and both diagonals
through any square of a 3x3 board (its out-of-board taps read the zero padding), so one
kernel sums "the other two squares of the line in direction d through s". The network also
reads constant coordinate planes (CoordConv, Liu et al. 2018), ``COORDS``: the row and
column index, on the main diagonal, on the anti-diagonal, centre, corner, side. They gate
the diagonal channels off the diagonals, place the centre / corner / side rules, and give
the read-out its lowest-index tie-break ``-(3 row + col) / 16 = -s / 16``.

Channels, with ``o`` in ``OWNERS`` (own, opp) and ``d`` in ``DIRECTIONS`` (row, col, diag,
anti) and ``l(d, s)`` the line in direction d through s (none for a diagonal s is not on)::

    input (row, col, channel)          + COORDS (constant, not a site)
      └─ lines   5x5   two_o_d   = two[o, l(d,s), s] of compiled_ttt             {0,1}
                       open_o_d  = open[o, l(d,s), s]                             {0,1,2}
                       three_o_d = three[o, l(d,s)] (o owns the line; value only) {0,1}
          └─ singles 1x1  single_o_d = relu(open - 2 two); nothreat_o = relu(1 - sum_d two)
              └─ forks  1x1  over1_o, over2_o = relu(c - 1), relu(c - 2), c = sum_d single_o_d
                  └─ rules  5x5 (reads singles, forks, input, coords)  the eight rules at s
                      └─ choice 1x1  relu(rule_k - sum_{j<k} rule_j)
                          └─ policy 1x1 (reads choice, input, coords) -> logits (9,)
    value = Dense over lines: three_own - three_opp, each line counted at its first square

Each element (square, channel) whose concept exists in the MLP has the MLP unit's name
(``two_own_line4_sq1``, ``win_sq1``, ...), and ``concept_values`` takes its values from
``compiled_ttt.concept_values``; ``three_*`` elements are named with their square
(``three_own_line0_sq1``) and equal the line's ``three`` unit. Elements that cannot be
nonzero by construction (a diagonal channel off its diagonal, the centre rule off the
centre, ...) are named ``dead:...`` and are 0 on every board.

Patching layout (``interp.patching``): the sites declare axes ``("row", "col", "channel")``,
so ``granularity="unit"`` patches one *channel at all nine squares* per group and returns
``(channels,)`` per site: ``Truth.unit_concepts`` and ``win_units()`` are per channel.
``granularity="element"`` returns ``(3, 3, channels)``; ``Truth.element_concepts`` and
``win_units("element")`` hold the per-(square, channel) truth flattened in that order
(``np.ravel``), and ``granularity="position"`` patches one square (all channels).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.bench import compiled_ttt as ct
from rljaxinterp.eval.minimax import LINES
from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.sites import site

BOARD = ("row", "col", "channel")
OWNERS = ct.OWNERS
DIRECTIONS: tuple[str, ...] = ("row", "col", "diag", "anti")
STEP: dict[str, tuple[int, int]] = {"row": (0, 1), "col": (1, 0), "diag": (1, 1), "anti": (1, -1)}
COORDS: tuple[str, ...] = ("row_index", "col_index", "on_diag", "on_anti", "centre", "corner", "side")
HIDDEN_SITES = ct.HIDDEN_SITES
K = 5  # kernel size: reaches the whole line through any square of a 3x3 board
C0 = K // 2  # the centre tap
# The immediate-win path, as leaderboard.WIN_PATH names it for the MLP (element names share
# the MLP's unit names) and as channels: two of mine in a line -> a threat at s -> the win
# rule at s -> win is the best rule at s.
WIN_PATH = ("two_own_", "nothreat_own_", "win_sq", "choice_win_sq")
WIN_CHANNELS = (*(f"two_own_{d}" for d in DIRECTIONS), "nothreat_own", "win", "choice_win")

Params = dict


# --- geometry and channel layout ---------------------------------------------------------


def line_of(direction: str, sq: int) -> int | None:
    """Index in ``LINES`` of the line in ``direction`` through ``sq``, or None."""
    r, c = divmod(sq, 3)
    line = {"row": r, "col": 3 + c, "diag": 6 if r == c else None, "anti": 7 if r + c == 2 else None}[direction]
    assert line is None or sq in LINES[line]
    return line


def coord_planes() -> np.ndarray:
    """(3, 3, len(COORDS)) constant planes, in ``COORDS`` order."""
    out = np.zeros((3, 3, len(COORDS)), np.float32)
    for sq in range(9):
        r, c = divmod(sq, 3)
        out[r, c] = (r, c, r == c, r + c == 2, sq == 4, sq in ct.CORNERS, sq in ct.SIDES)
    return out


def _channels() -> dict[str, tuple[str, ...]]:
    lines = tuple(f"{kind}_{o}_{d}" for kind in ("two", "open", "three") for o in OWNERS for d in DIRECTIONS)
    singles = (*(f"single_{o}_{d}" for o in OWNERS for d in DIRECTIONS), *(f"nothreat_{o}" for o in OWNERS))
    forks = tuple(f"forkcount_over{m}_{o}" for o in OWNERS for m in (1, 2))
    return {"lines": lines, "singles": singles, "forks": forks, "rules": ct.RULES,
            "choice": tuple(f"choice_{r}" for r in ct.RULES)}


CHANNELS: dict[str, tuple[str, ...]] = _channels()


def _ch(layer: str, name: str) -> int:
    return CHANNELS[layer].index(name)


def _element_name(layer: str, channel: str, sq: int) -> str:
    """The (square, channel) unit's concept: the MLP unit's name where the MLP has that
    unit, ``three_<o>_line<l>_sq<s>`` for the per-square copies of a line's ``three``, and
    ``dead:<channel>_sq<s>`` where the kernels make it 0 by construction."""
    if layer in ("rules", "choice"):
        rule = channel.removeprefix("choice_")
        prefix = "choice_" if layer == "choice" else ""
        return f"{prefix}{rule}_sq{sq}" if sq in ct.RULE_SQUARES[rule] else f"dead:{channel}_sq{sq}"
    if channel.startswith(("nothreat_", "forkcount_")):
        return f"{channel}_sq{sq}"
    kind, o, d = channel.split("_")
    line = line_of(d, sq)
    if line is None:
        return f"dead:{channel}_sq{sq}"
    return f"{kind}_{o}_line{line}_sq{sq}"


@functools.cache
def element_names() -> dict[str, tuple[str, ...]]:
    """Name of every (square, channel) unit of each hidden layer, flattened in the
    ``(row, col, channel)`` order of the site (``np.ravel`` of a ``.post`` activation)."""
    return {layer: tuple(_element_name(layer, ch, sq) for sq in range(9) for ch in chans)
            for layer, chans in CHANNELS.items()}


def _mlp_concept(name: str) -> str | None:
    """The ``compiled_ttt`` unit whose value an element takes (None: constant 0)."""
    if name.startswith("dead:"):
        return None
    if name.startswith("three_"):
        return name.rsplit("_sq", 1)[0]
    return name


# --- the network ---------------------------------------------------------------------------


def _conv(module: nn.Module, name: str, x: jax.Array, channels: int, size: int) -> jax.Array:
    """A hand-set SAME convolution marked as ``name.pre`` / ``name.post`` (row, col, channel)."""
    pre = nn.Conv(channels, (size, size), padding="SAME", name=name)(x)
    pre = site(module, f"{name}.pre", pre, axes=BOARD, produced_by=name)
    return site(module, f"{name}.post", nn.relu(pre), axes=BOARD, produced_by=name)


class CompiledConv(nn.Module):
    """The compiled rule network as shared-kernel convolutions; weights from
    ``compiled_params()``, never training.

    Sites: ``input`` (row, col, channel), ``{lines,singles,forks,rules,choice}.{pre,post}``
    (row, col, channel), ``logits`` (action), ``value``. The coordinate planes are constants
    concatenated to the board, not a site, so no intervention can move them.
    """

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        board = site(self, "input", floating(obs), axes=BOARD)
        batch_shape = board.shape[:-3]
        coords = jnp.broadcast_to(jnp.asarray(coord_planes(), board.dtype), (*batch_shape, 3, 3, len(COORDS)))
        xc = jnp.concatenate([board, coords], -1)
        lines = _conv(self, "lines", xc, len(CHANNELS["lines"]), K)
        singles = _conv(self, "singles", lines, len(CHANNELS["singles"]), 1)
        forks = _conv(self, "forks", singles, len(CHANNELS["forks"]), 1)
        rules = _conv(self, "rules", jnp.concatenate([singles, forks, xc], -1), len(ct.RULES), K)
        choice = _conv(self, "choice", rules, len(ct.RULES), 1)
        logits = nn.Conv(1, (1, 1), name="policy")(jnp.concatenate([choice, xc], -1))
        logits = site(self, "logits", logits.reshape(*batch_shape, 9), axes=("action",))
        value = nn.Dense(1, name="value_head")(lines.reshape(*batch_shape, -1))[..., 0]
        return ModelOutput(logits=logits, value=site(self, "value", value, axes=()))


def _taps(direction: str) -> list[tuple[int, int]]:
    """Kernel taps of the other squares of the ``direction`` line through the centre tap."""
    dr, dc = STEP[direction]
    return [(C0 + k * dr, C0 + k * dc) for k in (-2, -1, 1, 2)]


N_BOARD_IN = 2 + len(COORDS)  # board planes, then coordinate planes


def _coord(name: str) -> int:
    return 2 + COORDS.index(name)


def _lines_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((K, K, N_BOARD_IN, len(CHANNELS["lines"]))), np.zeros(len(CHANNELS["lines"]))
    for d in DIRECTIONS:
        gate = {"diag": "on_diag", "anti": "on_anti"}.get(d)
        for o in range(2):
            two, open_, three = (_ch("lines", f"{kind}_{OWNERS[o]}_{d}") for kind in ("two", "open", "three"))
            for i, j in _taps(d):
                k[i, j, o, two] = 1.0  # relu(x_a + x_b - occ_s - 1)
                k[i, j, o, open_] = 1.0  # relu(x_a + x_b - 2 (y_a + y_b) - 2 occ_s)
                k[i, j, 1 - o, open_] = -2.0
                k[i, j, o, three] = 1.0  # relu(x_a + x_b + x_s - 2)
            k[C0, C0, :2, two], k[C0, C0, :2, open_], k[C0, C0, o, three] = -1.0, -2.0, 1.0
            b[two], b[three] = -1.0, -2.0
            if gate:  # off the diagonal at most one tap is on the board: -2 keeps every unit at 0
                for unit in (two, open_, three):
                    k[C0, C0, _coord(gate), unit] = 2.0
                    b[unit] -= 2.0
    return k, b


def _singles_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((1, 1, len(CHANNELS["lines"]), len(CHANNELS["singles"]))), np.zeros(len(CHANNELS["singles"]))
    for o in OWNERS:
        for d in DIRECTIONS:
            single = _ch("singles", f"single_{o}_{d}")
            k[0, 0, _ch("lines", f"open_{o}_{d}"), single] = 1.0  # relu(open - 2 two) = [open == 1]
            k[0, 0, _ch("lines", f"two_{o}_{d}"), single] = -2.0
            k[0, 0, _ch("lines", f"two_{o}_{d}"), _ch("singles", f"nothreat_{o}")] = -1.0  # relu(1 - sum_d two)
        b[_ch("singles", f"nothreat_{o}")] = 1.0
    return k, b


def _forks_layer() -> tuple[np.ndarray, np.ndarray]:
    k, b = np.zeros((1, 1, len(CHANNELS["singles"]), len(CHANNELS["forks"]))), np.zeros(len(CHANNELS["forks"]))
    for o in OWNERS:
        for m in (1, 2):
            over = _ch("forks", f"forkcount_over{m}_{o}")
            for d in DIRECTIONS:
                k[0, 0, _ch("singles", f"single_{o}_{d}"), over] = 1.0
            b[over] = -float(m)
    return k, b


def _rules_layer() -> tuple[np.ndarray, np.ndarray]:
    n_s, n_f = len(CHANNELS["singles"]), len(CHANNELS["forks"])
    k, b = np.zeros((K, K, n_s + n_f + N_BOARD_IN, len(ct.RULES))), np.zeros(len(ct.RULES))
    fork_in, board_in = n_s, n_s + n_f
    for unit, rule in enumerate(ct.RULES):
        o = "own" if rule in ("win", "fork") else "opp"
        if rule in ("win", "block"):
            k[C0, C0, _ch("singles", f"nothreat_{o}"), unit], b[unit] = -1.0, 1.0
        elif rule in ("fork", "block_fork"):
            k[C0, C0, fork_in + _ch("forks", f"forkcount_over1_{o}"), unit] = 1.0
            k[C0, C0, fork_in + _ch("forks", f"forkcount_over2_{o}"), unit] = -1.0
        else:
            k[C0, C0, board_in:board_in + 2, unit] = -1.0  # the square must be empty
            if rule == "opposite_corner":  # only a corner has an on-board (±2, ±2) tap: its opposite
                for i in (0, K - 1):
                    for j in (0, K - 1):
                        k[i, j, board_in + 1, unit] = 1.0
            else:
                plane = {"centre": "centre", "empty_corner": "corner", "empty_side": "side"}[rule]
                k[C0, C0, board_in + _coord(plane), unit] = 1.0
    return k, b


def _choice_layer() -> tuple[np.ndarray, np.ndarray]:
    n = len(ct.RULES)
    k = np.eye(n) - np.triu(np.ones((n, n)), 1)  # input j < output k: -1
    return k[None, None], np.zeros(n)


def _policy_layer() -> tuple[np.ndarray, np.ndarray]:
    n = len(ct.RULES)
    k = np.zeros((1, 1, n + N_BOARD_IN, 1))
    k[0, 0, :n, 0] = [float(n - i) for i in range(n)]
    k[0, 0, n:n + 2, 0] = -ct.LEGAL_PENALTY
    k[0, 0, n + _coord("row_index"), 0] = -3 * ct.TIE_BREAK  # -(3 row + col) / 16 = -s / 16
    k[0, 0, n + _coord("col_index"), 0] = -ct.TIE_BREAK
    return k, np.zeros(1)


def _value_layer() -> tuple[np.ndarray, np.ndarray]:
    n = len(CHANNELS["lines"])
    k = np.zeros((9 * n, 1))
    for line, squares in enumerate(LINES):
        d = DIRECTIONS[min(line // 3, 2) + (line == 7)]
        for o, sign in zip(OWNERS, (1.0, -1.0), strict=True):
            k[squares[0] * n + _ch("lines", f"three_{o}_{d}"), 0] = sign  # once per line
    return k, np.zeros(1)


_LAYERS = {
    "lines": _lines_layer, "singles": _singles_layer, "forks": _forks_layer, "rules": _rules_layer,
    "choice": _choice_layer, "policy": _policy_layer, "value_head": _value_layer,
}


def compiled_params() -> Params:
    """The hand-set weights, as the ``params`` collection of ``CompiledConv``."""
    return ct.params_from(_LAYERS)


# --- concepts and truth --------------------------------------------------------------------


def concept_values(boards) -> dict[str, np.ndarray]:
    """Every (square, channel) unit's concept, ``"<layer>.post"`` -> (n, 3, 3, channels),
    read from ``compiled_ttt.concept_values`` (boolean logic on the boards) by unit name."""
    mlp = ct.concept_values(boards)
    n = next(iter(mlp.values())).shape[0]
    out = {}
    for layer, names in element_names().items():
        index = {u: i for i, u in enumerate(ct.unit_names()[layer])}
        src = mlp[f"{layer}.post"]
        cols = [_mlp_concept(e) for e in names]
        vals = np.stack([src[:, index[c]] if c is not None else np.zeros(n, np.float32) for c in cols], -1)
        out[f"{layer}.post"] = vals.reshape(n, 3, 3, len(CHANNELS[layer]))
    return out


def expected_value(boards) -> np.ndarray:
    """The value head's truth: lines the mover owns minus lines the opponent owns."""
    lines = ct.concept_values(boards)["lines.post"]
    names = ct.unit_names()["lines"]
    own = [i for i, u in enumerate(names) if u.startswith("three_own_")]
    opp = [i for i, u in enumerate(names) if u.startswith("three_opp_")]
    return lines[:, own].sum(-1) - lines[:, opp].sum(-1)


@dataclasses.dataclass(frozen=True)
class Truth(ct.Truth):
    """``compiled_ttt.Truth`` (``rule_of``, ``decision_squares`` unchanged) with the conv layout.

    ``unit_concepts`` / ``circuit``: per channel, the groups of ``granularity="unit"``
    (a channel is on the circuit unless it is a ``three_*`` value-only channel).
    ``element_concepts`` / ``element_circuit``: per (square, channel), flattened in the site's
    ``(row, col, channel)`` order, the groups of ``granularity="element"``; dead elements and
    ``three_*`` elements are off the circuit.
    """

    element_concepts: dict[str, list[str]]
    element_circuit: dict[str, np.ndarray]


def truth() -> Truth:
    concepts, circuit, elements, element_circuit = {}, {}, {}, {}
    for layer, chans in CHANNELS.items():
        names = element_names()[layer]
        for kind in ("pre", "post"):
            s = f"{layer}.{kind}"
            concepts[s] = list(chans)
            circuit[s] = np.array([not c.startswith("three_") for c in chans])
            elements[s] = list(names)
            element_circuit[s] = np.array([not n.startswith(("three_", "dead:")) for n in names])
    return Truth(unit_concepts=concepts, circuit=circuit, element_concepts=elements, element_circuit=element_circuit)


def hidden_sites() -> list[str]:
    """The sites a circuit method scores: every hidden layer's ``.post``."""
    return [f"{layer}.post" for layer in HIDDEN_SITES]


def win_units(granularity: str = "unit") -> dict[str, np.ndarray]:
    """Units on the immediate-win path per hidden site, in the layout of a patching sweep at
    ``granularity``: ``"unit"`` (channels, ``WIN_CHANNELS``) or ``"element"`` (flattened
    (square, channel) units named by ``WIN_PATH``, as ``leaderboard.win_units`` for the MLP)."""
    t = truth()
    if granularity == "unit":
        return {s: np.array([c in WIN_CHANNELS for c in t.unit_concepts[s]]) for s in hidden_sites()}
    if granularity == "element":
        return {s: np.array([n.startswith(WIN_PATH) for n in t.element_concepts[s]]) for s in hidden_sites()}
    raise ValueError(f"granularity={granularity!r} is not allowed; use 'unit' or 'element'")


# --- verification --------------------------------------------------------------------------


@functools.cache
def _expected() -> tuple[dict[str, np.ndarray], np.ndarray]:
    boards = ct._reachable()[0]
    return concept_values(boards), expected_value(boards)


def _check_elements(cache, boards: np.ndarray, expected: dict[str, np.ndarray]) -> int:
    for layer, chans in CHANNELS.items():
        got = np.asarray(cache[f"{layer}.post"])
        want = expected[f"{layer}.post"]
        bad = np.argwhere(got != want)
        if bad.size:
            i, r, c, ch = bad[0]
            name = element_names()[layer][(3 * r + c) * len(chans) + ch]
            raise ValueError(
                f"unit {layer}.post[{r}, {c}, {ch}] ({chans[ch]} at square {3 * r + c}: {name}) is "
                f"{got[i, r, c, ch]:g} but its concept is {want[i, r, c, ch]:g} on reachable board {i} "
                f"{boards[i].tolist()} ({len(bad)} element(s) wrong)"
            )
    return sum(9 * len(c) for c in CHANNELS.values())


def verify(model: nn.Module, params: Params) -> dict:
    """Check the network against its truth on all 5,478 reachable positions, as
    ``compiled_ttt.verify`` does the MLP: (a) every (square, channel) unit equals its concept
    and the value equals owned-minus-lost lines; (b) the legal argmax equals ``rule_move`` on
    all 4,520 non-terminal positions; (c) the per-rule minimax-optimal shares. Raises
    ``ValueError`` naming the first failing unit or position."""
    from rljaxinterp.interp.cache import run_with_cache

    boards, obs, _, reference = ct._reachable()
    expected, value = _expected()
    out, cache = run_with_cache(model, params, jnp.asarray(obs))
    units = _check_elements(cache, boards, expected)
    got = np.asarray(out.value)
    bad = np.flatnonzero(got != value)
    if bad.size:
        i = bad[0]
        raise ValueError(f"the value is {got[i]:g} but {value[i]:g} lines are owned minus lost on reachable "
                         f"board {i} {boards[i].tolist()} ({bad.size} board(s) wrong)")
    return {"positions": len(boards), **ct.check_moves(np.asarray(out.logits), boards, reference, units)}


def make_compiled_conv() -> tuple[CompiledConv, Params, Truth]:
    """The verified model, its weights and its truth."""
    model, params = CompiledConv(), compiled_params()
    verify(model, params)
    return model, params, truth()
