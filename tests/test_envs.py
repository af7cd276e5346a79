"""Environment layer: protocol, registry, wrappers and hand-built boards."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pgx
import pytest

from rljaxinterp import envs
from rljaxinterp.envs import registry

KEY = jax.random.PRNGKey(0)

# Compiling every game costs minutes on a small machine, so by default all
# environments are traced (which is what jit and vmap need) and only these
# are compiled and run; RLJAXINTERP_ALL_ENVS=1 compiles and runs them all.
RUN_ENVS = {
    "tic_tac_toe",
    "connect_four",
    "2048",
    "kuhn_poker",
    "CartPole-v1",
    "Breakout-MinAtar",
    "FourRooms-misc",
    "FrozenLake-misc",
}
RUN_ALL = os.environ.get("RLJAXINTERP_ALL_ENVS") == "1"

TTT_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def random_legal(key: jax.Array, mask: jax.Array) -> jax.Array:
    return jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf))


# --- registry ---------------------------------------------------------------


def test_available_lists_required_envs_sorted():
    names = envs.available()
    assert names == sorted(names)
    required = {
        "tic_tac_toe",
        "connect_four",
        "othello",
        "go_9x9",
        "chess",
        "CartPole-v1",
        "Acrobot-v1",
        "Asterix-MinAtar",
        "Breakout-MinAtar",
        "Freeway-MinAtar",
        "SpaceInvaders-MinAtar",
        "Seaquest-MinAtar",
        "FourRooms-misc",
        "MetaMaze-misc",
    }
    assert required <= set(names)
    assert not [n for n in names if n.startswith("minatar-")]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "shogi" else n for n in envs.available()])
def test_every_env_inits_and_steps_batched(name):
    env = envs.make(name)
    assert env.name == name
    assert isinstance(env.num_actions, int) and env.num_actions > 0
    assert isinstance(env.num_players, int) and env.num_players >= 1
    batched = envs.Batched(env, 4)

    def init_and_step(key):
        state = batched.init(key)
        action = jnp.argmax(state.legal_action_mask, -1)  # a legal action
        return state, batched.step(state, action, jax.random.fold_in(key, 1))

    if RUN_ALL or name in RUN_ENVS:
        first, second = jax.jit(init_and_step)(KEY)
        assert not np.isnan(np.asarray(second.observation)).any()
        assert np.asarray(first.legal_action_mask).any(-1).all()
        assert (np.asarray(second.step_count) == 1).all()
        assert not np.asarray(second.terminated & second.truncated).any()
        # Four keys give four independent episodes for randomised starts.
        if name in {"2048", "CartPole-v1", "kuhn_poker"}:
            assert len(np.unique(np.asarray(first.observation).reshape(4, -1), axis=0)) > 1
    else:
        first, second = jax.eval_shape(jax.jit(init_and_step), KEY)
    for state in (first, second):
        assert state.observation.shape == (4, *env.observation_shape)
        assert state.observation.dtype == jnp.float32
        assert state.legal_action_mask.shape == (4, env.num_actions)
        assert state.legal_action_mask.dtype == jnp.bool_
        assert state.rewards.shape == (4, env.num_players)
        assert state.rewards.dtype == jnp.float32
        for flag in (state.terminated, state.truncated):
            assert flag.shape == (4,) and flag.dtype == jnp.bool_
        assert state.current_player.shape == (4,) and state.current_player.dtype == jnp.int32
        assert state.step_count.shape == (4,) and state.step_count.dtype == jnp.int32


def test_unknown_name_lists_every_available_name():
    with pytest.raises(ValueError) as info:
        envs.make("tic_tac_tow")
    message = str(info.value)
    assert "'tic_tac_tow'" in message
    for name in envs.available():
        assert name in message


def test_bad_options_name_the_key_and_the_allowed_ones():
    with pytest.raises(ValueError, match="bogus") as info:
        envs.make("CartPole-v1", bogus=1)
    assert "max_steps_in_episode" in str(info.value)
    assert isinstance(info.value, TypeError)  # what Python raises for unknown keywords
    with pytest.raises(envs.EnvOptionError, match=r"'komi'.*allowed options: none"):
        envs.make("go_9x9", komi=6.5)


def test_options_reach_constructor_and_params():
    assert envs.make("CartPole-v1", max_steps_in_episode=7).params.max_steps_in_episode == 7
    assert envs.make("DeepSea-bsuite", size=5).observation_shape == (5, 5)


def test_register_adds_a_factory(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    envs.register("my-cartpole", lambda **kw: envs.make("CartPole-v1", max_steps_in_episode=3, **kw))
    assert "my-cartpole" in envs.available()
    assert envs.make("my-cartpole").params.max_steps_in_episode == 3
    with pytest.raises(ValueError, match="already registered"):
        envs.register("my-cartpole", lambda: None)


# --- gymnax semantics ----------------------------------------------------------


def test_gymnax_step_on_done_state_is_a_noop():
    env = envs.make("CartPole-v1", max_steps_in_episode=50)
    step = jax.jit(env.step)
    state = env.init(KEY)
    for t in range(50):  # always pushing right topples the pole
        state = step(state, jnp.int32(1), jax.random.PRNGKey(t))
        if state.done:
            break
    assert bool(state.terminated) and not bool(state.truncated)
    assert float(state.rewards[0]) == 1.0  # the finishing step is rewarded
    after = step(state, jnp.int32(0), jax.random.PRNGKey(99))
    assert float(after.rewards[0]) == 0.0
    assert int(after.step_count) == int(state.step_count)
    np.testing.assert_array_equal(after.observation, state.observation)
    for a, b in zip(jax.tree.leaves(after.inner), jax.tree.leaves(state.inner)):
        np.testing.assert_array_equal(a, b)
    assert bool(after.terminated)


def test_outer_flags_are_authoritative_for_pgx():
    env = envs.make("tic_tac_toe")
    state = env.init(KEY).replace(truncated=jnp.bool_(True))
    after = env.step(state, jnp.int32(4), KEY)
    np.testing.assert_array_equal(after.observation, state.observation)
    assert int(after.step_count) == 0 and bool(after.truncated)


# --- AutoReset -------------------------------------------------------------------


def rollout(env: envs.Env, steps: int, key: jax.Array):
    def body(state, key):
        act_key, step_key = jax.random.split(key)
        action = random_legal(act_key, state.legal_action_mask)
        nxt = env.step(state, action, step_key)
        return nxt, (state, nxt)

    state = env.init(key)
    _, (before, after) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(key, steps)))(state)
    return jax.tree.map(np.asarray, before), jax.tree.map(np.asarray, after)


def test_autoreset_tic_tac_toe_in_scan():
    before, after = rollout(envs.Batched(envs.AutoReset(envs.make("tic_tac_toe")), 4), 200, KEY)
    done = after.done
    assert done.sum() > 20 and not after.truncated.any()
    assert not np.isnan(after.observation).any()
    # Rewards appear exactly on finishing steps, zero-sum, and some game is won.
    assert (after.rewards[~done] == 0).all()
    assert (after.rewards.sum(-1) == 0).all()
    assert (np.abs(after.rewards[done]).max(-1) > 0).any()
    # A finishing step returns the next game's empty board ...
    assert (after.observation[done] == 0).all()
    assert (after.step_count[done] == 0).all() and after.legal_action_mask[done].all()
    # ... and keeps the final board, with three in a row or full.
    final = after.final_observation[done]
    assert (final.sum((1, 2, 3)) >= 5).all()
    np.testing.assert_array_equal(after.final_observation[~done], after.observation[~done])
    # The carried done flag does not end the new game: the next step continues it.
    assert (after.step_count[1:][done[:-1]] == 1).all()
    assert (after.step_count[~done] == before.step_count[~done] + 1).all()


def test_autoreset_cartpole_terminates_and_truncates():
    env = envs.AutoReset(envs.make("CartPole-v1", max_steps_in_episode=20))
    before, after = rollout(envs.Batched(env, 4), 200, KEY)
    done = after.done
    assert after.terminated.any() and after.truncated.any()
    assert not (after.terminated & after.truncated).any()
    assert not np.isnan(after.observation).any() and not np.isnan(after.final_observation).any()
    assert (after.rewards == 1.0).all()  # every live step, the finishing one included
    assert (after.step_count[done] == 0).all()
    # Truncation happens at the time limit; termination leaves the safe region,
    # which only the kept final observation shows (the new episode starts near 0).
    assert (before.step_count[after.truncated] == 19).all()
    final = after.final_observation[after.terminated]
    out = (np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 12 * 2 * np.pi / 360)
    assert out.all()
    assert (np.abs(after.observation[done]) <= 0.05).all()


def test_autoreset_over_a_batched_env():
    env = envs.AutoReset(envs.Batched(envs.make("CartPole-v1", max_steps_in_episode=5), 3))
    _, after = rollout(env, 12, KEY)
    assert after.observation.shape == (12, 3, 4)
    assert after.truncated.sum() == 6  # two time limits per copy in 12 steps
    assert (after.step_count[after.done] == 0).all()


# --- tic-tac-toe enumeration -------------------------------------------------------


def winner_of(board) -> int:
    for line in TTT_LINES:
        if board[line[0]] >= 0 and all(board[s] == board[line[0]] for s in line):
            return int(board[line[0]])
    return -1


def witness_game(board) -> list[int]:
    """A move order reaching ``board`` without an earlier win."""
    xs = [s for s in range(9) if board[s] == 0]
    os_ = [s for s in range(9) if board[s] == 1]
    last_mover = xs if len(xs) > len(os_) else os_
    if not last_mover:
        return []
    for last in last_mover:
        earlier = list(board)
        earlier[last] = -1
        if winner_of(earlier) < 0:
            break
    last_mover.remove(last)
    last_mover.append(last)
    return [m for pair in zip(xs, os_ + [None]) for m in pair if m is not None]


def test_tic_tac_toe_reachable_counts():
    states, boards = envs.tic_tac_toe_reachable()
    assert boards.shape == (5478, 9) and boards.dtype == np.int32
    assert len({tuple(b) for b in boards}) == 5478
    assert (boards[0] == -1).all()
    terminated = np.asarray(states.terminated)
    winner = np.array([winner_of(b) for b in boards])
    assert terminated.sum() == 958 and (~terminated).sum() == 4520
    assert (terminated & (winner == 0)).sum() == 626
    assert (terminated & (winner == 1)).sum() == 316
    assert (terminated & (winner < 0)).sum() == 16
    np.testing.assert_array_equal(terminated, (winner >= 0) | (boards >= 0).all(1))
    np.testing.assert_array_equal(states.inner._x.board, boards)
    np.testing.assert_array_equal(states.inner._x.winner, winner)
    assert (np.asarray(states.rewards) == 0).all()


def test_reachable_states_match_real_games():
    states, boards = envs.tic_tac_toe_reachable()
    rng = np.random.default_rng(0)
    terminal = np.flatnonzero(np.asarray(states.terminated))
    sample = np.concatenate(
        [[0], rng.choice(terminal, 100, replace=False), rng.choice(len(boards), 150, replace=False)]
    )
    games = np.full((len(sample), 9), -1)
    for row, i in enumerate(sample):
        moves = witness_game(boards[i])
        games[row, : len(moves)] = moves
    played = envs.from_actions("tic_tac_toe", games, first_player=0)
    plies = (boards[sample] >= 0).sum(1)
    rebuilt = envs.from_boards("tic_tac_toe", boards[sample], current_player=plies % 2)
    expected = jax.tree.map(lambda x: x[sample], states)
    np.testing.assert_array_equal(played.inner._x.board, boards[sample])
    for got in (played, rebuilt):
        np.testing.assert_array_equal(got.observation, expected.observation)
        np.testing.assert_array_equal(got.legal_action_mask, expected.legal_action_mask)
        np.testing.assert_array_equal(got.terminated, expected.terminated)
        np.testing.assert_array_equal(got.step_count, plies)
        np.testing.assert_array_equal(got.inner._x.color, expected.inner._x.color)
        np.testing.assert_array_equal(got.inner._x.winner, expected.inner._x.winner)
    np.testing.assert_array_equal(played.current_player, plies % 2)


# --- from_boards ------------------------------------------------------------


@pytest.mark.parametrize("name, plies, batch", [("tic_tac_toe", 9, 16),
                                               pytest.param("connect_four", 30, 8, marks=pytest.mark.slow)])
def test_from_boards_round_trip_with_pgx(name, plies, batch):
    game = pgx.make(name)

    def body(state, key):
        nxt = jax.vmap(game.step)(state, random_legal(key, state.legal_action_mask))
        return nxt, nxt

    start = jax.vmap(game.init)(jax.random.split(KEY, batch))
    _, traj = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(KEY, plies)))(start)
    flat = jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), traj)
    rows, cols = (3, 3) if name == "tic_tac_toe" else (6, 7)
    boards = flat._x.board.reshape(-1, rows, cols)  # also exercise the 2-D form
    rebuilt = envs.from_boards(name, boards, current_player=flat.current_player)
    assert flat.terminated.any() and not flat.terminated.all()
    np.testing.assert_array_equal(rebuilt.observation, flat.observation)
    np.testing.assert_array_equal(rebuilt.legal_action_mask, flat.legal_action_mask)
    np.testing.assert_array_equal(rebuilt.terminated, flat.terminated)
    np.testing.assert_array_equal(rebuilt.inner._x.color, flat._x.color)
    np.testing.assert_array_equal(rebuilt.inner._x.winner, flat._x.winner)
    # A rebuilt state plays on exactly like the original.
    env = envs.make(name)
    live = np.flatnonzero(~flat.terminated)[:8]
    action = np.argmax(flat.legal_action_mask[live], -1)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, None)))
    ours = step(jax.tree.map(lambda x: x[live], rebuilt), jnp.asarray(action), KEY)
    theirs = jax.jit(jax.vmap(game.step))(jax.tree.map(lambda x: x[live], flat), jnp.asarray(action))
    np.testing.assert_array_equal(ours.observation, theirs.observation)
    np.testing.assert_array_equal(ours.rewards, theirs.rewards)


def c4(rows: list[str]) -> np.ndarray:
    """Connect-four board from six strings of '.', 'x', 'o' (top row first)."""
    return np.array([[{".": -1, "x": 0, "o": 1}[c] for c in row] for row in rows])


@pytest.mark.parametrize(
    "name, board, match",
    [
        ("tic_tac_toe", np.zeros((1, 8)), r"shape \(N, 9\) or \(N, 3, 3\); got \(1, 8\)"),
        ("tic_tac_toe", np.zeros(9), r"got \(9,\)"),
        (
            "tic_tac_toe",
            [[-1, 2, -1, -1, -1, -1, -1, -1, -1]],
            r"boards\[0\] square 1 .* is 2; allowed values: -1",
        ),
        (
            "tic_tac_toe",
            [[-1] * 9, [0, 0, -1, -1, -1, -1, -1, -1, -1]],
            r"boards\[1\] has 2 pieces of player 0",
        ),
        ("tic_tac_toe", [[1, -1, -1, -1, -1, -1, -1, -1, -1]], r"0 pieces of player 0 .* and 1 of player 1"),
        ("tic_tac_toe", [[0, 0, 0, 1, 1, 1, 0, 1, -1]], r"winning lines for both players"),
        (
            "tic_tac_toe",
            [[0, 0, 0, 1, 1, -1, 1, -1, -1]],
            r"winning line for player 0 but the other player moved last",
        ),
        ("connect_four", np.zeros((1, 6, 6)), r"shape \(N, 42\) or \(N, 6, 7\)"),
        (
            "connect_four",
            c4(["......."] * 4 + ["x......", "......o"]),
            r"floating piece at row 4, col 0 \(square 28\)",
        ),
        (
            "connect_four",
            c4(["......."] * 2 + ["x.....x", "xo....x", "xoo...x", "xoooo.x"]),
            r"winning lines for both players",
        ),
        (
            "connect_four",
            c4(["......."] * 2 + ["x.....x", "xo....x", "xooo..x", "xooo..x"]),
            r"no single last move completes",
        ),
        ("chess", np.zeros((1, 64)), r"unknown board game 'chess'; supported: connect_four, tic_tac_toe"),
    ],
)
def test_from_boards_rejects_impossible_boards(name, board, match):
    board = np.asarray(board)
    if name == "connect_four" and board.ndim == 2:
        board = board[None]
    with pytest.raises(ValueError, match=match):
        envs.from_boards(name, board)


def test_from_boards_checks_current_player():
    with pytest.raises(ValueError, match="current_player must be 0 or 1; got 2"):
        envs.from_boards("tic_tac_toe", -np.ones((1, 9)), current_player=2)
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        envs.from_boards("tic_tac_toe", -np.ones((1, 9)), current_player=[0, 1])


def test_counterfactual_pair_differs_in_one_square():
    board = np.array([[0, 1, -1, -1, -1, -1, -1, -1, -1]])  # X to move
    original, changed = envs.counterfactual_pair("tic_tac_toe", board, square=4, value=0)
    diff = np.argwhere(np.asarray(original.inner._x.board != changed.inner._x.board))
    np.testing.assert_array_equal(diff, [[0, 4]])
    # Adding a piece hands the move over, and observations are from the mover's side.
    np.testing.assert_array_equal(original.inner._x.color, [0])
    np.testing.assert_array_equal(changed.inner._x.color, [1])
    np.testing.assert_array_equal(changed.observation[0, :, :, 1].reshape(9), [1, 0, 0, 0, 1, 0, 0, 0, 0])
    # Moving a piece takes two flips and keeps the side to move.
    moved = envs.flip_square(envs.flip_square(board, 1, -1), 2, 1)
    a, b = envs.from_boards("tic_tac_toe", board), envs.from_boards("tic_tac_toe", moved)
    diff = np.argwhere(np.asarray(a.observation != b.observation))
    np.testing.assert_array_equal(diff, [[0, 0, 1, 1], [0, 0, 2, 1]])
    np.testing.assert_array_equal(b.legal_action_mask[0], moved[0] < 0)
    assert board[0, 1] == 1  # flip_square copies
    with pytest.raises(ValueError, match=r"has 2 pieces of player 0 .* and 0 of player 1"):
        envs.counterfactual_pair("tic_tac_toe", board, square=1, value=0)
    with pytest.raises(ValueError, match=r"square must be in \[0, 9\); got 9"):
        envs.flip_square(board, 9, 0)
    with pytest.raises(ValueError, match="value must be one of"):
        envs.flip_square(board, 0, 3)


# --- from_actions -----------------------------------------------------------------


def test_from_actions_fixed_first_player_and_errors():
    start = envs.from_actions("tic_tac_toe", -np.ones((2, 1), int), first_player=1)
    np.testing.assert_array_equal(start.current_player, [1, 1])
    assert (np.asarray(start.observation) == 0).all()
    with pytest.raises(
        ValueError, match=r"\[0\]\[1\] = 4 is illegal there; legal actions: \[0, 1, 2, 3, 5, 6, 7, 8\]"
    ):
        envs.from_actions("tic_tac_toe", [[0, 1, 2, -1, -1, -1], [4, 4, -1, -1, -1, -1]][::-1])
    with pytest.raises(ValueError, match=r"\[1\]\[5\] = 8 comes after the game ended"):
        envs.from_actions("tic_tac_toe", [[0, 3, 1, 4, -1, -1], [0, 3, 1, 4, 2, 8]])
    with pytest.raises(ValueError, match="-1 may only pad the end"):
        envs.from_actions("tic_tac_toe", [[0, -1, 4]])
    with pytest.raises(ValueError, match=r"= 9; allowed: 0..8"):
        envs.from_actions("tic_tac_toe", [[9]])


def test_from_actions_any_env():
    state = envs.from_actions("CartPole-v1", np.ones((3, 5), int))
    assert state.observation.shape == (3, 4)
    np.testing.assert_array_equal(state.step_count, [5, 5, 5])
    assert np.allclose(state.observation, state.observation[0])  # same start, same actions
    # Padding sizes up to reuse compiled replays must not leak into the result.
    short = envs.from_actions("CartPole-v1", np.ones((2, 3), int))
    assert short.observation.shape == (2, 4)
    np.testing.assert_array_equal(short.step_count, [3, 3])
