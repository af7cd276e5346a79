"""Tier 4 of the benchmark zoo: the SIIT MLP trained on shuffled targets.

Each SIIT network (``siit``) gets a twin of the same architecture, width and seed trained by
the behaviour loss alone on targets permuted across the live positions: it fits the same
label distribution but no rule of the game, so whatever it computes is not the causal graph.
It is the second control of the issue (the first is the untrained network), and the one the
"sanity checks for saliency maps" call the data randomisation test (Adebayo et al. 2018): a
method whose answer is the same on the network and on its shuffled-target twin reads the
architecture or the input, not what the network learned. The leaderboard scores circuit
methods on it against the SIIT truth (a method should be at chance), attribution maps by
their rank correlation with the twin's maps, and probes by their F1 on the twin.

Shuffled labels are memorised, not learned: ``memorised`` is the share of positions whose
argmax is the shuffled label, ``rule_accuracy`` the share that follows the real graph (chance
level for a network that learned nothing about the rules).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rljaxinterp.bench import init_params, siit

STEPS, BATCH, LR = 4000, 512, 3e-3
PERMUTATION_SEED = 2000  # the targets of seed k are permuted with PERMUTATION_SEED + k


@dataclasses.dataclass(frozen=True)
class Twin:
    trained: siit.Trained  # the shuffled-target network (same width and seed as its SIIT network)
    targets: np.ndarray  # (live positions,) the shuffled classes it was trained on
    memorised: float  # share of positions whose argmax is its shuffled target
    rule_accuracy: float  # share whose argmax is the graph's real output


def shuffled_targets(seed: int) -> np.ndarray:
    """The graph's output class of every live position, permuted across positions."""
    classes = np.asarray(siit.high_level(jnp.asarray(siit.live_obs())))
    return classes[np.random.default_rng(PERMUTATION_SEED + seed).permutation(len(classes))]


def train(width: int, seed: int, steps: int = STEPS) -> Twin:
    """Adam on the cross-entropy to the shuffled targets over minibatches of ``BATCH`` live
    positions, from the same initialisation key as the SIIT network of this seed; one jitted
    scan, so deterministic given the seed."""
    model = siit.make_model(width)
    obs = jnp.asarray(siit.live_obs())
    targets = shuffled_targets(seed)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = init_params(model, init_key, obs[:1])
    opt = optax.adam(LR)
    y = jnp.asarray(targets)

    def loss(p, idx):
        logits = model.apply({"params": p}, obs[idx]).logits
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[idx][:, None], -1).mean()

    def step(carry, key):
        p, state = carry
        grads = jax.grad(loss)(p, jax.random.randint(key, (BATCH,), 0, obs.shape[0]))
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    t0 = time.perf_counter()
    run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(data_key, steps))[0][0])
    params = jax.block_until_ready(run(params))
    train_s = time.perf_counter() - t0
    moves = np.argmax(np.asarray(model.apply({"params": params}, obs).logits), -1)
    real = np.asarray(siit.high_level(obs))
    return Twin(siit.Trained(width, seed, model, params, train_s), targets,
                memorised=float(np.mean(moves == targets)), rule_accuracy=float(np.mean(moves == real)))


def chance_accuracy(seed: int) -> float:
    """The rule accuracy of a network that ignores the board and answers with the shuffled
    labels' class frequencies: sum over classes of p(class)^2."""
    p = np.bincount(shuffled_targets(seed), minlength=siit.N_CLASSES) / len(siit.live_obs())
    return float(np.sum(p ** 2))
