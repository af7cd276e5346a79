"""Search trees as data, network vs search, look-ahead labels and the solver's truth."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.agents import AlphaZeroConfig
from rljaxinterp.agents.alphazero import make_agent
from rljaxinterp.agents.common import init_params
from rljaxinterp.envs import boards
from rljaxinterp.eval import minimax
from rljaxinterp.eval.truth import truth, truth_fn
from rljaxinterp.interp import lookahead, search
from rljaxinterp.runs import load_run

SIMS = 24
CONFIG = AlphaZeroConfig(model_kwargs={"hidden": [16]}, num_simulations=8, games=8, replay_size=512)


def b(text: str) -> list[int]:
    """'X.O/...' rows -> flat board (X=0, O=1, .=-1)."""
    return [{"X": 0, "O": 1, ".": -1}[c] for c in text.replace("/", "")]


@pytest.fixture(scope="module")
def ttt():
    """An untrained agent, every live tic-tac-toe position and its tree at SIMS simulations."""
    agent = make_agent(CONFIG)
    params = init_params(agent.model, agent.env.observation_shape, jax.random.PRNGKey(3))
    states, board_rows = boards.tic_tac_toe_reachable()
    live = ~np.asarray(states.terminated)
    states = jax.tree.map(lambda x: x[live], states)
    tree = search.search_trees(agent, params, states, num_simulations=SIMS, keep_states=True)
    return agent, params, states, board_rows[live], tree


def test_visits_add_up(ttt):
    *_, tree = ttt
    visits, child_visits = np.asarray(tree.visits), np.asarray(tree.child_visits)
    assert tree.num_simulations == SIMS
    assert (visits[:, 0] == SIMS + 1).all() and (child_visits[:, 0].sum(-1) == SIMS).all()
    # every node: one visit for its expansion plus its children's visits
    assert (visits == 1 + child_visits.sum(-1)).all()
    # the search's policy target puts no weight on illegal moves
    assert (np.asarray(tree.policy)[~np.asarray(tree.legal)] == 0).all()


def test_depths_and_parents_agree(ttt):
    *_, tree = ttt
    depth, parent, action = (np.asarray(x) for x in (tree.depth, tree.parent, tree.action))
    children = np.asarray(tree.children)
    assert (depth[:, 0] == 0).all() and (depth[:, 1:] >= 1).all()  # one node per simulation
    rows, nodes = np.nonzero(parent >= 0)
    assert (depth[rows, nodes] == depth[rows, parent[rows, nodes]] + 1).all()
    assert (children[rows, parent[rows, nodes], action[rows, nodes]] == nodes).all()
    assert int(depth.max()) <= 9  # no tic-tac-toe line is longer


def test_principal_variation_is_a_legal_line_of_most_visited_children(ttt):
    agent, _, states, _, tree = ttt
    pv, length = np.asarray(tree.pv), np.asarray(tree.pv_length)
    assert (pv[:, 0] == np.asarray(tree.search_move)).all() and (length >= 1).all()
    assert ((pv >= 0).sum(1) == length).all() and (pv[np.arange(len(pv)), np.maximum(length - 1, 0)] >= 0).all()
    line = lookahead.follow(agent.env, states, pv)
    played = np.asarray(line.moves)
    # the line plays the PV move for move until the game ends (a PV never contains an illegal move)
    ended = ~np.asarray(line.alive)[:-1].T  # position before each ply is terminal
    assert ((played == pv) | ended).all()
    # below the root the PV follows the most visited child (ties to the higher prior), and it stops
    # only where the node it reached has no visited child
    node = np.zeros(len(pv), int)
    child_visits, children = np.asarray(tree.child_visits), np.asarray(tree.children)
    prior = np.asarray(tree.prior)
    rows = np.arange(len(pv))
    for d in range(1, pv.shape[1]):
        node = np.where(length > d - 1, children[rows, node, np.maximum(pv[:, d - 1], 0)], node)
        visits = child_visits[rows, node]
        has, ends = length > d, length == d
        most = visits == visits.max(-1, keepdims=True)
        best = np.where(most, prior[rows, node], -1.0).argmax(-1)
        assert (pv[has, d] == best[has]).all()
        assert (visits[ends].max(-1) == 0).all()


def test_node_states_are_the_positions_the_moves_reach(ttt):
    *_, states, _, tree = ttt
    from rljaxinterp.envs.pgx_games import game_state

    node_boards = np.asarray(game_state(tree.states).board)  # (P, N, 9)
    assert (node_boards[:, 0] == np.asarray(game_state(states).board)).all()
    parent, action = np.asarray(tree.parent), np.asarray(tree.action)
    rows, nodes = np.nonzero(parent >= 0)
    diff = node_boards[rows, nodes] != node_boards[rows, parent[rows, nodes]]
    live_parent = ~np.asarray(tree.states.terminated)[rows, parent[rows, nodes]]
    # a child of a live node differs from it in exactly the square its move marks
    assert (diff.sum(-1)[live_parent] == 1).all()
    assert (diff[live_parent, action[rows, nodes][live_parent]]).all()


def test_a_deterministic_tree_is_a_function_of_position_and_parameters(ttt):
    agent, params, states, _, tree = ttt
    other_key = search.search_trees(agent, params, states, num_simulations=SIMS, keep_states=True,
                                    key=jax.random.PRNGKey(99))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(other_key)))
    noisy = search.search_trees(agent, params, states, num_simulations=SIMS, deterministic=False,
                                key=jax.random.PRNGKey(99))
    assert not np.array_equal(np.asarray(noisy.root_visits), np.asarray(tree.root_visits))


def test_values_are_from_the_movers_view(ttt):
    """A move that wins at once is worth +1 to the mover at the root, and the solver's won and
    lost positions get searched values of the right sign on average."""
    *_, states, board_rows, tree = ttt
    value, _, _ = truth("tic_tac_toe", states)
    wins = [(i, a) for i, board in enumerate(board_rows) for a in minimax.legal_moves(tuple(board))
            if minimax.winner(minimax.play(tuple(board), a)) >= 0]
    q, visited = np.asarray(tree.child_q), np.asarray(tree.children) >= 0
    checked = [(i, a) for i, a in wins if visited[i, 0, a]]
    assert len(checked) > 100
    assert all(q[i, 0, a] == 1.0 for i, a in checked)
    search_value = np.asarray(tree.search_value)
    assert search_value[value == 1].mean() > search_value[value == -1].mean() + 0.2


def test_statistics_and_gap_are_consistent(ttt):
    *_, states, board_rows, tree = ttt
    stats = search.tree_statistics(tree)
    assert (np.asarray(stats["max_depth"]) >= np.asarray(stats["pv_length"])).all()  # the PV's last node
    assert np.allclose(np.asarray(stats["top_move_share"]),
                       np.asarray(tree.root_visits).max(-1) / SIMS)
    value, optimal, solved = truth("tic_tac_toe", states)
    sol = minimax.solve()
    rows = [sol.row(x) for x in board_rows]
    assert np.array_equal(value, sol.value[rows]) and np.array_equal(optimal, sol.optimal[rows]) and solved.all()
    gap = search.network_vs_search(tree, value, optimal, solved)
    raw = np.asarray(tree.raw_move)
    assert np.array_equal(gap.raw_optimal, optimal[np.arange(len(raw)), raw])
    s = gap.summary()
    assert s["search_fixes"] - s["search_breaks"] == pytest.approx(
        (s["search_optimal_rate"] - s["raw_optimal_rate"]) * s["solved"], abs=1e-6)
    with pytest.raises(ValueError, match="optimal must have shape"):
        search.network_vs_search(tree, value, optimal[:, :4])


def test_simulations_to_fix_hand_computed():
    optimal = np.array([[True, False], [False, True], [False, True], [True, True]])
    moves = np.array([[0, 0, 0],   # right from the start
                      [0, 1, 1],   # fixed at the second budget
                      [1, 0, 1],   # right, wrong, right: fixed only from the last
                      [0, 1, 0]])
    got = search.simulations_to_fix(moves, optimal, [1, 4, 16])
    assert got.tolist() == [1, 4, 16, 1]
    assert search.simulations_to_fix(np.array([[1, 1]]), np.array([[True, False]]), [1, 2]).tolist() == [-1]
    with pytest.raises(ValueError, match="budgets must increase"):
        search.simulations_to_fix(moves, optimal, [4, 1, 16])


@pytest.mark.parametrize("sims", [0, -3, 2.5, True, "8"])
def test_bad_simulation_counts_are_refused(ttt, sims):
    agent, params, states, *_ = ttt
    with pytest.raises(ValueError, match="num_simulations"):
        search.search_trees(agent, params, states, num_simulations=sims)


def test_terminal_positions_and_agents_without_search_are_refused(ttt):
    agent, params, *_ = ttt
    finished = boards.from_boards("tic_tac_toe", [b("XXX/OO./..."), b("XO./.X./...")])
    with pytest.raises(ValueError, match=r"1 of 2 positions are terminal \(first: index 0\)"):
        search.search_trees(agent, params, finished, num_simulations=4)
    ppo = load_run("tests/fixtures/runs_v1/ppo")
    with pytest.raises(ValueError, match="kind 'ppo', which has no search"):
        search.search_trees(ppo, None, finished, num_simulations=4)


# -- look-ahead labels -----------------------------------------------------------------------------
def test_line_squares_on_hand_built_positions():
    from rljaxinterp import envs

    c4 = envs.make("connect_four")
    empty = boards.from_boards("connect_four", [[-1] * 42, [-1] * 42])
    line = lookahead.follow(c4, empty, [[3, 3, 4, -1], [6, 6, 6, 6]])
    # pieces land from the bottom row (row 5) up: column 3 -> 38, then 31; column 4 -> 39
    assert np.asarray(line.squares).tolist() == [[38, 31, 39, -1], [41, 34, 27, 20]]
    labels = lookahead.square_labels(line)
    assert labels["my_move_two_plies_ahead"][0].tolist() == [39, 27]
    ttt_env = envs.make("tic_tac_toe")
    pos = boards.from_boards("tic_tac_toe", [b("XX./OO./..."), b("XX./OO./...")])
    line = lookahead.follow(ttt_env, pos, [[2, 5, 8], [8, 5, 2]])
    # X wins at once on the first line, so it ends after one ply; on the second O wins at 5
    assert np.asarray(line.squares).tolist() == [[2, -1, -1], [8, 5, -1]]
    assert np.asarray(line.alive).T.tolist() == [[True, False, False, False], [True, True, False, False]]
    # an illegal move ends a line too
    assert np.asarray(lookahead.follow(ttt_env, pos, [[0, 2, 8], [6, 0, 2]]).squares).tolist() == [
        [-1, -1, -1], [6, -1, -1]]


def test_threat_in_two_plies_on_hand_built_positions():
    from rljaxinterp import envs

    env = envs.make("tic_tac_toe")
    # X to move. Line 1: X takes 0, O replies 7 -> X threatens 0-4-8 at 8: a threat. Line 2: X 8, O 0: none
    pos = boards.from_boards("tic_tac_toe", [b(".O./.X./..."), b(".O./.X./...")])
    line = lookahead.follow(env, pos, [[0, 7], [8, 0]])
    threat, defined = lookahead.threat_after("tic_tac_toe", line, 2)
    assert defined.tolist() == [True, True] and threat.tolist() == [True, False]
    c4 = envs.make("connect_four")
    # first mover (0) has two in the bottom row (columns 0-1), second mover two on column 6; 0 to move.
    board = np.full((6, 7), -1)
    board[5, :2], board[5, 6], board[4, 6] = 0, 1, 1
    pos = boards.from_boards("connect_four", [board.reshape(-1)] * 2)
    line = lookahead.follow(c4, pos, [[2, 6], [5, 6]])
    threat, defined = lookahead.threat_after("connect_four", line, 2)
    # after 0 plays column 2 (three in a row, column 3 open) and 1 plays column 6, 0 can win at once
    assert threat.tolist() == [True, False] and defined.tolist() == [True, True]
    with pytest.raises(ValueError, match="even"):
        lookahead.threat_after("connect_four", line, 1)


def test_solver_line_follows_the_preference_among_optimal_moves():
    from rljaxinterp import envs

    env = envs.make("tic_tac_toe")
    # O to move in the first is lost whatever it plays (every move optimal: the lowest free square is 2);
    # in the second O must take an edge (optimal {1, 3, 5, 7})
    pos = boards.from_boards("tic_tac_toe", [b("XX./O../..."), b("X../.O./..X")])
    prefer_low = lambda s: -jnp.arange(9, dtype=jnp.float32)[None].repeat(s.observation.shape[0], 0)
    moves, solved = lookahead.solver_line(env, pos, truth_fn("tic_tac_toe"), prefer_low, 2)
    assert solved.all()
    for row, start in zip(moves, [b("XX./O../..."), b("X../.O./..X")]):
        board = tuple(start)
        for move in row[row >= 0]:
            best = minimax.optimal_moves(board)
            assert move == min(best)  # the preferred (lowest) optimal move
            board = minimax.play(board, int(move))
    assert moves[:, 0].tolist() == [2, 1]


def test_square_probes_find_an_encoded_square_and_not_a_shuffled_one():
    rng = np.random.default_rng(0)
    square = rng.integers(0, 9, 600)
    onehot = np.eye(9)[square]
    noise = rng.normal(size=(600, 6))
    features = {"encodes": np.concatenate([onehot, noise], 1), "noise": noise}
    valid = np.ones(600, bool)
    valid[:50] = False
    res = lookahead.square_probes(features, square, valid)
    assert res.positions == 550 and res.accuracy["encodes"] == 1.0
    assert res.accuracy["noise"] < 0.25 and 0.05 < res.majority < 0.25
    shuffled = lookahead.square_probes(features, square, valid, shuffle_labels=True)
    assert shuffled.accuracy["encodes"] < 0.25
    with pytest.raises(ValueError, match="at least 8"):
        lookahead.square_probes(features, square, np.zeros(600, bool))
    # channel importance: 9 squares x 3 channels, the label written only into channel 1
    spatial = rng.normal(size=(600, 9, 3)) * 0.1
    spatial[:, :, 1] += onehot
    flat = spatial.reshape(600, -1)
    fit = lookahead.square_probes({"grid": flat}, square, valid)
    assert fit.accuracy["grid"] == 1.0
    drops = lookahead.channel_importance(fit, "grid", flat, square, valid, channels=3)
    assert drops[1] > 0.5 and abs(drops[0]) < 0.05 and abs(drops[2]) < 0.05
    with pytest.raises(ValueError, match="not a multiple of 4 channels"):
        lookahead.channel_importance(fit, "grid", flat, square, valid, channels=4)


def test_truth_refuses_games_without_a_solver():
    with pytest.raises(ValueError, match="no solver for 'othello'"):
        truth_fn("othello")


@pytest.mark.slow
def test_search_keeps_the_raw_networks_right_moves_on_a_trained_agent(tmp_path):
    """Where the trained raw network already plays a minimax-optimal move, a long search
    keeps an optimal move, and overall search is right more often than the raw network."""
    from rljaxinterp.findings.agents import tic_tac_toe_config
    from rljaxinterp.runs import train

    train(tic_tac_toe_config("quick"), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    states, _ = boards.tic_tac_toe_reachable()
    states = jax.tree.map(lambda x: x[~np.asarray(states.terminated)], states)
    value, optimal, solved = truth("tic_tac_toe", states)
    tree = search.search_trees(run, run.params(), states, num_simulations=256, max_depth=9)
    gap = search.network_vs_search(tree, value, optimal, solved)
    assert gap.raw_optimal.mean() > 0.5  # the agent learned something
    assert gap.search_optimal[gap.raw_optimal].mean() >= 0.995
    assert gap.search_optimal.mean() > gap.raw_optimal.mean() + 0.1


def test_epsilon_greedy_play_and_unique_states():
    from rljaxinterp import envs
    from rljaxinterp.agents.common import epsilon_greedy
    from rljaxinterp.envs.sampling import random_play_states, unique_states

    env = envs.make("tic_tac_toe")
    lowest = lambda s: jnp.argmax(s.legal_action_mask, axis=-1)  # the lowest legal square
    greedy = random_play_states(env, 16, 9, jax.random.PRNGKey(0), epsilon_greedy(lowest, 0.0))
    # every game is the same (X 0, O 1, X 2, O 3, X 4, O 5, X 6 completes 2-4-6): its 7 live positions
    # repeat in all 16 games (the batch is ordered move by move, 16 games at a time)
    assert len(greedy.observation) == 16 * 7
    distinct = unique_states(greedy)
    assert len(distinct.observation) == 7
    np.testing.assert_array_equal(np.asarray(distinct.observation), np.asarray(greedy.observation[::16]))
    mixed = unique_states(random_play_states(env, 16, 9, jax.random.PRNGKey(0), epsilon_greedy(lowest, 0.5)))
    assert len(mixed.observation) > 7
    with pytest.raises(ValueError, match="epsilon=1.5"):
        epsilon_greedy(lowest, 1.5)


@pytest.mark.slow  # a CLI end to end (about 10 s); keeps `make test` under 10 minutes
def test_cli_search_draws_trees_and_refuses_runs_without_search(tmp_path, capsys):
    import json

    from rljaxinterp.cli import main

    out = tmp_path / "trees"
    assert main(["search", "tests/fixtures/runs_v1/alphazero", "--moves", "0,4", "", "--simulations", "8",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["positions"] == 2 and summary["versus_solver"]["solved"] == 2
    assert (out / "trees.png").stat().st_size > 0
    assert "position 1: raw move" in capsys.readouterr().out
    with pytest.raises(ValueError, match="kind 'ppo', which has no search"):
        main(["search", "tests/fixtures/runs_v1/ppo", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="terminal"):
        main(["search", "tests/fixtures/runs_v1/alphazero", "--moves", "0,3,1,4,2", "--out", str(tmp_path / "y")])
