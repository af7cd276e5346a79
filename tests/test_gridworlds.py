"""Gridworlds: jit/vmap, solvable levels, train/test distributions, step rules, layouts.

Compiling is the slow part on a small machine, so each environment's
batched ``init`` and ``step`` are compiled once (cached below) and every
check reuses them; the step rules are checked on hand-written layouts.
"""

from __future__ import annotations

import functools
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs
from rljaxinterp.envs.gridworlds import GRIDWORLDS, regrow_probability
from rljaxinterp.envs.gridworlds.common import PALETTE

KEY = jax.random.PRNGKey(0)
N_LEVELS = 1000
NAMES = list(GRIDWORLDS)


@functools.cache
def env_of(name: str, distribution: str = "train", **options) -> envs.Env:
    return envs.make(name, distribution=distribution, **options)


@functools.cache
def levels(name: str, distribution: str):
    """1,000 generated first states, as numpy, from one compiled ``vmap(init)``."""
    env = env_of(name, distribution)
    states = jax.jit(jax.vmap(env.init))(jax.random.split(KEY, N_LEVELS))
    return jax.tree.map(np.asarray, states)


@functools.cache
def batched_step(name: str):
    """``vmap(step)`` of the train environment, compiled once; the rules do not depend on the split."""
    return jax.jit(jax.vmap(env_of(name).step))


@functools.cache
def single_step(name: str, **options):
    return jax.jit(env_of(name, **options).step)


def channel(name: str, obs: np.ndarray, which: str) -> np.ndarray:
    return obs[..., env_of(name).channels.index(which)] > 0


