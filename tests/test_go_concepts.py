"""Go concepts against hand-counted positions and a plain-Python flood fill on random play."""

import jax
import numpy as np
import pytest

from rljaxinterp import envs
from rljaxinterp.interp import concepts
from rljaxinterp.interp.concepts import go

N = 81


def sq(r, c):
    return r * 9 + c


def scalars(c, i=0):
    return {k: float(c[k][i]) for k in go.SCALARS}


def square_map(c, name, i=0):
    return np.array([float(c[f"{name}_sq{p}"][i]) for p in range(N)])


@pytest.mark.slow
def test_atari_liberties_and_area_on_hand_built_positions():
    games = [
        # B (0,1), W (1,1), B (1,0), W (8,8), B (1,2): the white stone at (1,1) keeps one liberty.
        [sq(0, 1), sq(1, 1), sq(1, 0), sq(8, 8), sq(1, 2)],
        # Black group {(0,1), (1,0), (1,1)}: (0,0) touches it twice and is one liberty.
        [sq(0, 1), sq(8, 8), sq(1, 0), sq(8, 7), sq(1, 1)],
        # A black wall down column 2 seals columns 0-1; white stones down column 6 (rows 0-7).
        [a for r in range(8) for a in (sq(r, 2), sq(r, 6))] + [sq(8, 2)],
        # B (0,0), W (0,1), B (4,4), W (1,0) captures the corner stone.
        [sq(0, 0), sq(0, 1), sq(4, 4), sq(1, 0)],
    ]
    width = max(map(len, games))
    actions = np.array([g + [-1] * (width - len(g)) for g in games])
    c = concepts.compute("go_9x9", envs.from_actions("go_9x9", actions, first_player=0))

    # 1: White to move. Black stones (0,1): libs (0,0),(0,2); (1,0): (0,0),(2,0); (1,2): (0,2),(2,2),(1,3).
    # (0,0) touches only black: black area 3 stones + 1; white area its 2 stones.
    assert scalars(c, 0) == dict(
        own_stones=2, opponent_stones=3, own_groups=2, opponent_groups=3, own_liberties=3, opponent_liberties=5,
        own_stones_in_atari=1, opponent_stones_in_atari=0, own_groups_in_atari=1, opponent_groups_in_atari=0,
        own_area=2, opponent_area=4, neutral_points=75, score_lead=2 - 4 + 7.5,
    )
    libs = square_map(c, "liberties", 0)
    assert libs[sq(1, 1)] == 1 and libs[sq(0, 1)] == 2 and libs[sq(1, 0)] == 2 and libs[sq(1, 2)] == 3
    assert libs[sq(8, 8)] == 2 and libs[sq(0, 0)] == 0
    assert np.flatnonzero(square_map(c, "own_atari", 0)).tolist() == [sq(1, 1)]
    assert not square_map(c, "opponent_atari", 0).any()
    area = square_map(c, "area", 0)
    assert area[sq(0, 0)] == -1 and area[sq(8, 8)] == 1 and area[sq(4, 4)] == 0

    # 2: one black group of 3 with liberties (0,0), (0,2), (1,2), (2,0), (2,1): five, not six.
    s = scalars(c, 1)
    assert (s["opponent_groups"], s["opponent_liberties"], s["own_groups"], s["own_liberties"]) == (1, 5, 1, 3)
    libs = square_map(c, "liberties", 1)
    assert libs[sq(0, 1)] == libs[sq(1, 0)] == libs[sq(1, 1)] == 5 and libs[sq(8, 8)] == 3

    # 3: Black (9 stones + 18 sealed points) to move... no: 17 moves, White to move.
    s = scalars(c, 2)
    assert (s["own_area"], s["opponent_area"], s["neutral_points"], s["score_lead"]) == (8, 27, 46, 8 - 27 + 7.5)
    area = square_map(c, "area", 2)
    assert (area.reshape(9, 9)[:, :2] == -1).all() and (area.reshape(9, 9)[:, 3:6] == 0).all()

    # 4: Black to move after the capture: 1 black stone, 2 white; (0,0) is White's area.
    s = scalars(c, 3)
    assert (s["own_stones"], s["opponent_stones"], s["own_area"], s["opponent_area"]) == (1, 2, 1, 3)
    assert s["score_lead"] == 1 - 3 - 7.5
    assert square_map(c, "area", 3)[sq(0, 0)] == -1


