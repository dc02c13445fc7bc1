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
folded into the query) together with its fp32 inverse RMS, and the scores are written into the
bank's (consumers x sources x tokens) logit table. A consumer reads its logits as one block of that
table and its sources as the bank's first k, and its weighted sum reads each source once (a C
kernel on the CPU, :mod:`arcal.models.pair_kernel`; an embedding bag elsewhere). In the backward
pass a consumer only records its output gradient, weights and ``out . g`` in the bank; each
source's node, after all its consumers, then forms its gradient through their weighted sums and
its logits' gradients through their softmaxes from one read of each consumer's gradient. The
current block's partial sum, which only one consumer reads, is scored in that consumer's node, and
its gradients (through the sum, and through its logit and RMS) come from the same read of the
consumer's gradient as the record. A consumer saves its (n, tokens) weights and its output (and the
partial sum with its inverse RMS and logit). No per-consumer stack of the sources or of
the logits is formed or saved, and no autograd node per source and consumer. The bank's blocks are
kept by the model between steps (:class:`BankBuffers`), since the CPU allocator would map blocks
that large afresh, page by page, at every step.

Precision: the logits, the depth softmax and the weighted sum are computed in float32 (float64
for float64 sources) whatever the dtype of the sources and whatever autocast is active. Under
bf16 autocast a matrix product would otherwise be recast to bf16 (logit errors of about 0.04 at
logits near 4), and the mixing weights are the study's features. The routing's matrix products
(the logits and their gradients) therefore run with autocast disabled (:func:`_routing_precision`),
and so do the weighted sum and the sources' gradients; the softmax
is elementwise, which autocast leaves alone, and takes fp32 logits. The sources themselves (the
sub-layer outputs) keep the dtype the network computes them in (bf16 under autocast).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arcal.models import pair_kernel
from arcal.routing import RoutingBatch, depth_moments, depth_variance, normalised_entropy, uniform_variance

