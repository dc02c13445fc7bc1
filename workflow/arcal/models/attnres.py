"""Attention Residuals: the depth mixer, Full/Block source bookkeeping and routing capture.

Attention Residuals (Kimi Team, arXiv 2603.15031) replace the residual sum of a pre-norm
transformer by a softmax over depth (docs/attnres.md, "The mechanism"). For consumer l with
sources v_0 (the embedding) ... v_{n-1}:

    a_i = softmax_i( w_l . RMSNorm_g(v_i) ),      h_l = sum_i a_i v_i,

with a learnable 1-D pseudo-query ``w_l`` (zero at init, so the weights start uniform) and an
RMSNorm with learnable gain ``g`` on the keys. The values are sub-layer outputs ("deltas").
*Full* AttnRes uses every earlier sub-layer output as a source; *Block* AttnRes groups
``block_size`` consecutive sub-layers into blocks, uses the finished block sums as sources, plus
the partial sum of the current block when it is non-empty (the first layer of a block sees none).
The embedding is always source 0; an output mixer combines all sources before the final norm.

Depth coordinates (for the routing-depth variance, docs/methods.md): sources are always numbered
0, 1, ..., n-1 in order, which is
* Full: the sub-layer index (embedding 0, attention of block k is 2k+1, its MLP 2k+2, counting
  blocks from 0);
* Block: the block index (embedding 0, finished block n -> n, the current block's partial sum ->
  its own block index);
* Swin stage-local: the same, within the stage, with 0 = the stage input.

Memory and time (docs/attnres.md, "Memory and speed"): a stream copies each finished source once
into a :class:`SourceBank` (sources x tokens x d, fp32), which is then the only copy the routing
keeps; the source is scored there against the folded queries of all its later consumers (gain
folded into the query) together with its fp32 inverse RMS. A consumer's weighted sum reads the
bank's first k sources; its backward pass is one batched matrix product (the weight gradients) and
one in-place update of the bank's gradient block, and saves only the (n, tokens) weights. No
per-consumer stack of the sources is formed or saved.

Precision: the logits, the depth softmax and the weighted sum are computed in float32 (float64
for float64 sources) whatever the dtype of the sources and whatever autocast is active. Under
bf16 autocast a matrix product would otherwise be recast to bf16 (logit errors of about 0.04 at
logits near 4), and the mixing weights are the study's features. The routing's matrix products
(the logits and their gradients) therefore run with autocast disabled (:func:`_routing_precision`);
the softmax and the weighted sum are elementwise, which autocast leaves alone, and take fp32
logits and weights. The sources themselves (the sub-layer outputs) keep the dtype the network
computes them in (bf16 under autocast).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from arcal.routing import RoutingBatch, depth_variance, normalised_entropy, uniform_variance

__all__ = [
    "RESIDUALS",
    "AttnResBackbone",
    "DepthMixer",
    "DepthStream",
    "RoutingTrace",
    "consumer_source_counts",
    "routing_capture",
    "stack_block_size",
]


def _routing_precision(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``t``'s device, so a matrix product runs in the dtype it is given.

    Entering an autocast context costs about 10 us of Python, so where autocast is already off
    (evaluation, CPU training, the backward pass on the GPU) this is a no-op context.
    """
    device = t.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()


