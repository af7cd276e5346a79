"""The findings machinery: null draws, p-values, corrections, intervals, conclusion rules on a
hand-set network with a planted direction, stamped reports and seeded agent sets."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from rljaxinterp import findings
from rljaxinterp.models import make_model

HIDDEN, ACTIONS, PLANTED_UNIT = 64, 3, 5


# -- p-values, corrections, intervals ----------------------------------------------------------
def test_empirical_p_counts_draws_at_least_as_extreme():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert findings.empirical_p(0.3, null, "greater") == pytest.approx((1 + 2) / 5)
    assert findings.empirical_p(0.3, null, "less") == pytest.approx((1 + 3) / 5)
    assert findings.empirical_p(9.0, null, "greater") == pytest.approx(1 / 5)  # never 0
    # two-sided: distance from the null median 0.25
    assert findings.empirical_p(0.25, null, "two-sided") == pytest.approx(1.0)
    assert findings.percentile(0.3, null) == pytest.approx(100 * (2 + 0.5) / 4)
    per_test = findings.empirical_p(np.array([0.0, 1.0]), np.stack([null, null], 1))
    assert per_test.tolist() == pytest.approx([1.0, 0.2])


def test_holm_and_bh_match_their_definitions():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    order = np.argsort(p)
    m = p.size
    holm = np.empty(m)
    holm[order] = np.minimum(1, np.maximum.accumulate([(m - i) * p[j] for i, j in enumerate(order)]))
    bh = np.empty(m)
    bh[order] = np.minimum.accumulate([p[j] * m / (i + 1) for i, j in enumerate(order)][::-1])[::-1]
    np.testing.assert_allclose(findings.correct(p, "holm"), holm)
    np.testing.assert_allclose(findings.correct(p, "bh"), bh)
    np.testing.assert_allclose(findings.correct(p, "none"), p)
    # a row per agent, corrected along the tests
    np.testing.assert_allclose(findings.correct(np.stack([p, p[::-1]]), "holm", axis=1)[1], holm[::-1])
    assert findings.correct(p, "bh").max() <= 1 and (findings.correct(p, "holm") >= findings.correct(p, "bh")).all()


def test_required_draws_is_the_fewest_that_can_reach_alpha():
    n = findings.required_draws(14, 0.05, "holm")
    assert 14 / (1 + n) <= 0.05 < 14 / n
    assert findings.required_draws(1, 0.05, "none") == 19


def test_t_interval_matches_scipy_and_bootstrap_is_seeded():
    values = [0.12, 0.31, 0.2, 0.05]
    iv = findings.interval(values, "t")
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (iv.low, iv.high) == pytest.approx((low, high))
    assert iv.values == tuple(values) and "t-interval" in iv.method
    a, b = findings.interval(values, "bootstrap", seed=3), findings.interval(values, "bootstrap", seed=3)
    assert a == b and min(values) <= a.low <= a.mean <= a.high <= max(values)
    single = findings.interval([0.4])
    assert single.mean == 0.4 and math.isnan(single.low) and "no interval" in str(single)
    assert findings.fmt_interval(values) == findings.fmt_interval(iv) == str(iv)  # values or their interval


@pytest.mark.parametrize("call, message", [
    (lambda: findings.empirical_p(0.0, [0.1], "bigger"), "alternative='bigger'"),
    (lambda: findings.correct([0.1, 1.5]), "must lie in"),
    (lambda: findings.correct([0.1], "bonferroni"), "correction='bonferroni'"),
    (lambda: findings.interval([1.0, float("nan")]), "NaN"),
    (lambda: findings.interval([1.0, 2.0], "wald"), "'wald'"),
    (lambda: findings.Rule("x", min_effect=-1), "min_effect=-1"),
    (lambda: findings.Rule("x", min_effect=0.1, agreement=1.5), "agreement=1.5"),
    (lambda: findings.Rule("x", min_effect=0.1, direction="down"), "direction='down'"),
    (lambda: findings.evidence(np.zeros((3, 2)), np.zeros((3, 10, 4))), "expected (agents, draws, tests)"),
    (lambda: findings.random_units(jax.random.key(0), 4, 3, 2, exclude=[0, 1]), "k=3"),
    (lambda: findings.update_block("/tmp/x.md", "bad key", "t"), "'bad key'"),
    (lambda: findings.tic_tac_toe_config("medium"), "tier='medium'"),
])
def test_bad_values_are_named(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        call()


def test_null_samplers_are_seeded_and_shaped():
    like = jnp.arange(6.0).reshape(2, 3)
    d = findings.random_directions(jax.random.key(1), like, 5)
    assert d.shape == (5, 2, 3)
    np.testing.assert_allclose(jnp.linalg.norm(d.reshape(5, -1), axis=1), jnp.linalg.norm(like), rtol=1e-5)
    assert jnp.array_equal(d, findings.random_directions(jax.random.key(1), like, 5))
    units = findings.random_units(jax.random.key(2), 10, 3, 4, exclude=[0, 1])
    assert units.shape == (4, 3) and all(len(set(r)) == 3 and not {0, 1} & set(r) for r in units.tolist())
    labels = jnp.arange(8)
    shuffled = findings.shuffled_labels(jax.random.key(3), labels, 2)
    assert all(sorted(row.tolist()) == list(range(8)) for row in shuffled)
    draws = findings.draw_null(lambda k: jax.random.normal(k), jax.random.key(4), 6, batch=4)
    assert draws.shape == (6,) and np.array_equal(draws, findings.draw_null(lambda k: jax.random.normal(k),
                                                                              jax.random.key(4), 6))


# -- the rule on a hand-set network with a planted direction -----------------------------------
MODEL = make_model("mlp", ACTIONS, (4,), hidden=[HIDDEN])
INIT = jax.jit(lambda key, obs: MODEL.init(key, obs)["params"])


def planted_network(seed):
    """An MLP whose policy reads only hidden unit PLANTED_UNIT (action 0's logit is that unit):
    steering along that unit moves P(action 0); a random direction of equal norm mostly misses it."""
    model = MODEL
    obs = jax.random.normal(jax.random.key(100 + seed), (32, 4))
    params = INIT(jax.random.key(seed), obs)
    kernel = jnp.zeros((HIDDEN, ACTIONS)).at[PLANTED_UNIT, 0].set(1.0)
    params = {**params, "policy_head": {"kernel": kernel, "bias": jnp.zeros(ACTIONS)}}
    return model, params, obs


def prob_change(steered, base):
    return jnp.mean(jax.nn.softmax(steered.logits)[:, 0] - jax.nn.softmax(base.logits)[:, 0])


RULE = findings.Rule("steering along the direction raises P(action 0)", min_effect=0.2, direction="increase",
                     alpha=0.05, agreement=1.0, min_agents=3, correction="holm")


def judge(make_direction, draws=59):
    observed, null = [], []
    for seed in range(3):
        model, params, obs = planted_network(seed)
        o, n = findings.steering_null(model, params, obs, "layer0.post", make_direction(seed), prob_change,
                             jax.random.key(seed), draws, coefficient=1.0, batch=20)
        observed.append(o)
        null.append(n)
    ev = findings.evidence(np.array(observed), np.array(null), alternative=RULE.alternative,
                           correction=RULE.correction)
    return RULE.judge(ev), ev


def test_rule_finds_the_planted_direction():
    conclusion, ev = judge(lambda s: 3.0 * jnp.eye(HIDDEN)[PLANTED_UNIT])
    assert conclusion.holds and conclusion.text.startswith(findings.EFFECT)
    assert (ev.p_adjusted <= 1 / 60 + 1e-12).all() and (ev.percentile == 100).all()
    assert ev.effect.min() >= RULE.min_effect


def test_rule_says_no_effect_for_a_zero_vector():
    conclusion, ev = judge(lambda s: jnp.zeros(HIDDEN))
    assert not conclusion.holds and conclusion.text.startswith(findings.NO_EFFECT)
    assert (ev.observed == 0).all() and (ev.p == 1).all()


def test_rule_says_no_effect_for_a_random_direction():
    random = lambda s: 3.0 * findings.random_directions(jax.random.key(50 + s), jnp.ones(HIDDEN), 1)[0] / 8.0
    conclusion, ev = judge(random)
    assert not conclusion.holds and conclusion.text.startswith(findings.NO_EFFECT)
    assert (np.abs(ev.effect) < RULE.min_effect).all()


def test_rule_needs_enough_agents_and_agreement():
    observed = np.array([[0.5], [0.5], [0.0]])  # the third agent shows nothing
    null = np.zeros((3, 99, 1))
    ev = findings.evidence(observed, null, alternative="greater", correction="holm")
    assert not RULE.judge(ev).holds
    assert dataclasses.replace(RULE, agreement=0.6).judge(ev).holds
    two = findings.evidence(observed[:2], null[:2], alternative="greater", correction="holm")
    assert "only 2 agents" in RULE.judge(two).text
    few = findings.evidence(np.full((3, 14), 0.5), np.zeros((3, 99, 14)), alternative="greater")
    assert "need >= 279 draws" in RULE.judge(few).text
    with pytest.raises(ValueError, match="needs 'greater'"):
        RULE.judge(findings.evidence(observed, null, alternative="less"))


def test_steering_null_is_bit_identical_for_a_seed():
    model, params, obs = planted_network(0)
    run = lambda: findings.steering_null(model, params, obs, "layer0.post", jnp.ones(HIDDEN), prob_change,
                                jax.random.key(7), 30, batch=16)
    (o1, n1), (o2, n2) = run(), run()
    assert o1 == o2 and np.array_equal(n1, n2) and n1.shape == (30,)


def test_a_shared_null_of_one_test_may_come_without_its_test_axis():
    """(draws,) for observed (agents, 1) or (agents,): the same evidence as (draws, 1)."""
    rng = np.random.default_rng(0)
    observed, null = rng.normal(size=3) + 2.0, rng.normal(size=50)
    a = findings.evidence(observed, null, ["one"], "greater", "holm")
    b = findings.evidence(observed[:, None], null[:, None], ["one"], "greater", "holm")
    assert np.array_equal(a.p, b.p) and np.array_equal(a.effect, b.effect) and a.p.shape == (3, 1)
    assert np.allclose(a.effect[:, 0], observed - null.mean())


# -- reports -----------------------------------------------------------------------------------
def test_report_is_stamped_and_rewrites_only_its_readme_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Experiments\n\nhand-written text\n")
    ev = findings.evidence(np.array([[0.5], [0.4], [0.6]]), np.zeros((3, 99, 1)), alternative="greater")
    for value in ("first", "second"):
        report = findings.Report("Planted", seeds=(0, 1, 2), tier="quick")
        report.add(f"run {value}")
        report.finding(RULE, ev, "planted")
        report.write(tmp_path / value, readme, "planted.quick")
    text = readme.read_text()
    assert text.startswith("# Experiments\n\nhand-written text\n") and text.count("<!-- findings:planted.quick -->") == 1
    assert "quick tier, seeds [0, 1, 2]" in text and findings.EFFECT in text
    data = json.loads((tmp_path / "second" / "results.json").read_text())
    assert {"commit", "seeds", "wall_time_s", "platform", "cpus", "backend"} <= set(data["stamp"])
    assert data["findings"]["planted"]["holds"] is True
    md = (tmp_path / "second" / "report.md").read_text()
    assert "run second" in md and "| `0` |" in md and "per agent" in md


def test_seeded_runs_needs_a_seed_field():
    @dataclasses.dataclass(frozen=True)
    class NoSeed:
        env: str = "x"

    with pytest.raises(ValueError, match="no seed field"):
        findings.seeded_runs(NoSeed(), "/tmp/unused", 2)
    @dataclasses.dataclass(frozen=True)
    class Seeded:
        seed: int = 0

    with pytest.raises(ValueError, match="distinct"):
        findings.seeded_runs(Seeded(), "/tmp/unused", seeds=[1, 1])


@pytest.mark.slow
def test_seeded_runs_train_once_and_are_reused(tmp_path):
    from rljaxinterp.runs import default_config

    config = default_config("dqn", "CartPole-v1", total_timesteps=1_000, learning_starts=500, checkpoint_every=2)
    agents = findings.seeded_runs(config, tmp_path, n=2, first_seed=3, progress=False)
    assert agents.seeds == (3, 4) and [r.config.seed for r in agents] == [3, 4]
    assert [r.folder.name for r in agents] == ["seed3", "seed4"]
    stamps = [(r.folder / "metrics.jsonl").stat().st_mtime_ns for r in agents]
    again = findings.seeded_runs(config, tmp_path, n=2, first_seed=3, progress=False)
    assert [(r.folder / "metrics.jsonl").stat().st_mtime_ns for r in again] == stamps  # reused, not retrained
    p0, p1 = (jax.tree.leaves(r.params()) for r in agents)
    assert any(not np.array_equal(a, b) for a, b in zip(p0, p1))