__all__ = [
    "RESIDUALS",
    "AttnResBackbone",
    "BankBuffers",
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


def partial_score(p: torch.Tensor, query: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The current block's partial sum ``p`` (..., d) scored against one consumer's folded query
    (d): its inverse RMS and its logit ``inverse_rms(p) * (p . query)``, both (...) in fp32
    (float64 for float64 ``p``)."""
    r = inverse_rms(p, eps)
    with _routing_precision(r):
        return r, (p.to(r.dtype) @ query.to(r.dtype)) * r


def _add_score_grad(gv: torch.Tensor, w: torch.Tensor, gsr: torch.Tensor, scores: torch.Tensor,
                   r: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``gv`` (..., d) plus the gradient, with respect to ``w`` (..., d), of its logits
    ``scores = r * (w @ U^T)`` (..., m) against the queries U (m, d), r = ``inverse_rms(w)``
    (...), given ``gsr``, the logits' gradient times r (..., m):
    ``gsr @ U - (gsr . scores) r / d * w``, the second term through the RMS. Shared by the bank's
    sources (:class:`_Scores`) and, off the C kernels, the partial block sum."""
    d, m = w.shape[-1], U.shape[0]
    gv = torch.addmm(gv.reshape(-1, d), gsr.reshape(-1, m), U).view(w.shape)
    return gv.addcmul_(w, (torch.linalg.vecdot(gsr, scores) * r / -d).unsqueeze(-1))


_EMBEDDING_BAG_SUM = 0  # the ``mode`` code of "sum" in aten's embedding_bag ops


class BankBuffers:
    """Spare blocks for the next :class:`SourceBank` of one AttnRes stack.

    A bank's blocks are the largest tensors of a training step (DeiT-S at batch 32: 80 MB of
    sources and as much of consumers' gradients). The CPU allocator gives a block that large back
    to the system when it is freed and faults it in again page by page when the next step asks,
    which made filling it about five times slower. So a bank, when it is freed, leaves its blocks
    here and the next bank of the stack takes those of the same shape and dtype. One spare is kept
    per block: a block of another shape (the last, shorter batch; evaluation) replaces it. The
    spares are a cache, not model state: copies and pickles of the model start without them.

    A bank is freed with the autograd graph that holds it, so a training loop that keeps the last
    step's loss or logits through the next forward pass keeps that bank, and the next bank gets new
    blocks; ``arcal.train``'s step returns only detached values.
    """

    def __init__(self) -> None:
        self.spares: dict[str, torch.Tensor] = {}  # block name -> the last freed bank's block

    def __reduce__(self):
        return BankBuffers, ()

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Block ``name``: the spare if it has this shape, dtype and ``like``'s device, else a new
        one (contents undefined either way)."""
        spare = self.spares.pop(name, None)
        if spare is not None and spare.shape == shape and spare.dtype == dtype and spare.device == like.device:
            return spare
        return like.new_empty(shape, dtype=dtype)

    def give(self, blocks: dict[str, torch.Tensor]) -> None:
        """Keep a freed bank's blocks for the next bank."""
        self.spares.update(blocks)


class SourceBank:
    """The finished sources of one stream, their logits at every consumer, and what the backward
    pass needs of each consumer to give each source its gradient in one step.

    ``values`` is (n, ..., d) in fp32 (float64 for float64 sources), source i in ``values[i]``, so
    the first k sources of a consumer are one contiguous block. ``scores`` is (m, n, ...) for the
    stream's m consumers: ``scores[j, i]`` is the logit of source i at consumer j, written when
    source i is scored against all its later consumers, so consumer j reads its logits as the
    contiguous block ``scores[j, :k]``.

    The backward pass runs the consumers first, each only recording itself (:meth:`keep_consumer`):
    its output gradient in ``out_grads[j]`` (m, ..., d), its weights of the sources in
    ``weights[j, :k]`` (m, n, ...), and its output dotted with that gradient in ``out_dots[j]``.
    Each source's node, which runs after all its consumers, then reads its column and gets both
    its gradient through the weighted sums and its logits' gradients from one read of each
    consumer's gradient (:meth:`source_grads`). The backward blocks are taken by the first backward
    pass, and ``weights`` is zeroed at the start of each (docs/attnres.md, "Memory and speed").

    All blocks come from ``buffers`` and go back to it when the bank is freed (with the autograd
    graph that holds it), so no view of a block may outlive the bank.
    """

    def __init__(self, first: torch.Tensor, n_sources: int, n_consumers: int, buffers: BankBuffers,
                 eps: float) -> None:
        acc = torch.promote_types(first.dtype, torch.float32)
        self.eps = eps  # of the keys' RMSNorm
        self._blocks: dict[str, torch.Tensor] = {}
        self._buffers = buffers
        weakref.finalize(self, buffers.give, self._blocks)
        self.values = self._take("values", (n_sources, *first.shape), first, acc)
        self.scores = self._take("scores", (n_consumers, n_sources, *first.shape[:-1]), first, acc)
        self.out_grads: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.out_dots: torch.Tensor | None = None
        self.backward_task = -1  # autograd graph task of the backward pass the blocks belong to
        self.unrecorded: set[int] = set()  # consumers this backward pass has not reached yet
        self.first = first  # as given, for a consumer whose only source it is
        self.n_tokens = first[..., 0].numel()
        self.native = pair_kernel.native(self.values)
        self._bags: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.size = 0

    def _take(self, name: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        self._blocks[name] = block = self._buffers.take(name, shape, like, dtype)
        return block

    def keep_consumer(self, j: int, alpha: torch.Tensor, g: torch.Tensor, out: torch.Tensor,
                      partial: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Record consumer j in the backward pass: its output gradient ``g``, its weights ``alpha``
        (k, ...) of the bank's first k sources and ``out . g`` per token. For a consumer that also
        read the partial block sum, ``partial`` is ``(p, a, r, s, u)``: the sum, its weight, inverse
        RMS and logit, and the consumer's folded query; then returns the sum's gradient and its
        logit's gradient times ``r`` (:func:`arcal.models.pair_kernel.consumer_grads`), from the
        same read of ``g``.

        The first consumer of each backward pass zeroes ``weights``, so a consumer the pass does
        not reach contributes nothing (:meth:`source_grads` zeroes its rows of the other blocks,
        which hold an earlier pass's or step's values), and a second pass over a retained graph
        (``retain_graph=True``, gradcheck) gives the same gradients as the first. Passes are told
        apart by autograd's graph-task id (the private hook ``torch.utils.checkpoint`` uses for the
        same purpose)."""
        task = torch._C._current_graph_task_id()
        if task != self.backward_task:
            self.backward_task = task
            if self.weights is None:
                m = self.scores.shape[0]
                self.out_grads = self._take("out_grads", (m, *self.first.shape), self.values, self.values.dtype)
                self.weights = self._take("weights", self.scores.shape, self.scores, self.scores.dtype)
                self.out_dots = self._take("out_dots", self.scores[:, 0].shape, self.scores, self.scores.dtype)
            self.weights.zero_()
            self.unrecorded = set(range(self.scores.shape[0]))
        assert self.out_grads is not None and self.out_dots is not None
        self.unrecorded.discard(j)
        self.weights[j, : alpha.shape[0]] = alpha
        if self.native:
            partial = None if partial is None else tuple(t.contiguous() for t in partial)
            return pair_kernel.consumer_grads(g.contiguous(), out, self.out_grads[j], self.out_dots[j], partial)
        self.out_grads[j].copy_(g)
        torch.linalg.vecdot(out, g, out=self.out_dots[j])
        if partial is None:
            return None
        p, a, r, s, u = partial
        gsr = a * (torch.linalg.vecdot(p, g) - self.out_dots[j]) * r
        return _add_score_grad(g * a.unsqueeze(-1), p, gsr.unsqueeze(-1), s.unsqueeze(-1), r, u[None]), gsr

    def token_bags(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first k rows of a (k, ..., d) block (the sources, or the consumers' gradients) as
        one embedding bag per token: row ``i * n_tokens + t`` of its (k x tokens, d) view is item i
        at token t, so token t's bag holds rows ``t, n_tokens + t, ...``. Returns the rows
        (token-major), the bags' offsets and each row's bag, as ``embedding_bag`` and its
        per-row-weight gradient take them; made once per bank and freed with it."""
        if k not in self._bags:
            tokens = torch.arange(self.n_tokens, device=self.values.device)
            rows = (tokens[:, None] + torch.arange(k, device=tokens.device) * self.n_tokens).reshape(-1)
            self._bags[k] = rows, tokens * k, tokens.repeat_interleave(k)
        return self._bags[k]

    def weighted_sum(self, alpha: torch.Tensor) -> torch.Tensor:
        """``sum_i alpha_i v_i`` over the first k = len(alpha) sources, alpha (k, ...) in the bank's
        dtype, reading each source once: the C kernel on the CPU, else an embedding bag of k rows
        per token."""
        k, d = alpha.shape[0], self.values.shape[-1]
        if self.native:
            return pair_kernel.weighted_sum(self.values[:k], alpha.contiguous())
        rows, offsets, _ = self.token_bags(k)
        weights = alpha.reshape(k, -1).t().reshape(-1)
        return F.embedding_bag(rows, self.values.view(-1, d), offsets, mode="sum",
                               per_sample_weights=weights).view(self.first.shape)

    def source_grads(self, index: int, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ``index``'s gradient through the weighted sums of its consumers ``first`` .. m-1,
        ``sum_j alpha_j g_j`` (..., d), and the gradients of its logits at them through their
        softmaxes, ``alpha_j (v . g_j - out_j . g_j)`` (m - first, ...). The C kernel reads each
        consumer's gradient once for both; elsewhere two embedding-bag kernels read it twice."""
        assert self.out_grads is not None and self.weights is not None and self.out_dots is not None
        for j in [j for j in self.unrecorded if j >= first]:  # consumers the pass did not reach
            self.out_grads[j].zero_()
            self.out_dots[j].zero_()
            self.unrecorded.discard(j)
        v, grads, out_dots = self.values[index], self.out_grads[first:], self.out_dots[first:]
        weights = self.weights[first:, index]
        if self.native:
            return pair_kernel.source_grads(v, grads, weights.contiguous(), out_dots)
        m, d = grads.shape[0], v.shape[-1]
        rows, offsets, bags = self.token_bags(m)
        flat = grads.view(-1, d)
        dots = torch.ops.aten._embedding_bag_per_sample_weights_backward(
            v.reshape(-1, d), flat, rows, offsets, bags, _EMBEDDING_BAG_SUM, -1)
        dots = dots.view(-1, m).t().reshape(weights.shape)
        grad = F.embedding_bag(rows, flat, offsets, mode="sum",
                               per_sample_weights=weights.reshape(m, -1).t().reshape(-1)).view(v.shape)
        return grad, weights * (dots - out_dots)

    def logits(self, consumer: int, partial_logit: torch.Tensor | None) -> torch.Tensor:
        """Consumer ``consumer``'s logits (n, ...): its finished sources', then the partial sum's."""
        logits = self.scores[consumer, : self.size]
        return logits if partial_logit is None else torch.cat([logits, partial_logit.unsqueeze(0)])


class _Scores(torch.autograd.Function):
    """A finished source ``v`` (..., d) into the bank: copied into it, and its fp32 logits
    ``inverse_rms(v) * (v @ U^T)`` against the folded queries U (m, d) of its m later consumers,
    the first of which is consumer ``first``, written into the bank's scores, with the gradient
    through the RMS by hand.

    The node returns an empty marker that each consumer of the source takes as an input. So this
    node's backward runs after all of theirs, when the gradients they gathered in the bank for it
    are complete; it reads the source and its logits back from the bank, so nothing else keeps
    them alive.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, U: torch.Tensor, bank: SourceBank, first: int) -> torch.Tensor:  # type: ignore[override]
        w = bank.values[bank.size].copy_(v)
        r = inverse_rms(w, bank.eps)
        with _routing_precision(w):
            scores = (w @ U.to(w.dtype).t()) * r.unsqueeze(-1)
        ctx.bank, ctx.dtype, ctx.index, ctx.first = bank, v.dtype, bank.size, first
        bank.scores[first:, bank.size] = scores.movedim(-1, 0)
        bank.size += 1
        ctx.save_for_backward(U, r)
        ctx.set_materialize_grads(False)
        return v.new_empty(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _marker: torch.Tensor | None):  # type: ignore[override]
        if not ctx.needs_input_grad[0] and not ctx.needs_input_grad[1]:
            return None, None, None, None
        bank, (U, r) = ctx.bank, ctx.saved_tensors
        w = bank.values[ctx.index]
        scores = bank.scores[ctx.first:, ctx.index].movedim(0, -1)
        gv, gs = bank.source_grads(ctx.index, ctx.first)  # from what every consumer kept (_Mix.backward)
        d, m = w.shape[-1], U.shape[0]
        with _routing_precision(w):
            # d score_m / d w = r u_m - score_m r^2 w / d   (r = 1 / sqrt(mean(w^2) + eps)), with
            # r applied to the (tokens, m) score gradient rather than to a (tokens, d) product,
            # added to the source's gradient through the weighted sums
            gsr = gs.movedim(0, -1).to(w.dtype) * r.unsqueeze(-1)
            gv = _add_score_grad(gv, w, gsr, scores, r, U.to(w.dtype))
            gU = None
            if ctx.needs_input_grad[1]:
                gU = (gsr.reshape(-1, m).t() @ w.reshape(-1, d)).to(U.dtype)
        return gv.to(ctx.dtype), gU, None, None


class _Mix(torch.autograd.Function):
    """Consumer ``j``'s depth softmax and weighted sum ``sum_i alpha_i v_i`` over the bank's first
    k sources and an optional partial block sum, scored here against the consumer's folded query.

    The weights ``alpha`` (n, ...) are fp32 (n = k, plus one for the partial sum), and the sum
    (:meth:`SourceBank.weighted_sum`) is taken in their dtype; ``alpha``, the partial, its inverse
    RMS and logit, and the output (which the next sub-layer's norm keeps anyway) are saved. The
    backward pass records the consumer in the bank (:meth:`SourceBank.keep_consumer`): the bank
    sources' gradients, through the sum and through the softmax, are formed by each source's
    :class:`_Scores` node from all its consumers at once. The softmax's gradient needs
    ``sum_i alpha_i (v_i . g)``, which is ``out . g``. Only the partial sum's gradients (through
    the sum, and through its logit and RMS) and its query's are returned here, from the same read
    of the output gradient. ``markers`` (the sources' nodes' outputs) carry no gradient; they make
    each source's node wait for all its consumers.
    """

    @staticmethod
    def forward(ctx, bank: SourceBank, j: int, partial: torch.Tensor | None,  # type: ignore[override]
                query: torch.Tensor | None, mixer: "DepthMixer", *markers: torch.Tensor) -> torch.Tensor:
        k = bank.size
        r = s = None
        if partial is not None:
            r, s = partial_score(partial, query, bank.eps)
        alpha = torch.softmax(bank.logits(j, s), dim=0)
        if mixer.trace is not None:
            mixer.trace.record(mixer.trace_index, alpha)
        with _routing_precision(alpha):
            out = bank.weighted_sum(alpha[:k])
            if partial is not None:
                out.addcmul_(partial, alpha[k].unsqueeze(-1))
        ctx.bank, ctx.j, ctx.k = bank, j, k
        ctx.save_for_backward(alpha, partial, r, s, query, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        alpha, partial, r, s, query, out = ctx.saved_tensors
        bank, k = ctx.bank, ctx.k
        gpartial = gquery = None
        with _routing_precision(alpha):
            g = grad.to(alpha.dtype)
            if partial is None:
                bank.keep_consumer(ctx.j, alpha, g, out)
            else:
                p = partial.to(alpha.dtype)
                gp, gsr = bank.keep_consumer(ctx.j, alpha[:k], g, out, (p, alpha[k], r, s, query.to(alpha.dtype)))
                gpartial = gp.to(partial.dtype)
                if ctx.needs_input_grad[3]:
                    d = p.shape[-1]
                    gquery = torch.mv(p.reshape(-1, d).t(), gsr.reshape(-1)).to(query.dtype)
        return (None, None, gpartial, gquery, None) + (None,) * (len(ctx.needs_input_grad) - 5)


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

    def forward(self, bank: SourceBank, consumer: int, partial: torch.Tensor | None = None,
                query: torch.Tensor | None = None, markers: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """Softmax over depth of this consumer's logits and the weighted sum of the sources they
        score: the bank's finished sources (logits ``bank.scores[consumer]``), then ``partial``
        (the current block's sum, scored against ``query``, the consumer's folded query) if
        given. ``markers`` are the finished sources' scoring nodes (:class:`_Scores`), which order
        the backward pass."""
        n = bank.size + (partial is not None)
        if n != self.n_sources:
            raise RuntimeError(f"mixer {self.name!r} built for {self.n_sources} sources, got {n}")
        if self.n_sources == 1:
            return bank.first
        return _Mix.apply(bank, consumer, partial, query, self, *markers)


class DepthStream:
    """The sources of one AttnRes stack during one forward pass, and the logits of its consumers.

    ``mixers`` are the stack's consumers in order, the output mixer last. ``block_size = 1`` is
    Full AttnRes (every sub-layer output is a finished source); ``block_size = S > 1`` is Block
    AttnRes: outputs are summed into a partial block sum that becomes a source when S outputs have
    been added (or at :meth:`finish`), and is offered to the next consumer as an extra source while
    it is non-empty. The embedding is always source 0.

    Because the pseudo-queries do not depend on the input, a finished source is scored against the
    folded queries of all its future consumers at once (one matrix product, the paper's two-phase
    idea) and its inverse RMS is computed once; each consumer then reads its row of the bank's
    logit table.

    ``buffers`` lend the bank its blocks; a model passes the same ones at every forward pass, so a
    step reuses the blocks of the step before (by default the stream gets fresh ones).

    Its methods run eagerly under ``torch.compile`` (graph breaks between compiled sub-layers):
    the bank is state shared by autograd nodes and written in their backward, which a traced
    graph would not replay (the compiled gradients were wrong before this was added).
    """

    @torch.compiler.disable
    def __init__(self, embedding: torch.Tensor, mixers: Sequence[DepthMixer], block_size: int, eps: float,
                 buffers: BankBuffers | None = None) -> None:
        self.mixers = mixers
        self.block_size = block_size
        self.queries = torch.stack([m.query for m in mixers]) * torch.stack([m.gain for m in mixers])
        self.pos = 0  # index of the next consumer
        self.bank = SourceBank(embedding, mixers[-1].n_sources, len(mixers), buffers or BankBuffers(), eps)
        self.markers: list[torch.Tensor] = []  # the finished sources' _Scores outputs
        self.partial: torch.Tensor | None = None
        self.n_partial = 0
        self._add(embedding)

    def _add(self, v: torch.Tensor) -> None:
        self.markers.append(_Scores.apply(v, self.queries[self.pos:], self.bank, self.pos))

    @torch.compiler.disable
    def mix(self) -> torch.Tensor:
        """Input of the next consumer: its softmax over the finished sources and the partial sum."""
        mixer, j = self.mixers[self.pos], self.pos
        self.pos += 1
        query = None if self.partial is None else self.queries[j]
        return mixer(self.bank, j, self.partial, query, self.markers)

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

    Every forward pass appends one batch; :meth:`result` concatenates them over images. A
    consumer's weights are kept until the last consumer of the forward pass has recorded its own
    (the mixers run in order), and are then reduced, together with those of every other consumer
    of the same shape (one stack, so a few operations per batch instead of a few per consumer), to
    the per-image numbers the dump keeps (token-mean H and V, the class token's H, the per-source
    weight sums). This happens inside the forward pass, under its precision settings. The
    summaries stay on the model's device until :meth:`result`, so capture adds no device-to-host
    copies per batch.
    """

    def __init__(self, mixers: Sequence[DepthMixer], cls_index: int | None) -> None:
        self.mixers = [m for m in mixers if m.n_sources > 1]
        self.cls_index = cls_index
        self._n_images: list[int] = []
        self._pending: list[tuple[int, torch.Tensor]] = []  # this batch's (consumer, weights)
        self._rows: list[list[torch.Tensor]] = [[] for _ in self.mixers]  # (2 or 3, B) each
        self._alpha_sums: list[list[torch.Tensor]] = [[] for _ in self.mixers]  # (n,) per batch
        self._depth_moments: dict[tuple[int, torch.device], torch.Tensor] = {}

    def begin_batch(self, n_images: int) -> None:
        """Called by the model at the start of each forward pass."""
        self._n_images.append(int(n_images))

    def _moments(self, n: int, device: torch.device) -> torch.Tensor:
        """:func:`~arcal.routing.depth_moments` of the depth coordinates 0 .. n-1, made once."""
        key = (n, device)
        if key not in self._depth_moments:
            self._depth_moments[key] = depth_moments(torch.arange(n, dtype=torch.float32, device=device))
        return self._depth_moments[key]

    def record(self, index: int, alpha: torch.Tensor) -> None:
        """Keep one consumer's weights ``alpha`` (n, B, tokens...); reduce the batch's at the last."""
        self._pending.append((index, alpha.detach()))
        if index == len(self.mixers) - 1:
            self._reduce()

    @torch.no_grad()
    def _reduce(self) -> None:
        """The batch's kept weights to per-image summaries, one stack per shape."""
        groups: dict[tuple[torch.Size, torch.device], list[tuple[int, torch.Tensor]]] = {}
        for index, alpha in self._pending:
            groups.setdefault((alpha.shape, alpha.device), []).append((index, alpha))
        self._pending = []
        for members in groups.values():
            a = torch.stack([alpha for _, alpha in members], dim=1).float().flatten(3)  # (n, c, B, T)
            n = a.shape[0]
            h = normalised_entropy(a)  # per token (c, B, T), computed once for the mean and the class token
            rows = torch.stack([h, depth_variance(a, self._moments(n, a.device))]).mean(-1)  # (2, c, B)
            rows[1] /= uniform_variance(range(n))
            if self.cls_index is not None:
                rows = torch.cat([rows, h[None, :, :, self.cls_index]])
            sums = a.mean(-1).sum(-1, dtype=torch.float64)  # (n, c)
            for col, (index, _) in enumerate(members):
                self._rows[index].append(rows[:, col])
                self._alpha_sums[index].append(sums[:, col])

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
            alpha_sum=[torch.stack(a).sum(0).cpu().numpy() if a else np.zeros(m.n_sources)
                       for m, a in zip(self.mixers, self._alpha_sums)],
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
