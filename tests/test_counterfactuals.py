"""Counterfactual pairs: one concept removed or added by a minimal legal edit.

Why these tests: a pair is only a clean counterfactual if the concept really flipped and
nothing else did, so every test re-reads the pairs independently of ``verify``: the concept
recomputed, the side to move, finished states, the squares or cells that changed, and the
observation against what the environment itself builds. Configs are tiny (a few games).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.envs import from_boards, make
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.envs.sampling import random_play_states
from rljaxinterp.interp import concepts
from rljaxinterp.interp import counterfactuals as cf


def _boards(states):
    return np.asarray(game_state(states).board)


def _check_board_pairs(env_name, pairs, concept, to):
    values = concepts.compute(env_name, pairs.clean, [concept])[concept]
    after = concepts.compute(env_name, pairs.counterfactual, [concept])[concept]
    assert np.all(np.asarray(values) == (not to)) and np.all(np.asarray(after) == to)
    assert np.array_equal(pairs.clean.current_player, pairs.counterfactual.current_player)
    assert np.array_equal(game_state(pairs.clean).color, game_state(pairs.counterfactual).color)
    assert not np.asarray(pairs.counterfactual.done).any()
    changed = (_boards(pairs.clean) != _boards(pairs.counterfactual)).sum(-1)
    assert np.all(changed == 2)
    # The counterfactual is exactly the state from_boards builds (which rejects illegal boards).
    rebuilt = from_boards(env_name, _boards(pairs.counterfactual), np.asarray(pairs.counterfactual.current_player))
    assert np.array_equal(rebuilt.observation, pairs.counterfactual.observation)
    assert np.array_equal(rebuilt.legal_action_mask, pairs.counterfactual.legal_action_mask)


@pytest.fixture(scope="module")
def ttt_states():
    return random_play_states(make("tic_tac_toe"), 8, 6, jax.random.PRNGKey(1))


@pytest.fixture(scope="module")
def maze():
    env = make("CheeseMaze", size=7, corner_size=2)
    return env, jax.vmap(env.init)(jax.random.split(jax.random.PRNGKey(0), 6))


def test_module_is_an_interp_attribute():
    assert interp.counterfactuals is cf
    assert cf.edits("connect_four") == ["swap_colours", "move_stone", "remove_pair"]
    assert cf.edits("CheeseMaze") == ["move_goal", "move_agent", "nudge_agent"]


def test_tic_tac_toe_pairs_remove_the_opponent_threat(ttt_states):
    concept = "opponent_threatens_win"
    pairs = cf.find_pairs("tic_tac_toe", ttt_states, concept, to=False, key=jax.random.PRNGKey(3))
    had = np.asarray(concepts.compute("tic_tac_toe", ttt_states, [concept])[concept])
    assert pairs.tried == had.sum() and len(pairs) > 0
    assert np.all(had[np.asarray(pairs.index)])
    _check_board_pairs("tic_tac_toe", pairs, concept, False)
    # clean is the input state itself
    assert np.array_equal(pairs.clean.observation, ttt_states.observation[np.asarray(pairs.index)])
    again = cf.find_pairs("tic_tac_toe", ttt_states, concept, to=False, key=jax.random.PRNGKey(3))
    assert np.array_equal(again.index, pairs.index) and np.array_equal(again.operator, pairs.operator)
    assert np.array_equal(again.counterfactual.observation, pairs.counterfactual.observation)


@pytest.mark.slow
def test_connect_four_random_positions_lose_the_opponent_win():
    states = random_play_states(make("connect_four"), 8, 14, jax.random.PRNGKey(1))
    pairs = cf.find_pairs("connect_four", states, "opponent_immediate_win", to=False)
    assert len(pairs) > 0 and 0 < pairs.found_fraction <= 1
    _check_board_pairs("connect_four", pairs, "opponent_immediate_win", False)


def test_connect_four_hand_built_threat_is_removed_by_a_swap_on_its_line():
    # Player 1 (not to move: counts are equal) has three on the bottom row; dropping in
    # column 3 wins. Player 0's three sit on top of them (their fourth square floats).
    board = -np.ones((6, 7), int)
    board[5, :3] = 1
    board[4, :3] = 0
    states = from_boards("connect_four", board[None], current_player=1)
    assert bool(concepts.compute("connect_four", states, ["opponent_immediate_win"])["opponent_immediate_win"][0])
    pairs = cf.find_pairs("connect_four", states, "opponent_immediate_win", to=False, operators="swap_colours")
    assert len(pairs) == 1 and pairs.found_fraction == 1.0 and pairs.operator_names() == ["swap_colours"]
    _check_board_pairs("connect_four", pairs, "opponent_immediate_win", False)
    changed = set(np.flatnonzero(_boards(pairs.clean)[0] != _boards(pairs.counterfactual)[0]).tolist())
    assert len(changed & {35, 36, 37}) == 1 and len(changed & {28, 29, 30}) == 1
    assert int(pairs.counterfactual.current_player[0]) == 1


def test_move_stone_keeps_gravity_in_connect_four():
    board = -np.ones((6, 7), int)
    board[5, :3] = 1
    board[4, :3] = 0
    states = from_boards("connect_four", board[None])
    moved, valid = cf._EDITS["connect_four"]["move_stone"].fn(make("connect_four"), states)
    boards = _boards(moved)[np.asarray(valid)]  # (valid candidates, 42)
    assert len(boards) == 3 * 6  # a top stone of three columns onto six other columns
    assert cf.playable("connect_four", boards).all()


def test_cheese_maze_moving_the_cheese_flips_goal_is_right(maze):
    env, states = maze
    pairs = cf.find_pairs(
        "CheeseMaze", states, "goal_is_right", operators="move_goal", keep=("goal_is_up",), env=env
    )
    assert len(pairs) > 0
    before = concepts.compute("CheeseMaze", pairs.clean, ["goal_is_right", "goal_is_up"])
    after = concepts.compute("CheeseMaze", pairs.counterfactual, ["goal_is_right", "goal_is_up"])
    assert np.all(np.asarray(before["goal_is_right"]) != np.asarray(after["goal_is_right"]))
    assert np.all(np.asarray(pairs.kept)) and np.array_equal(before["goal_is_up"], after["goal_is_up"])
    clean, counter = pairs.clean.inner, pairs.counterfactual.inner
    assert np.array_equal(clean.walls, counter.walls) and np.array_equal(clean.agent, counter.agent)
    assert np.all(np.any(np.asarray(clean.goal) != np.asarray(counter.goal), -1))
    assert not np.asarray(counter.walls)[np.arange(len(pairs)), counter.goal[:, 0], counter.goal[:, 1]].any()
    assert np.array_equal(jax.vmap(env._observe)(counter), pairs.counterfactual.observation)
    clean_obs, counter_obs = pairs.observations()
    assert np.array_equal(clean_obs[..., :2], counter_obs[..., :2])  # walls and agent planes
    assert np.all(cf.changed_cells(pairs.clean, pairs.counterfactual) == 2)


def test_nudging_the_agent_moves_it_one_free_step(maze):
    env, states = maze
    pairs = cf.find_pairs("CheeseMaze", states, "agent_col", operators="nudge_agent", env=env)
    steps = np.abs(np.asarray(pairs.clean.inner.agent) - np.asarray(pairs.counterfactual.inner.agent)).sum(-1)
    assert len(pairs) == len(states.observation) and np.all(steps == 1)
    assert np.array_equal(pairs.clean.inner.goal, pairs.counterfactual.inner.goal)


def test_a_new_concept_gets_pairs_without_new_code(ttt_states):
    concepts.register("tic_tac_toe", "test_cf_corner_0_taken", lambda s: game_state(s).board[..., 0] >= 0,
                      overwrite=True)
    pairs = cf.find_pairs("tic_tac_toe", ttt_states, "test_cf_corner_0_taken", to=True, max_edits=2)
    assert len(pairs) > 0 and np.all(np.asarray(pairs.counterfactual_value))
    assert np.all(_boards(pairs.counterfactual)[:, 0] >= 0)
    assert np.array_equal(pairs.clean.current_player, pairs.counterfactual.current_player)
    assert len(pairs.operators) == 3 + 9  # single edits, then every composition of two


def test_two_edits_reach_what_one_cannot():
    concepts.register("tic_tac_toe", "test_cf_corners_0_8", lambda s: (game_state(s).board[..., [0, 8]] >= 0).all(-1),
                      overwrite=True)
    board = -np.ones(9, int)
    board[4], board[1] = 0, 1  # X in the centre, O on top; both corners empty
    states = from_boards("tic_tac_toe", board[None])
    with pytest.raises(ValueError, match="max_edits=2"):
        cf.find_pairs("tic_tac_toe", states, "test_cf_corners_0_8", to=True, operators="move_stone")
    pairs = cf.find_pairs("tic_tac_toe", states, "test_cf_corners_0_8", to=True, operators="move_stone", max_edits=2)
    assert pairs.operators == ("move_stone", "move_stone+move_stone")
    assert pairs.operator_names() == ["move_stone+move_stone"]
    after = _boards(pairs.counterfactual)[0]
    assert after[0] >= 0 and after[8] >= 0 and sorted(after[after >= 0]) == [0, 1]
    assert cf.changed_cells(pairs.clean, pairs.counterfactual)[0] == 4


def test_verify_catches_an_operator_that_changes_the_side_to_move(ttt_states):
    swap = cf._EDITS["tic_tac_toe"]["swap_colours"].fn

    def bad(env, states):
        cand, valid = swap(env, states)
        return cand.replace(current_player=1 - cand.current_player), valid

    cf.register_edits("tic_tac_toe", "test_cf_bad", bad, changes=2, overwrite=True)
    with pytest.raises(AssertionError, match="changes the player to move"):
        cf.find_pairs("tic_tac_toe", ttt_states, "centre_own", operators="test_cf_bad")


def test_errors_name_the_bad_value_and_the_choices(ttt_states, maze):
    env, states = maze
    with pytest.raises(ValueError, match=r"no edit operators for environment 'chess'.*connect_four"):
        cf.find_pairs("chess", ttt_states, "x")
    with pytest.raises(ValueError, match=r"unknown concept 'threat'.*can_win_now"):
        cf.find_pairs("tic_tac_toe", ttt_states, "threat")
    with pytest.raises(ValueError, match=r"unknown keep concept 'nope'"):
        cf.find_pairs("tic_tac_toe", ttt_states, "can_win_now", keep=["nope"])
    with pytest.raises(ValueError, match=r"unknown edit operator 'flip'.*swap_colours, move_stone"):
        cf.find_pairs("tic_tac_toe", ttt_states, "can_win_now", operators=["flip"])
    with pytest.raises(ValueError, match=r"'corner_balance' .* not binary"):
        cf.find_pairs("tic_tac_toe", ttt_states, "corner_balance", to=True)
    with pytest.raises(ValueError, match=r"tried 6 of 6 states .*move_goal.*available: move_goal, move_agent"):
        cf.find_pairs("CheeseMaze", states, "agent_row", operators="move_goal", env=env)
    with pytest.raises(ValueError, match=r"observations of shape .* pass env="):
        cf.find_pairs("CheeseMaze", states, "goal_is_right")
    with pytest.raises(ValueError, match="max_edits must be 1 or 2"):
        cf.find_pairs("tic_tac_toe", ttt_states, "can_win_now", max_edits=3)


@pytest.mark.slow
def test_keys_chests_agent_moves_to_free_cells_only():
    env = make("KeysChests", size=5)
    states = jax.vmap(env.init)(jax.random.split(jax.random.PRNGKey(2), 4))
    pairs = cf.find_pairs("KeysChests", states, "agent_row", operators="move_agent", env=env)
    assert len(pairs) > 0
    clean, counter = pairs.clean.inner, pairs.counterfactual.inner
    for field in ("walls", "keys", "chests", "keys_held"):
        assert np.array_equal(getattr(clean, field), getattr(counter, field))
    rows, cols = np.asarray(counter.agent).T
    n = np.arange(len(pairs))
    assert not (np.asarray(counter.walls)[n, rows, cols] | np.asarray(counter.keys)[n, rows, cols]
                | np.asarray(counter.chests)[n, rows, cols]).any()
    assert np.array_equal(jax.vmap(env._observe)(counter), pairs.counterfactual.observation)