def reference(signs: np.ndarray, colour: int):
    """Plain-Python flood fills from the stone colours alone (+1 black, -1 white): pgx-style
    chain ids (smallest point + 1, signed), liberties per point, area, and per side the
    liberty count of each group and the empty points next to its stones."""
    b = signs.reshape(9, 9) * (1 if colour == 0 else -1)  # mover's stones +1

    def nbrs(r, c):
        return [(r + dr, c + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= r + dr < 9 and 0 <= c + dc < 9]

    def region(start, same):
        seen, todo = {start}, [start]
        while todo:
            p = todo.pop()
            for q in nbrs(*p):
                if q not in seen and same(q):
                    seen.add(q)
                    todo.append(q)
        return seen

    chains = np.zeros((9, 9), int)
    libs = np.zeros((9, 9), int)
    area = b.copy()
    group_libs = {1: [], -1: []}
    done = set()
    for r in range(9):
        for c in range(9):
            if (r, c) in done:
                continue
            if b[r, c]:
                g = region((r, c), lambda q, v=b[r, c]: b[q] == v)
                lib = {q for p in g for q in nbrs(*p) if b[q] == 0}
                for p in g:
                    chains[p] = (r * 9 + c + 1) * signs.reshape(9, 9)[r, c]
                    libs[p] = len(lib)
                group_libs[int(b[r, c])].append(len(lib))
            else:
                g = region((r, c), lambda q: b[q] == 0)
                touching = {int(b[q]) for p in g for q in nbrs(*p)} - {0}
                owner = touching.pop() if len(touching) == 1 else 0
                for p in g:
                    area[p] = owner
            done |= g
    colour_libs = [len({q for r in range(9) for c in range(9) if b[r, c] == s for q in nbrs(r, c) if b[q] == 0})
                   for s in (1, -1)]
    return chains.ravel(), libs.ravel(), area.ravel(), group_libs, colour_libs


def test_go_analysis_matches_a_python_flood_fill_on_random_boards():
    rng = np.random.default_rng(0)
    density = rng.uniform(0.2, 0.9, (300, 1))
    signs = np.where(rng.random((300, N)) < density, rng.choice([-1, 1], (300, N)), 0)
    colours = rng.integers(0, 2, 300)
    refs = [reference(b, c) for b, c in zip(signs, colours)]
    chains = np.stack([r[0] for r in refs])
    a = jax.jit(jax.vmap(lambda b, c: go.analyse(b, c, 9)))(chains, colours)
    np.testing.assert_array_equal(a.liberties, np.stack([r[1] for r in refs]))
    np.testing.assert_array_equal(a.area, np.stack([r[2] for r in refs]))
    np.testing.assert_array_equal(a.groups, [[len(r[3][1]), len(r[3][-1])] for r in refs])
    np.testing.assert_array_equal(a.groups_in_atari, [[r[3][1].count(1), r[3][-1].count(1)] for r in refs])
    np.testing.assert_array_equal(a.colour_liberties, [r[4] for r in refs])
    assert (a.groups_in_atari.sum(0) > 0).all() and (a.area == 1).any() and (a.area == -1).any()


def test_go_library_registered_and_group_names_checked():
    names = concepts.available("go_9x9")
    assert names[: len(go.SCALARS)] == list(go.SCALARS) and len(names) == len(go.SCALARS) + 4 * N
    assert "area_sq360" in concepts.available("go_19x19")
    with pytest.raises(ValueError, match="already registered"):
        concepts.register_group("go_9x9", ["own_area"], lambda s: s.observation[:, :1])