def bfs(free: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Cells reachable from ``start`` through ``free`` cells, by breadth-first search."""
    seen = np.zeros_like(free, bool)
    seen[start] = True
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < free.shape[0] and 0 <= nc < free.shape[1] and free[nr, nc] and not seen[nr, nc]:
                seen[nr, nc] = True
                queue.append((nr, nc))
    return seen


def first(states, i: int = 0):
    return jax.tree.map(lambda x: x[i], states)


def run(name: str, layout: list[str], actions: list[int], seed: int = 0, **options):
    """States after each action from a hand-written layout."""
    env = env_of(name, **options)
    step = single_step(name, **options)
    state = env.from_layout(layout)
    out = [state]
    for t, a in enumerate(actions):
        state = step(state, jnp.int32(a), jax.random.PRNGKey(seed + t))
        out.append(state)
    return env, out


UP, RIGHT, DOWN, LEFT = range(4)


# --- protocol, jit and vmap -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_batched_init_and_step_under_jit(name):
    env = env_of(name)
    assert env.name == name and env.num_actions == 4 and env.num_players == 1
    states = levels(name, "train")
    assert states.observation.shape == (N_LEVELS, *env.observation_shape)
    assert states.observation.dtype == np.float32
    assert states.rewards.shape == (N_LEVELS, 1)
    actions = jax.random.randint(KEY, (N_LEVELS,), 0, 4)
    after = jax.tree.map(np.asarray, batched_step(name)(states, actions, jax.random.split(KEY, N_LEVELS)))
    assert (after.step_count == 1).all()
    assert not (after.terminated & after.truncated).any()
    assert np.isfinite(after.observation).all()
    # Exactly one agent, and it moved at most one cell.
    agent = channel(name, after.observation, "agent")
    assert (agent.sum((1, 2)) == 1).all()
    before_pos = np.argwhere(channel(name, states.observation, "agent"))[:, 1:]
    after_pos = np.argwhere(agent)[:, 1:]
    assert (np.abs(before_pos - after_pos).sum(1) <= 1).all()
    # Levels differ from key to key.
    assert len(np.unique(states.observation.reshape(N_LEVELS, -1), axis=0)) > N_LEVELS // 2


def test_autoreset_rollout_in_scan():
    env = envs.Batched(envs.AutoReset(env_of("TreeGrid", max_steps=20)), 8)

    def body(state, key):
        state = env.step(state, jax.random.randint(key, (8,), 0, 4), key)
        return state, (state.rewards[:, 0], state.truncated, state.step_count)

    _, (rewards, truncated, count) = jax.jit(
        lambda k: jax.lax.scan(body, env.init(k), jax.random.split(k, 45))
    )(KEY)
    truncated, count = np.asarray(truncated), np.asarray(count)
    assert truncated[19].all() and (count[19] == 0).all() and (count[20] == 1).all()
    assert (np.asarray(rewards) >= 0).all() and np.asarray(rewards).sum() > 0


def test_make_options_and_errors():
    env = envs.make("CheeseMaze", distribution="test", size=9)
    assert env.observation_shape == (9, 9, 3) and env.distribution == "test"
    for name in NAMES:
        assert name in envs.available()
        with pytest.raises(ValueError, match=r"'validation'.*'train', 'test'"):
            envs.make(name, distribution="validation")
    with pytest.raises(envs.EnvOptionError, match="bogus"):
        envs.make("TreeGrid", bogus=1)
    with pytest.raises(ValueError, match="odd"):
        envs.make("CheeseMaze", size=10)


# --- generated levels: solvable, and the split is as specified ------------------------------


@pytest.mark.parametrize("name", ["CoinAtEnd", "CheeseMaze"])
def test_goal_levels_are_solvable(name):
    goal = env_of(name).goal_name
    for distribution in ("train", "test"):
        obs = levels(name, distribution).observation
        for i in range(120):
            walls = channel(name, obs[i], "walls")
            agent = tuple(np.argwhere(channel(name, obs[i], "agent"))[0])
            seen = bfs(~walls, agent)
            assert seen[channel(name, obs[i], goal)].all()
            # Nothing is walled off: every open cell is reachable.
            assert seen[~walls].all()


def test_coin_position_train_vs_test():
    env = env_of("CoinAtEnd")
    w = env.shape[1]
    for distribution in ("train", "test"):
        obs = levels("CoinAtEnd", distribution).observation
        coin = np.argwhere(channel("CoinAtEnd", obs, "coin"))
        agent = np.argwhere(channel("CoinAtEnd", obs, "agent"))
        assert len(coin) == len(agent) == N_LEVELS
        assert (agent[:, 2] == 1).all()  # the agent starts on the left
        if distribution == "train":
            assert (coin[:, 2] == w - 2).all()
        else:
            assert 0.02 < (coin[:, 2] == w - 2).mean() < 0.5
            assert len(np.unique(coin[:, 2])) == w - 2
            assert not (coin[:, 1:] == agent[:, 1:]).all(1).any()


def test_cheese_mazes_are_perfect_and_cheese_in_corner_for_train():
    env = env_of("CheeseMaze")
    corner = env.corner_region()
    for distribution in ("train", "test"):
        obs = levels("CheeseMaze", distribution).observation
        cheese = channel("CheeseMaze", obs, "cheese")
        agent = channel("CheeseMaze", obs, "agent")
        in_corner = (cheese & corner).any((1, 2))
        assert (cheese.sum((1, 2)) == 1).all()
        assert not (agent & corner).any()
        if distribution == "train":
            assert in_corner.all()
        else:
            assert in_corner.mean() < 0.15
        # A perfect maze is a tree: open cells - 1 == open adjacencies.
        free = ~channel("CheeseMaze", obs[:100], "walls")
        cells = free.sum((1, 2))
        pairs = (free[:, 1:] & free[:, :-1]).sum((1, 2)) + (free[:, :, 1:] & free[:, :, :-1]).sum((1, 2))
        assert (pairs == cells - 1).all()


def test_keys_and_chests_counts_and_reachability():
    env = env_of("KeysChests")
    for distribution in ("train", "test"):
        obs = levels("KeysChests", distribution).observation
        keys = channel("KeysChests", obs, "keys").sum((1, 2))
        chests = channel("KeysChests", obs, "chests").sum((1, 2))
        if distribution == "train":
            lo, hi = env.few, env.many
            assert (keys < chests).all()
        else:
            hi, lo = env.few, env.many
            assert (keys > chests).all()
        assert set(np.unique(keys)) == set(range(lo[0], lo[1] + 1))
        assert set(np.unique(chests)) == set(range(hi[0], hi[1] + 1))
        for i in range(100):
            walls = channel("KeysChests", obs[i], "walls")
            agent = tuple(np.argwhere(channel("KeysChests", obs[i], "agent"))[0])
            seen = bfs(~walls, agent)
            things = channel("KeysChests", obs[i], "keys") | channel("KeysChests", obs[i], "chests")
            assert seen[things].all()


def test_tree_and_monster_levels_and_episode_lengths():
    for distribution in ("train", "test"):
        obs = levels("TreeGrid", distribution).observation
        assert (channel("TreeGrid", obs, "trees").sum((1, 2)) == 10).all()
        assert not (channel("TreeGrid", obs, "trees") & channel("TreeGrid", obs, "agent")).any()
        obs = levels("MonsterGrid", distribution).observation
        for which, count in (("apples", 3), ("shields", 2), ("monsters", 2)):
            assert (channel("MonsterGrid", obs, which).sum((1, 2)) == count).all()
        for i in range(100):
            free = ~channel("MonsterGrid", obs[i], "walls")
            seen = bfs(free, tuple(np.argwhere(channel("MonsterGrid", obs[i], "agent"))[0]))
            assert seen[
                channel("MonsterGrid", obs[i], "apples") | channel("MonsterGrid", obs[i], "shields")
            ].all()
    for name in ("TreeGrid", "MonsterGrid"):
        assert env_of(name, "test").max_steps >= 10 * env_of(name, "train").max_steps


# --- step rules ---------------------------------------------------------------------------

COIN = ["#######", "#A#...#", "#...#C#", "#######"]


def test_walls_block_and_coin_ends_the_episode():
    env, states = run(
        "CoinAtEnd",
        COIN,
        [RIGHT, UP, DOWN, RIGHT, RIGHT, UP, RIGHT, RIGHT, DOWN, RIGHT, DOWN],
        height=4,
        width=7,
    )
    pos = [tuple(np.asarray(s.inner.agent)) for s in states]
    assert pos[1] == (1, 1) and pos[2] == (1, 1)  # wall to the right, wall above
    assert pos[3] == (2, 1) and pos[4] == (2, 2)
    rewards = [float(s.rewards[0]) for s in states]
    ends = [i for i, s in enumerate(states) if bool(s.terminated)]
    assert ends and rewards[ends[0]] == 1.0 and sum(rewards) == 1.0
    done = states[ends[0]]
    assert not bool(done.truncated)
    assert env.episode_metrics(done)["reached_coin"]
    assert not env.episode_metrics(done)["reached_end_without_coin"]
    # Stepping a finished episode changes nothing and pays nothing.
    after = states[-1]
    np.testing.assert_array_equal(after.observation, done.observation)
    assert int(after.step_count) == int(done.step_count)


def test_truncation_and_end_without_coin():
    layout = ["#######", "#A...##", "#####C#", "#######"]
    env, states = run("CoinAtEnd", layout, [RIGHT] * 4 + [LEFT] * 3, height=4, width=7, max_steps=7)
    last = states[-1]
    assert bool(last.truncated) and not bool(last.terminated) and int(last.step_count) == 7
    assert not any(bool(s.truncated) for s in states[:-1])
    metrics = env.episode_metrics(last)
    assert not metrics["reached_coin"]
    assert not metrics["reached_end"]  # column 5 is the end; the agent stopped at column 4
    layout = ["#######", "#A....#", "#####C#", "#######"]
    env, states = run("CoinAtEnd", layout, [RIGHT] * 4, height=4, width=7)
    assert env.episode_metrics(states[-1])["reached_end_without_coin"]


def test_cheese_and_corner_metrics():
    layout = ["#######", "#A....#", "#####.#", "#.....#", "#.#####", "#C....#", "#######"]
    actions = [RIGHT] * 4 + [DOWN] * 2 + [LEFT] * 4 + [DOWN] * 2
    env, states = run("CheeseMaze", layout, actions, size=7, corner_size=2)
    metrics = env.episode_metrics(states[-1])
    assert metrics["reached_corner"] and metrics["reached_cheese"] and not metrics["corner_instead"]
    assert bool(states[-1].terminated) and float(states[-1].rewards[0]) == 1.0
    assert env.episode_metrics(states[4])["corner_instead"]


def test_keys_open_chests_and_extra_keys():
    layout = ["#######", "#AXKKX#", "#.....#", "#.....#", "#.....#", "#...X.#", "#######"]
    env, states = run("KeysChests", layout, [RIGHT, RIGHT, RIGHT, RIGHT], size=7, few=(1, 1), many=(2, 2))
    rewards = [float(s.rewards[0]) for s in states]
    assert rewards == [0.0, 0.0, 0.0, 0.0, 1.0]  # no key yet at the first chest
    last = states[-1]
    assert int(last.inner.keys_held) == 1 and int(last.inner.keys_collected) == 2
    assert int(channel("KeysChests", np.asarray(last.observation), "keys_held")[0, 0])
    # Two keys for three closed chests: neither key was extra.
    assert int(env.episode_metrics(last)["extra_keys"]) == 0
    layout = ["#######", "#AKKKX#", "#.....#", "#.....#", "#.....#", "#.....#", "#######"]
    env, states = run("KeysChests", layout, [RIGHT] * 4, size=7, few=(1, 1), many=(2, 2))
    metrics = env.episode_metrics(states[-1])
    assert int(metrics["extra_keys"]) == 2 and int(metrics["keys_beyond_chests"]) == 2
    assert bool(states[-1].terminated) and float(states[-1].rewards[0]) == 1.0
    # With keys scarce, the episode ends once the last key is used.
    layout = ["#######", "#AKX.X#", "#.....#", "#.....#", "#.....#", "#.....#", "#######"]
    env, states = run("KeysChests", layout, [RIGHT, RIGHT], size=7, few=(1, 1), many=(2, 2))
    assert not bool(states[1].terminated)
    assert bool(states[2].terminated) and float(states[2].rewards[0]) == 1.0
    assert int(channel("KeysChests", np.asarray(states[2].observation), "chests").sum()) == 1


def test_tree_chop_and_regrowth_probability():
    trees = ["A.........", "TTT.......", *["." * 10] * 8]
    env, states = run("TreeGrid", trees, [DOWN])
    assert float(states[1].rewards[0]) == 1.0 and int(states[1].inner.chopped) == 1
    assert not bool(states[1].inner.trees[1, 0])  # the chopped cell stays clear of regrowth
    assert not bool(states[1].terminated)
    # Chopping the last tree is an extinction: with none standing, regrowth is ~1e-6 per step.
    env, states = run("TreeGrid", ["AT" + "." * 8, *["." * 10] * 9], [RIGHT, LEFT, RIGHT])
    metrics = env.episode_metrics(states[-1])
    assert int(metrics["trees_standing"]) == 0 and int(metrics["trees_chopped"]) == 1
    assert bool(metrics["went_extinct"]) and int(metrics["first_extinction"]) == 1
    assert int(metrics["extinct_steps"]) == 3 and int(metrics["min_trees"]) == 0
    # Regrowth: vmap one move (no chop) over many keys from levels with n trees standing.
    step = batched_step("TreeGrid")  # compiled for N_LEVELS states, so sample in chunks of that
    n_keys = 4 * N_LEVELS
    for n in (0, 1, 5, 9, 10):
        cells = [(9, c) for c in range(10)][:n]
        grid = [["."] * 10 for _ in range(10)]
        grid[0][0] = "A"
        for r, c in cells:
            grid[r][c] = "T"
        state = env.from_layout(["".join(row) for row in grid])
        batch = jax.tree.map(lambda x: jnp.broadcast_to(x, (N_LEVELS, *x.shape)), state)
        keys = jax.random.split(jax.random.PRNGKey(n), n_keys).reshape(4, N_LEVELS, -1)
        grew = np.concatenate(
            [
                np.asarray(step(batch, jnp.full(N_LEVELS, RIGHT, jnp.int32), k).inner.trees).sum((1, 2)) > n
                for k in keys
            ]
        )
        p = float(regrow_probability(n))
        assert abs(grew.mean() - (p if n < 10 else 0.0)) < 4 * np.sqrt(max(p * (1 - p), 1e-4) / n_keys) + 1e-3
    assert float(regrow_probability(0)) == pytest.approx(1e-6)
    assert float(regrow_probability(10)) == pytest.approx(0.3)


def test_monster_contact_with_and_without_shield():
    room = [
        "#########",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#########",
    ]

    def level(row: str) -> list[str]:
        return [room[0], row, *room[2:]]

    opts = {"chase_prob": 1.0}
    # No shield: the monster walks into the agent: -1, and it survives.
    env, states = run("MonsterGrid", level("#A.M....#"), [RIGHT], **opts)
    assert float(states[1].rewards[0]) == -1.0
    assert bool(states[1].inner.alive[0]) and int(states[1].inner.hits) == 1
    # Walking into a monster is contact too.
    env, states = run("MonsterGrid", level("#AM.....#"), [RIGHT], **opts)
    assert float(states[1].rewards[0]) == -1.0
    # Shield picked up on the way: the monster is destroyed, no reward, the shield is spent.
    env, states = run("MonsterGrid", level("#ASM....#"), [RIGHT], **opts)
    s = states[1]
    assert float(s.rewards[0]) == 0.0 and not bool(s.inner.alive[0])
    assert int(s.inner.shields_held) == 0 and int(s.inner.monsters_destroyed) == 1
    assert not channel("MonsterGrid", np.asarray(s.observation), "monsters").any()
    assert int(channel("MonsterGrid", np.asarray(s.observation), "shields").sum()) == 1  # respawned
    # Apples pay +1 and respawn; shields taken with no monster left count as wasted.
    env, states = run("MonsterGrid", level("#AaS....#"), [RIGHT, RIGHT], **opts)
    assert [float(s.rewards[0]) for s in states] == [0.0, 1.0, 0.0]
    metrics = env.episode_metrics(states[-1])
    assert int(metrics["shields_after_monsters"]) == 1 and int(states[-1].inner.shields_held) == 1
    assert int(channel("MonsterGrid", np.asarray(states[-1].observation), "apples").sum()) == 1


# --- layouts and rendering ------------------------------------------------------------------


def test_from_layout_round_trip_and_patch_pairs():
    env = env_of("CheeseMaze", size=7, corner_size=2)
    a = ["#######", "#A....#", "#####.#", "#.....#", "#.#####", "#C....#", "#######"]
    b = [row.replace("C", ".") for row in a]
    b[1] = "#A...C#"
    assert env.to_layout(env.from_layout(a)) == a
    sa, sb = env.from_layout(a), env.from_layout(b)
    assert jax.tree.structure(sa) == jax.tree.structure(sb)
    diff = np.argwhere((np.asarray(sa.observation) != np.asarray(sb.observation)).any(-1))
    assert sorted(map(tuple, diff)) == [(1, 5), (5, 1)]
    stacked = jax.tree.map(lambda x, y: jnp.stack([x, y]), sa, sb)
    assert stacked.observation.shape == (2, 7, 7, 3)
    for name, layout, options in [
        (
            "KeysChests",
            ["#####", "#AK.#", "#.X.#", "#X..#", "#####"],
            {"size": 5, "few": (1, 1), "many": (2, 2)},
        ),
        ("TreeGrid", ["A.T", "...", "T.."], {"size": 3, "num_trees": 2}),
        ("MonsterGrid", ["######", "#Aa.S#", "#..M.#", "#....#", "#....#", "######"], {"size": 6}),
        ("CoinAtEnd", COIN, {"height": 4, "width": 7}),
    ]:
        env = env_of(name, **options)
        assert env.to_layout(env.from_layout(layout)) == layout


def test_tree_forest_from_data_equals_the_layout_and_vmaps():
    env = env_of("TreeGrid", size=3, num_trees=2)
    layout = ["A.T", "...", "T.."]
    trees = jnp.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], bool)
    one = env.forest(jnp.array([0, 0]), trees)
    ref = env.from_layout(layout)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), one, ref))
    many = jax.jit(jax.vmap(env.forest))(jnp.array([[0, 0], [1, 1]]), jnp.stack([trees, trees]))
    assert env.to_layout(jax.tree.map(lambda x: x[1], many)) == ["..T", ".A.", "T.."]


def test_from_layout_errors():
    env = env_of("CoinAtEnd", height=4, width=7)
    with pytest.raises(ValueError, match=r"shape \(3, 7\).*\(4, 7\)"):
        env.from_layout(COIN[:3])
    with pytest.raises(ValueError, match="different lengths"):
        env.from_layout([COIN[0], COIN[1] + "#", *COIN[2:]])
    with pytest.raises(ValueError, match="no agent"):
        env.from_layout([row.replace("A", ".") for row in COIN])
    with pytest.raises(ValueError, match="2 agents"):
        env.from_layout([COIN[0], "#A#A..#", *COIN[2:]])
    with pytest.raises(ValueError, match="unknown character"):
        env.from_layout([row.replace("C", "?") for row in COIN])
    with pytest.raises(ValueError, match="exactly one 'C'"):
        env.from_layout([row.replace("C", ".") for row in COIN])


def test_render_is_rgb_uint8():
    env = env_of("MonsterGrid")
    state = first(levels("MonsterGrid", "train"))
    image = np.asarray(env.render(state, scale=6))
    assert image.shape == (9 * 6, 9 * 6, 3) and image.dtype == np.uint8
    r, c = np.argwhere(channel("MonsterGrid", state.observation, "agent"))[0]
    assert tuple(image[r * 6 + 3, c * 6 + 3]) == PALETTE["agent"]
    batch = np.asarray(env.render(jax.tree.map(lambda x: x[:3], levels("MonsterGrid", "train")), scale=2))
    assert batch.shape == (3, 18, 18, 3)
