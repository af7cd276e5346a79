"""What every interp method shares: one sizing option and typed results.

Sizing only bounds the work in flight (memory, cache use, compile count); a result never
depends on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from flax import struct


@dataclasses.dataclass(frozen=True)
class Sizing:
    """How much work goes to the device at once.

    ``states_per_call``: states handed to one jitted call, sharded over the devices (None:
    all; bounds device memory by the chunk, not the data). ``states_per_step``: states one
    vectorised step processes (None: sized so a step stays cache-sized on CPU, wide on
    accelerators). ``patches_per_step``: interventions run together in one vectorised step
    (None: the same budget).
    """

    states_per_call: int | None = None
    states_per_step: int | None = None
    patches_per_step: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            v = getattr(self, field.name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"Sizing.{field.name}={v!r} is not allowed; need None or an integer >= 1")


DEFAULT_SIZING = Sizing()


@struct.dataclass
class SiteEffects(Mapping):
    """Effects indexed by site name, like an activation cache: ``result["block0.conv1.post"]``.

    ``effects[site]``: the effect of intervening on each group of the site, shaped by
    ``granularity``: like the site (``"element"``), by its unit / position / head axes
    (``"unit"``, ``"position"``, ``"head"``); with a trailing state axis when not averaged
    over states; a dict ``{metric name: effect}`` per site when the metric returned a dict.
    """

    effects: dict[str, Any]
    granularity: str = struct.field(pytree_node=False, default="element")

    def __getitem__(self, site: str) -> Any:
        try:
            return self.effects[site]
        except KeyError:
            raise KeyError(f"no effects for site {site!r}; sites: {', '.join(self.effects)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.effects)

    def __len__(self) -> int:
        return len(self.effects)