def inverse_rms(v: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(mean(v^2) + eps)`` over the channel (last) axis, in fp32 (float64 for float64
    ``v``); shape ``v.shape[:-1]``."""
    acc = torch.promote_types(v.dtype, torch.float32)
    return torch.rsqrt(torch.linalg.vector_norm(v, dim=-1, dtype=acc).square() / v.shape[-1] + eps)


class SourceBank:
    """The finished sources of one stream in one buffer, and the gradient they accumulate.

    ``values`` is (n, ..., d) in fp32 (float64 for float64 sources), source i in ``values[i]``, so
    the first k sources of a consumer are one contiguous block and its backward pass is one batched
    matrix product and one in-place update over that block (docs/attnres.md, "Memory and speed")
    instead of a loop over sources. ``grads`` (same shape, made by the first backward) accumulates
    each source's gradient from all its consumers in place; the source's own node passes it on.
    """

    def __init__(self, first: torch.Tensor, n: int) -> None:
        acc = torch.promote_types(first.dtype, torch.float32)
        self.values = first.new_empty((n, *first.shape), dtype=acc)
        self.grads: torch.Tensor | None = None
        self.first = first  # as given, for a consumer whose only source it is
        self.size = 0


class _Scores(torch.autograd.Function):
    """fp32 logits ``inverse_rms(v) * (v @ U^T)`` of one source (..., d) against the folded queries
    U (m, d) of its m later consumers -> (..., m), with the gradient through the RMS by hand.

    Given a bank, ``v`` is a finished source: it is copied into the bank, and the backward pass
    reads that copy (so nothing else keeps the source alive) and adds the gradient the source's
    consumers accumulated there. Every consumer takes one column of these scores as its logit, so
    this node's backward runs after theirs, when that gradient is complete. Without a bank (the
    current block's partial sum) ``v`` itself is saved, not an upcast copy.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, U: torch.Tensor, eps: float,  # type: ignore[override]
                bank: SourceBank | None) -> torch.Tensor:
        acc = torch.promote_types(v.dtype, torch.float32)
        if bank is None:
            w = v.to(acc)
        else:
            ctx.index = bank.size
            w = bank.values[bank.size]
            w.copy_(v)
            bank.size += 1
        r = inverse_rms(w, eps)
        with _routing_precision(w):
            scores = (w @ U.to(acc).t()) * r.unsqueeze(-1)
        ctx.bank, ctx.dtype = bank, v.dtype
        ctx.save_for_backward(U, r, scores, v if bank is None else None)
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gs: torch.Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[0] and not ctx.needs_input_grad[1]:
            return None, None, None, None
        U, r, scores, v = ctx.saved_tensors
        bank = ctx.bank
        w = v.to(r.dtype) if bank is None else bank.values[ctx.index]
        d = w.shape[-1]
        with _routing_precision(w):
            gs = gs.to(w.dtype)
            # d score_m / d w = r u_m - score_m r^2 w / d   (r = 1 / sqrt(mean(w^2) + eps))
            gv = (gs @ U.to(w.dtype)) * r.unsqueeze(-1)
            gv.addcmul_(w, ((gs * scores).sum(-1) * r.square() / -d).unsqueeze(-1))
            if bank is not None and bank.grads is not None:
                gv += bank.grads[ctx.index]
            gU = None
            if ctx.needs_input_grad[1]:
                gU = ((gs * r.unsqueeze(-1)).reshape(-1, U.shape[0]).t() @ w.reshape(-1, d)).to(U.dtype)
        return gv.to(ctx.dtype), gU, None, None


class _Mix(torch.autograd.Function):
    """``sum_i alpha_i v_i`` over the bank's first k sources and an optional partial block sum.

    ``alpha`` (n, ...) are fp32 per-token weights (n = k, plus one for the partial sum). The sum is
    accumulated in place in the dtype of ``alpha``; only ``alpha`` (and the partial) is saved.
    """

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, bank: SourceBank, k: int,
                partial: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        a = alpha.unsqueeze(-1)
        out = bank.values[0] * a[0]
        for i in range(1, k):
            out.addcmul_(bank.values[i], a[i])
        if partial is not None:
            out.addcmul_(partial, a[k])
        ctx.bank, ctx.k = bank, k
        ctx.save_for_backward(alpha, partial)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        alpha, partial = ctx.saved_tensors
        bank, k = ctx.bank, ctx.k
        d = grad.shape[-1]
        with _routing_precision(alpha):
            g = grad.to(alpha.dtype)
            flat = bank.values[:k].view(k, -1, d).transpose(0, 1)  # (tokens, k, d)
            galpha = torch.bmm(flat, g.reshape(-1, d, 1)).view(-1, k).t().view(k, *g.shape[:-1])
            if bank.grads is None:
                bank.grads = torch.zeros_like(bank.values)
            a = alpha.unsqueeze(-1)
            bank.grads[:k].addcmul_(a[:k], g)
            gpartial = None
            if partial is not None:
                galpha = torch.cat([galpha, torch.linalg.vecdot(partial.to(g.dtype), g)[None]])
                gpartial = (g * a[k]).to(partial.dtype)
        return galpha, None, None, gpartial


