"""Probe registry: ``make_probe(name, **kwargs)`` and the list of names ``PROBES``."""

from __future__ import annotations

from typing import Any, Callable

from .mlp import MLPProbe
from .probes import LinearConfProbe, NWProbe, Probe, RawProbe, TemperatureProbe

#: Nadaraya-Watson probes and their inputs (c first, then the auxiliary feature).
NW_FEATURES: dict[str, tuple[str, ...]] = {
    "nw-conf": ("conf",),
    "nw-entropy": ("conf", "entropy"),
    "nw-ragg": ("conf", "r_agg"),
    "ar-condcal": ("conf", "depth_var"),
}

_FACTORIES: dict[str, Callable[..., Probe]] = {
    "raw": RawProbe,
    "temperature": TemperatureProbe,
    "linear-conf": LinearConfProbe,
    **{name: (lambda name=name, **kw: NWProbe(name, NW_FEATURES[name], **kw))
       for name in NW_FEATURES},
    "mlp-full": lambda **kw: MLPProbe("full", **kw),
    "mlp-conf": lambda **kw: MLPProbe("conf", **kw),
    "mlp-shuffled": lambda **kw: MLPProbe("shuffled", **kw),
}

PROBES: tuple[str, ...] = tuple(_FACTORIES)
#: Probes that need a routing trace (skipped for baseline models).
ROUTING_PROBES: tuple[str, ...] = ("nw-ragg", "ar-condcal", "mlp-full", "mlp-shuffled")


def make_probe(name: str, **kwargs: Any) -> Probe:
    """A new, unfitted probe by name. kwargs: NW probes take rule, multiplier, grid, n_folds,
    seed; MLP probes take width, max_epochs, patience, batch_size, lr, seed; linear-conf takes
    max_iter; raw and temperature take none."""
    if name not in _FACTORIES:
        raise ValueError(f"name: unknown probe {name!r}; known: {', '.join(PROBES)}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"kwargs: bad options for probe {name!r}: {exc}") from None
