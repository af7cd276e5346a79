"""Ground-truth benchmark of interpretability methods."""

import functools

import jax


@functools.partial(jax.jit, static_argnums=0)
def init_params(model, key, example_obs):
    """``model.init(key, example_obs)["params"]`` as one program per architecture: an eager
    init compiles every initialiser op once per shape, dozens of programs per network (the
    values equal eager init's bit for bit on CPU for the bench's MLPs, ResTower and cue model)."""
    return model.init(key, example_obs)["params"]