class DepthMixer(nn.Module):
    """One AttnRes consumer: a zero-initialised pseudo-query and the key RMSNorm gain.

    Args:
        dim: channel width of the sources.
        n_sources: number of sources this consumer sees (fixed by the architecture).
        name: consumer name, e.g. "blocks.3.mlp" or "out" (used in routing traces).
    Parameters ``query`` (d,) starts at 0 (uniform weights), ``gain`` (d,) at 1; both are 1-D so
    timm-style optimiser groups exclude them from weight decay. ``reset_parameters`` restores this
    init, so timm's ``init_weights`` keeps it. The logit of source i is
    ``(query * gain) . v_i * inverse_rms(v_i)`` = ``query . RMSNorm_gain(v_i)``; :class:`DepthStream`
    computes it, this module turns the logits into weights and mixes the values.
    """

    def __init__(self, dim: int, n_sources: int, name: str) -> None:
        super().__init__()
        if n_sources < 1:
            raise ValueError(f"n_sources={n_sources}: a depth mixer needs at least one source")
        self.query = nn.Parameter(torch.zeros(dim))
        self.gain = nn.Parameter(torch.ones(dim))
        self.n_sources = n_sources
        self.name = name
        self.trace: RoutingTrace | None = None
        self.trace_index = -1

    def reset_parameters(self) -> None:
        """Zero query and unit gain: the mixer starts as an equal-weight average."""
        with torch.no_grad():
            self.query.zero_()
            self.gain.fill_(1.0)

    def extra_repr(self) -> str:
        return f"dim={self.query.shape[0]}, n_sources={self.n_sources}, name={self.name!r}"

    def forward(self, logits: Sequence[torch.Tensor], bank: SourceBank, partial: torch.Tensor | None) -> torch.Tensor:
        """Softmax over depth of ``logits`` (each (...), fp32) and the weighted sum of the sources
        they score: the bank's first sources, then ``partial`` (the current block's sum) if given."""
        k = len(logits) - (partial is not None)
        if len(logits) != self.n_sources or k != bank.size:
            raise RuntimeError(f"mixer {self.name!r} built for {self.n_sources} sources, got {len(logits)}")
        if self.n_sources == 1:
            return bank.first
        acc = torch.promote_types(logits[0].dtype, torch.float32)
        alpha = torch.softmax(torch.stack(list(logits)), dim=0, dtype=acc)
        if self.trace is not None:
            self.trace.record(self.trace_index, alpha)
        return _Mix.apply(alpha, bank, k, partial)


class DepthStream:
    """The sources of one AttnRes stack during one forward pass, and the logits of its consumers.

    ``mixers`` are the stack's consumers in order, the output mixer last. ``block_size = 1`` is
    Full AttnRes (every sub-layer output is a finished source); ``block_size = S > 1`` is Block
    AttnRes: outputs are summed into a partial block sum that becomes a source when S outputs have
    been added (or at :meth:`finish`), and is offered to the next consumer as an extra source while
    it is non-empty. The embedding is always source 0.

    Because the pseudo-queries do not depend on the input, a finished source is scored against the
    folded queries of all its future consumers at once (one matrix product, the paper's two-phase
    idea) and its inverse RMS is computed once; each consumer then only gathers its logits.

    Its methods run eagerly under ``torch.compile`` (graph breaks between compiled sub-layers):
    the bank is state shared by autograd nodes and written in their backward, which a traced
    graph would not replay (the compiled gradients were wrong before this was added).
    """

    @torch.compiler.disable
    def __init__(self, embedding: torch.Tensor, mixers: Sequence[DepthMixer], block_size: int, eps: float) -> None:
        self.mixers = mixers
        self.block_size = block_size
        self.eps = eps
        self.queries = torch.stack([m.query for m in mixers]) * torch.stack([m.gain for m in mixers])
        self.pos = 0  # index of the next consumer
        self.bank = SourceBank(embedding, mixers[-1].n_sources)
        self.scores: list[tuple[torch.Tensor, int]] = []  # (scaled logits (..., m), first consumer)
        self.partial: torch.Tensor | None = None
        self.n_partial = 0
        self._add(embedding)

    def _add(self, v: torch.Tensor) -> None:
        scores = _Scores.apply(v, self.queries[self.pos:], self.eps, self.bank)
        self.scores.append((scores, self.pos))

    @torch.compiler.disable
    def mix(self) -> torch.Tensor:
        """Input of the next consumer: its softmax over the finished sources and the partial sum."""
        mixer = self.mixers[self.pos]
        logits = [s[..., self.pos - start] for s, start in self.scores]
        if self.partial is not None:
            q = self.queries[self.pos:self.pos + 1]
            logits.append(_Scores.apply(self.partial, q, self.eps, None)[..., 0])
        self.pos += 1
        return mixer(logits, self.bank, self.partial)

    @torch.compiler.disable
    def push(self, out: torch.Tensor) -> None:
        """Add a sub-layer output (a delta) to the current block."""
        self.partial = out if self.partial is None else self.partial + out
        self.n_partial += 1
        if self.n_partial == self.block_size:
            self._close()

    def _close(self) -> None:
        assert self.partial is not None
        self._add(self.partial)
        self.partial, self.n_partial = None, 0

    @torch.compiler.disable
    def finish(self) -> torch.Tensor:
        """Close the last (possibly short) block and return the output mixer over all sources."""
        if self.partial is not None:
            self._close()
        if self.pos != len(self.mixers) - 1:
            raise RuntimeError(f"depth stream finished at consumer {self.pos} of {len(self.mixers)}")
        return self.mix()


