"""Named activation sites: the single hook every model calls.

A site is a point of the forward pass with a stable, self-explaining name such as
``"block0.conv1.post"``. At a site the activation is

1. rewritten by an elementwise affine map ``x * gain + bias`` when the read-only
   ``interventions`` collection holds an entry for that site, and then
2. recorded in the ``intermediates`` collection when that collection is mutable.

Interventions are therefore *data* handed to ``Module.apply``; nothing is patched into
the model. With neither collection present a site is the identity, so a model run
without interventions compiles to the same program as the plain Flax model.
"""

from __future__ import annotations

import flax.linen as nn
import jax

CACHE = "intermediates"
INTERVENTIONS = "interventions"


def _keep_last(_, new):
    return new


def site(module: nn.Module, name: str, x: jax.Array) -> jax.Array:
    """Mark ``x`` as the activation site ``<module path>.<name>`` and return it (edited)."""
    if module.has_variable(INTERVENTIONS, name):
        edit = module.get_variable(INTERVENTIONS, name)
        x = x * edit["gain"] + edit["bias"]
    module.sow(CACHE, name, x, init_fn=lambda: None, reduce_fn=_keep_last)
    return x
