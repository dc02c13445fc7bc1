"""MLP probes of the capacity audit (docs/methods.md, "Probes"): mlp-full, mlp-conf, mlp-shuffled.

Architecture: input -> Linear(width) -> ReLU -> Linear(width) -> ReLU -> Linear(1), trained with
binary cross-entropy on z, Adam (lr 1e-3), mini-batches of 256, early stopping on a held-out fifth
of the calibration split (patience 20 epochs, best validation weights restored), CPU, float64,
seeded (initialisation, split and batch order), inputs standardised with the fitting part's mean
and std. Parameter count: (d+1)w + (w+1)w + (w+1) = w^2 + (d+3)w + 1.

* ``mlp-full``: inputs (c, H_1..H_L);
* ``mlp-conf``: input c alone; its width is the integer w' minimising the parameter-count
  difference to ``mlp-full`` on the same calibration split (L taken from it), and fit refuses a
  match worse than 5%;
* ``mlp-shuffled``: ``mlp-full`` with the routing rows H permuted across examples, in the
  calibration split at fit time and in every split at predict time (seeded), so c keeps its
  information and H loses its link to the example.

``matrix`` names the per-layer matrix the probes read instead of H (``ProbeInputs.matrix``), so
the same audit runs on any per-layer trace, e.g. attention entropies (``mlp-full@A``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ._validate import check_int
from .inputs import ProbeInputs
from .logistic import clip_prob
from .probes import Probe

if TYPE_CHECKING:  # torch is imported when an MLP is fitted (it takes ~1.5 s to import)
    import torch
    from torch import nn

KINDS = ("full", "conf", "shuffled")


def mlp_param_count(d_in: int, width: int) -> int:
    """Parameters of the 2-hidden-layer MLP: w^2 + (d + 3) w + 1."""
    return width * width + (d_in + 3) * width + 1


def matched_width(target: int, d_in: int = 1) -> int:
    """Width w >= 1 whose parameter count with ``d_in`` inputs is closest to ``target``."""
    w = (-(d_in + 3) + math.sqrt((d_in + 3) ** 2 + 4 * (target - 1))) / 2
    cands = {max(1, math.floor(w)), max(1, math.ceil(w))}
    return min(sorted(cands), key=lambda c: abs(mlp_param_count(d_in, c) - target))


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (restored afterwards): for networks this small, thread
    synchronisation costs more than it saves (20x slower with 2 threads on a busy 2-core CPU)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _network(d_in: int, width: int) -> "nn.Sequential":
    from torch import nn

    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 1)).double()


class MLPProbe(Probe):
    """MLP probe of P(z = 1 | inputs); see the module docstring. Output clipped to
    [1e-6, 1 - 1e-6]."""

    def __init__(self, kind: str = "full", width: int = 64, max_epochs: int = 300,
                 patience: int = 20, batch_size: int = 256, lr: float = 1e-3,
                 seed: int = 0, matrix: str = "H") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: unknown MLP probe kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.matrix = matrix
        self.name = f"mlp-{kind}" if matrix == "H" else f"mlp-{kind}@{matrix}"
        self.width = check_int(width, "width", 1)
        self.max_epochs = check_int(max_epochs, "max_epochs", 1)
        self.patience = check_int(patience, "patience", 1)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.lr = lr
        self.seed = check_int(seed, "seed", 0)
        self.net_: "nn.Sequential | None" = None
        self.width_: int | None = None
        self.history_: list[float] = []

    def _design(self, inputs: ProbeInputs, stream: int) -> np.ndarray:
        c = inputs.conf[:, None]
        if self.kind == "conf":
            return c
        H = inputs.matrix(self.matrix)
        if H is None:
            raise ValueError(f"H: {self.name} needs the per-consumer routing entropies (L >= 1); "
                             "this split has none (baseline model?)")
        if self.kind == "shuffled":
            rng = np.random.default_rng([self.seed, stream])
            H = H[rng.permutation(inputs.n)]
        return np.column_stack([c, H])

    def fit(self, train: ProbeInputs) -> "MLPProbe":
        import torch

        train = self._check_inputs(train, "train")
        if train.n < 10:
            raise ValueError(f"train: {self.name} needs at least 10 calibration examples")
        x = self._design(train, stream=0)
        if self.kind == "conf":
            M = train.matrix(self.matrix)
            L = 0 if M is None else M.shape[1]
            target = mlp_param_count(1 + L, self.width)
            self.width_ = matched_width(target, 1)
            got = mlp_param_count(1, self.width_)
            if abs(got - target) > 0.05 * target:
                raise ValueError(f"width: no mlp-conf width matches mlp-full's {target} "
                                 f"parameters within 5% (best {got}); use a larger width")
        else:
            self.width_ = self.width
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(train.n)
        n_val = max(1, train.n // 5)
        val, fit = perm[:n_val], perm[n_val:]
        self.mean_ = x[fit].mean(axis=0)
        sd = x[fit].std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        xs = torch.from_numpy((x - self.mean_) / self.scale_)
        z = torch.from_numpy(train.correct)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _network(x.shape[1], self.width_)
        gen = torch.Generator().manual_seed(self.seed)
        # foreach: one kernel per step for all six tensors (same arithmetic, fewer dispatches)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, foreach=True)
        with _one_thread():
            self.net_ = self._train(net, opt, xs[fit], z[fit], xs[val], z[val], gen)
        return self

    def _train(self, net: "nn.Sequential", opt: "torch.optim.Optimizer", x_fit: "torch.Tensor",
               z_fit: "torch.Tensor", x_val: "torch.Tensor", z_val: "torch.Tensor",
               gen: "torch.Generator") -> "nn.Sequential":
        """Mini-batch Adam with early stopping; returns the net with the best validation loss."""
        import torch
        from torch import nn

        loss_fn = nn.BCEWithLogitsLoss()
        best, best_state, waited = math.inf, None, 0
        self.history_ = []
        for _ in range(self.max_epochs):
            net.train()
            order = torch.randperm(x_fit.shape[0], generator=gen)
            for s in range(0, x_fit.shape[0], self.batch_size):
                b = order[s:s + self.batch_size]
                opt.zero_grad()
                loss_fn(net(x_fit[b])[:, 0], z_fit[b]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                v = float(loss_fn(net(x_val)[:, 0], z_val))
            self.history_.append(v)
            if v < best - 1e-7:
                best, waited = v, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                waited += 1
                if waited >= self.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        return net

    def predict(self, inputs: ProbeInputs) -> np.ndarray:
        import torch

        inputs = self._check_inputs(inputs, "inputs")
        self._check_fitted("net_")
        x = self._design(inputs, stream=1)
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"{self.matrix}: {x.shape[1] - 1} columns, the probe was fitted on "
                             f"{self.mean_.shape[0] - 1}")
        with torch.no_grad(), _one_thread():
            logit = self.net_(torch.from_numpy((x - self.mean_) / self.scale_))[:, 0].numpy()
        return clip_prob(1.0 / (1.0 + np.exp(-logit)))

    @property
    def n_params(self) -> int:
        self._check_fitted("net_")
        return int(sum(p.numel() for p in self.net_.parameters()))