def consumer_source_counts(n_layers: int, block_size: int) -> list[int]:
    """Sources seen by each of the ``n_layers`` sub-layer consumers and then the output mixer.

    Sub-layer l (0-based) sees the embedding, ``l // S`` finished blocks and, unless it opens a
    block (``l % S == 0``), the partial sum: ``1 + l // S + (l % S > 0)``. The output mixer sees
    the embedding and all ``ceil(L / S)`` blocks (S = 1 is Full AttnRes).
    """
    if n_layers < 1 or block_size < 1:
        raise ValueError(f"n_layers={n_layers}, block_size={block_size}: both must be >= 1")
    counts = [1 + l // block_size + (l % block_size > 0) for l in range(n_layers)]
    return counts + [1 + math.ceil(n_layers / block_size)]


def stack_block_size(n_layers: int, block_size: int, min_blocks: int) -> int:
    """Sub-layers per block of one AttnRes stack of ``n_layers`` sub-layers (a Swin stage).

    ``block_size`` S, lowered where the stack is too shallow to hold ``min_blocks`` blocks of it:
    ``min(S, max(1, n_layers // min_blocks))``. The stack then has ``ceil(n_layers / S')`` >=
    ``min_blocks`` blocks, or one per sub-layer when it has fewer than ``min_blocks`` sub-layers;
    ``min_blocks = 1`` keeps S everywhere (a stack shallower than S is then a single block).
    """
    for name, value in (("n_layers", n_layers), ("block_size", block_size), ("min_blocks", min_blocks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    return min(block_size, max(1, n_layers // min_blocks))


RESIDUALS = ("baseline", "full", "block")


class AttnResBackbone:
    """What the AttnRes ViT and Swin share, mixed in before their timm class: the residual setting,
    its validation (before timm builds anything) and the baseline-only timm feature API."""

    attnres: nn.ModuleList | None

    @staticmethod
    def stream_block_size(residual: str, block_size: int) -> int:
        """Sub-layers per AttnRes block for ``residual`` (Full is Block with one per block)."""
        if residual not in RESIDUALS:
            raise ValueError(f"variant={residual!r}: expected one of {RESIDUALS}")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(
                f"block_size={block_size!r}: expected a positive integer (sub-layers per block)"
            )
        return 1 if residual == "full" else block_size

    def _set_residual(self, residual: str, stream_block_size: int, eps: float) -> None:
        self.residual = residual
        self.attnres_block_size = stream_block_size
        self.attnres_eps = eps
        self.routing_trace = None
        self.attnres = None

    def forward_intermediates(self, *args, **kwargs):  # type: ignore[override]
        """timm's intermediate-feature API; only the baseline supports it."""
        if self.attnres is not None:
            raise NotImplementedError("forward_intermediates is not available for AttnRes variants")
        return super().forward_intermediates(*args, **kwargs)  # type: ignore[misc]


class RoutingTrace:
    """Routing summaries collected from the mixers while :func:`routing_capture` is active.

    Every forward pass appends one batch; :meth:`result` concatenates them over images. Each
    consumer's weights are reduced where they are, once per batch, to the per-image numbers the
    dump keeps (token-mean H and V, the class token's H, the per-source weight sums); they stay on
    the model's device until :meth:`result`, so capture adds no device-to-host copies per batch.
    """

    def __init__(self, mixers: Sequence[DepthMixer], cls_index: int | None) -> None:
        self.mixers = [m for m in mixers if m.n_sources > 1]
        self.cls_index = cls_index
        self._n_images: list[int] = []
        self._rows: list[list[torch.Tensor]] = [[] for _ in self.mixers]  # (2 or 3, B) each
        self._alpha_sum: list[torch.Tensor | None] = [None for _ in self.mixers]
        self._coords: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._uniform_var = [uniform_variance(range(m.n_sources)) for m in self.mixers]

    def begin_batch(self, n_images: int) -> None:
        """Called by the model at the start of each forward pass."""
        self._n_images.append(int(n_images))

    def _coordinates(self, n: int, device: torch.device) -> torch.Tensor:
        key = (n, device)
        if key not in self._coords:
            self._coords[key] = torch.arange(n, dtype=torch.float32, device=device)
        return self._coords[key]

    @torch.no_grad()
    def record(self, index: int, alpha: torch.Tensor) -> None:
        """Reduce one consumer's weights ``alpha`` (n, B, tokens...) to per-image summaries."""
        a = alpha.detach().float().flatten(2)  # (n, B, T)
        h = normalised_entropy(a)  # per token (B, T), computed once for the mean and the class token
        v = depth_variance(a, self._coordinates(a.shape[0], a.device)) / self._uniform_var[index]
        rows = [h.mean(-1), v.mean(-1)]
        if self.cls_index is not None:
            rows.append(h[:, self.cls_index])
        self._rows[index].append(torch.stack(rows))
        sums = a.mean(-1).sum(-1, dtype=torch.float64)
        self._alpha_sum[index] = sums if self._alpha_sum[index] is None else self._alpha_sum[index] + sums

    def result(self) -> RoutingBatch:
        """The summaries of all images seen so far as a :class:`~arcal.routing.RoutingBatch`."""
        B = sum(self._n_images)
        L = len(self.mixers)
        rows = [torch.cat(r, dim=1).cpu().numpy() if r else np.zeros((3, 0), np.float32)
                for r in self._rows]
        for m, r in zip(self.mixers, rows):
            if r.shape[1] != B:
                raise RuntimeError(f"routing trace of {m.name!r} covers {r.shape[1]} images, expected {B}")

        def column(k: int) -> np.ndarray:
            if L == 0:
                return np.zeros((B, 0), dtype=np.float32)
            return np.stack([r[k] for r in rows], axis=1).astype(np.float32)

        return RoutingBatch(
            H=column(0),
            V=column(1),
            H_cls=column(2) if self.cls_index is not None else None,
            n_sources=np.array([m.n_sources for m in self.mixers], dtype=np.int64),
            consumers=[m.name for m in self.mixers],
            alpha_sum=[np.zeros(m.n_sources) if a is None else a.cpu().numpy()
                       for m, a in zip(self.mixers, self._alpha_sum)],
            n_images=B,
        )


@contextlib.contextmanager
def routing_capture(model: nn.Module) -> Iterator[RoutingTrace]:
    """Record routing summaries of every forward pass of ``model`` inside the ``with`` block.

    Capture is a flag on the mixers and the model (no hooks); outside the block the mixers
    compute nothing extra. Works for every variant: the baseline yields L = 0 consumers.
    """
    mixers = list(getattr(model, "attnres", None) or [])
    cls_index = 0 if getattr(model, "has_class_token", False) else None
    trace = RoutingTrace(mixers, cls_index)
    if not hasattr(model, "routing_trace") or model.routing_trace is not None:
        raise ValueError(
            f"routing_capture: {type(model).__name__} is not an arcal model or is already capturing; "
            "build it with arcal.models.create_model and do not nest captures"
        )
    for i, m in enumerate(trace.mixers):
        m.trace, m.trace_index = trace, i
    model.routing_trace = trace
    try:
        yield trace
    finally:
        model.routing_trace = None
        for m in trace.mixers:
            m.trace, m.trace_index = None, -1
