"""Probe registry: ``make_probe(name, **kwargs)`` and the list of names ``PROBES``.

Besides the registered names, two families are built from a name, so any model-internal trace
can be audited (``arcal.audit``):

* ``nw-<feature>``: the Nadaraya-Watson probe on (c, feature) for any feature a split carries
  (:func:`nw_probe_name` gives the name of the probe pairing c with a feature: the registered
  one where there is one, ``nw-ragg`` for r_agg and ``ar-condcal`` for depth_var);
* ``mlp-<full|conf|shuffled>@<matrix>``: the capacity audit's MLPs on a named per-layer matrix
  (``mlp-full`` is ``mlp-full@H``).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .inputs import NAME_PATTERN, RESERVED_FEATURES
from .mlp import KINDS, MLPProbe
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
#: The registered NW probe that pairs c with each feature (the others are ``nw-<feature>``).
_NW_PAIRS = {inputs[1]: name for name, inputs in NW_FEATURES.items() if len(inputs) == 2}
_MLP_ON = re.compile(r"^mlp-(?P<kind>[a-z]+)@(?P<matrix>.+)$")


def nw_probe_name(feature: str) -> str:
    """Name of the Nadaraya-Watson probe on (c, ``feature``): ``nw-entropy``, ``nw-ragg``
    (r_agg), ``ar-condcal`` (depth_var), else ``nw-<feature>``."""
    if feature in _NW_PAIRS:
        return _NW_PAIRS[feature]
    if feature in RESERVED_FEATURES or not NAME_PATTERN.match(feature):
        raise ValueError(f"feature {feature!r}: no NW probe pairs it with confidence (a reserved "
                         "or malformed name)")
    return f"nw-{feature}"


def nw_features(name: str) -> tuple[str, ...] | None:
    """The inputs of NW probe ``name`` (c first), or None when ``name`` is no NW probe."""
    if name in NW_FEATURES:
        return NW_FEATURES[name]
    feature = name.removeprefix("nw-")
    if (name.startswith("nw-") and NAME_PATTERN.match(feature)
            and feature not in RESERVED_FEATURES):
        return ("conf", feature)
    return None


def is_nw_probe(name: str) -> bool:
    """Whether ``name`` is a Nadaraya-Watson probe (registered or ``nw-<feature>``)."""
    return nw_features(name) is not None


def mlp_probe_name(kind: str, matrix: str = "H") -> str:
    """Name of the capacity-audit MLP of ``kind`` on ``matrix``: ``mlp-<kind>`` for H, else
    ``mlp-<kind>@<matrix>``."""
    if kind not in KINDS:
        raise ValueError(f"kind: unknown MLP probe kind {kind!r}; use one of {KINDS}")
    return f"mlp-{kind}" if matrix == "H" else f"mlp-{kind}@{matrix}"


def make_probe(name: str, **kwargs: Any) -> Probe:
    """A new, unfitted probe by name. kwargs: NW probes take rule, multiplier, grid, n_folds,
    seed; MLP probes take width, max_epochs, patience, batch_size, lr, seed; linear-conf takes
    max_iter; raw and temperature take none. Names: PROBES, ``nw-<feature>`` and
    ``mlp-<kind>@<matrix>`` (module docstring)."""
    if name in _FACTORIES:
        factory: Callable[..., Probe] = _FACTORIES[name]
    elif (features := nw_features(name)) is not None:
        factory = lambda **kw: NWProbe(name, features, **kw)  # noqa: E731
    elif (m := _MLP_ON.match(name)) and m["kind"] in KINDS and NAME_PATTERN.match(m["matrix"]):
        factory = lambda **kw: MLPProbe(m["kind"], matrix=m["matrix"], **kw)  # noqa: E731
    else:
        raise ValueError(f"name: unknown probe {name!r}; known: {', '.join(PROBES)}, "
                         "nw-<feature> and mlp-<full|conf|shuffled>@<matrix>")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"kwargs: bad options for probe {name!r}: {exc}") from None
