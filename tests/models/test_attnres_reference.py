"""AttnRes against a plain loop over the paper's equations, and its precision under bf16 autocast.

The reference below is written from the equations of Attention Residuals (Kimi Team, arXiv
2603.15031, Eqs. 2-6) and shares no code with ``arcal.models.attnres``: every consumer recomputes
its sources from the list of sub-layer outputs, normalises each key with its own RMSNorm and
softmaxes over depth. Queries and gains are random and non-zero, so a consumer paired with the
wrong query or the wrong sources gives a different function (checked, so the comparison cannot
pass vacuously).
"""

import math

import pytest
import torch

from arcal.models import create_model, pair_kernel, routing_capture
from arcal.models.attnres import BankBuffers, DepthMixer, DepthStream, consumer_source_counts, inverse_rms, partial_score

EPS = 1e-6


@pytest.fixture(params=pair_kernel.KERNELS)
def mixing_kernel(request, monkeypatch):
    """Each of the two ways a source bank sums its sources and forms their gradients: the C
    kernels (the CPU's default) and PyTorch's embedding-bag kernels (a GPU's, and the CPU's with
    ``ARCAL_PAIR_KERNEL=torch``)."""
    monkeypatch.setattr(pair_kernel, "KERNEL", request.param)
    return request.param


def rms_norm(v, gain):
    return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + EPS) * gain


def paper_mix(sources, mixer):
    """h = sum_i a_i v_i with a = softmax_i(w . RMSNorm_g(v_i)) (Eqs. 2-4), per token."""
    logits = torch.stack([(rms_norm(v, mixer.gain) * mixer.query).sum(-1) for v in sources])
    alpha = torch.softmax(logits, dim=0)
    return sum(a.unsqueeze(-1) * v for a, v in zip(alpha, sources))


def paper_stack(embedding, layers, mixers, S):
    """One AttnRes stack of L = len(layers) sub-layers with S sub-layers per block (Eq. 6).

    b_0 is the embedding and b_k the sum of the outputs of block k (the last one may be short).
    Sub-layer i (0-based) of block n attends over b_0 .. b_n (finished blocks) and, unless it
    opens its block, the partial sum of block n+1 so far. The output mixer attends over all
    blocks. S = 1 is Full AttnRes. ``mixers`` are the L + 1 consumers in order.
    """
    L, outs = len(layers), []

    def block(k, stop):
        return sum(outs[k * S : min((k + 1) * S, stop)])

    for l, f in enumerate(layers):
        n, i = divmod(l, S)
        sources = [embedding] + [block(k, L) for k in range(n)] + ([block(n, l)] if i else [])
        outs.append(f(paper_mix(sources, mixers[l])))
    return paper_mix([embedding] + [block(k, L) for k in range(math.ceil(L / S))], mixers[L])


def vit_reference(model, x, S):
    by_name = {m.name: m for m in model.attnres}
    layers, mixers = [], []
    for k, blk in enumerate(model.blocks):
        layers += [lambda h, b=blk: b.drop_path1(b.ls1(b.attn(b.norm1(h)))),
                   lambda h, b=blk: b.drop_path2(b.ls2(b.mlp(b.norm2(h))))]
        mixers += [by_name[f"blocks.{k}.attn"], by_name[f"blocks.{k}.mlp"]]
    emb = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    return model.forward_head(model.norm(paper_stack(emb, layers, mixers + [by_name["out"]], S)))


def swin_mlp(blk, h):
    B, H, W, C = h.shape  # timm's SwinTransformerBlock.forward: the MLP on (B, HW, C)
    return blk.drop_path2(blk.mlp(blk.norm2(h.reshape(B, -1, C)))).reshape(B, H, W, C)


def swin_reference(model, x, stage_S):
    by_name = {m.name: m for m in model.attnres}
    x = model.patch_embed(x)
    for s, (stage, S) in enumerate(zip(model.layers, stage_S)):
        x = stage.downsample(x)
        layers, mixers = [], []
        for k, blk in enumerate(stage.blocks):
            layers += [lambda h, b=blk: b.drop_path1(b._attn(b.norm1(h))), lambda h, b=blk: swin_mlp(b, h)]
            mixers += [by_name[f"layers.{s}.blocks.{k}.attn"], by_name[f"layers.{s}.blocks.{k}.mlp"]]
        x = paper_stack(x, layers, mixers + [by_name[f"layers.{s}.out"]], S)
    return model.forward_head(model.norm(x))


def randomise_mixers(model, seed):
    """Non-zero queries (logits of order 1) and gains away from 1, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.attnres:
            d = m.query.numel()
            m.query.copy_(torch.randn(d, generator=g, dtype=torch.float64) * 1.5 / math.sqrt(d))
            m.gain.copy_(torch.rand(d, generator=g, dtype=torch.float64) + 0.5)


def swap_queries(model, i, j):
    """Exchange the pseudo-queries of consumers i and j (a mis-pairing of queries and sources)."""
    with torch.no_grad():
        qi, qj = model.attnres[i].query.clone(), model.attnres[j].query.clone()
        model.attnres[i].query.copy_(qj)
        model.attnres[j].query.copy_(qi)


def compare(model, reference, x):
    """Logits and the gradients of every parameter and of the input agree in float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    w = torch.randn(x.shape[0], model.num_classes, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    got, want = model(x), reference(x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    g_got = torch.autograd.grad((got * w).sum(), [x, *params])
    g_want = torch.autograd.grad((want * w).sum(), [x, *params])
    for (name, _), a, b in zip([("input", x), *model.named_parameters()], g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10, msg=lambda m: f"gradient of {name}: {m}")
    assert all(p.grad is None for p in params)  # autograd.grad: nothing accumulated
    return got


@pytest.mark.parametrize("variant,S", [("full", 1), ("block", 3), ("block", 4)])
def test_vit_matches_the_paper_equations(variant, S, mixing_kernel):
    """ViT with 5 blocks = 10 sub-layers: S = 3 and S = 4 both end in a short block (1 and 2)."""
    torch.manual_seed(0)
    model = create_model("vit_tiny", variant, 10, 32, 3, block_size=S, depth=5).double().eval()
    randomise_mixers(model, seed=1)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    got = compare(model, lambda z: vit_reference(model, z, S), x)
    swap_queries(model, 3, 5)  # the comparison can fail: a mis-paired query changes the function
    with torch.no_grad():
        assert (vit_reference(model, x, S) - got).abs().max() > 1e-3


@pytest.mark.parametrize(
    "variant,S,min_stage_blocks,stage_S",
    [
        ("full", 4, 2, (1, 1)),
        ("block", 3, 1, (3, 3)),  # stage 0: blocks of 3 + 1; stage 1: 3 + 3 + 3 + 1
        ("block", 4, 1, (4, 4)),  # the old uniform S = 4: stage 0 is one block; stage 1: 4 + 4 + 2
        ("block", 4, 2, (2, 4)),  # the default policy: stage 0 lowered to two blocks of 2
    ],
)
def test_swin_stages_match_the_paper_equations(variant, S, min_stage_blocks, stage_S, mixing_kernel):
    """Stage-local Swin with depths (2, 5): 4 and 10 sub-layers, the second stage after a
    PatchMerging; each stage is its own stack with the stage input as b_0."""
    torch.manual_seed(0)
    model = create_model("swin_demo", variant, 10, 28, 1, block_size=S, min_stage_blocks=min_stage_blocks,
                         depths=(2, 5)).double().eval()
    assert model.attnres_stage_block_sizes == stage_S
    randomise_mixers(model, seed=2)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    got = compare(model, lambda z: swin_reference(model, z, stage_S), x)
    swap_queries(model, 7, 9)  # two consumers of stage 1
    with torch.no_grad():
        assert (swin_reference(model, x, stage_S) - got).abs().max() > 1e-3


def test_swin_block_policy_gives_every_stage_two_blocks():
    """Swin-T (stages of 4, 4, 12, 4 sub-layers), S = 4: the default policy gives 2, 2, 3, 2
    blocks and 10 two-source consumers of 24; min_stage_blocks = 1 keeps the old uniform S = 4
    (1, 1, 3, 1 blocks, 16 of 24 with two sources). A ViT takes no stage policy."""

    def routed(model):
        return [m.n_sources for m in model.attnres if m.n_sources > 1]

    policy = create_model("swin_t", "block", 10, 32, 3)
    assert policy.arcal_config["min_stage_blocks"] == 2
    assert policy.attnres_stage_block_sizes == (2, 2, 4, 2)
    outs = [m.n_sources - 1 for m in policy.attnres if m.name.endswith(".out")]
    assert outs == [2, 2, 3, 2] and len(routed(policy)) == 24 and routed(policy).count(2) == 10
    old = create_model("swin_t", "block", 10, 32, 3, min_stage_blocks=1)
    assert old.attnres_stage_block_sizes == (4, 4, 4, 4) and routed(old).count(2) == 16
    assert create_model(**old.arcal_config).attnres_stage_block_sizes == (4, 4, 4, 4)
    with pytest.raises(ValueError, match="min_stage_blocks=0"):
        create_model("swin_demo", "block", 10, 28, 1, min_stage_blocks=0)
    with pytest.raises(ValueError, match="min_stage_blocks=2.*'vit_tiny' is a vit"):
        create_model("vit_tiny", "block", 10, 32, 3, min_stage_blocks=2)


def consumer_logits(bank, consumer, partial=None, query=None, markers=()):
    """The logits a DepthMixer call (these are its arguments) softmaxes, (n, ...)."""
    return bank.logits(consumer, None if partial is None else partial_score(partial, query, EPS)[1])


def record_stream(values, mixers, S):
    """Run a DepthStream over given sub-layer outputs; the mixers' logits, weights and inputs."""
    logits, alphas, inputs = [], [], []

    class Recorder:  # the protocol RoutingTrace implements for routing_capture
        def record(self, index, alpha):
            alphas.append(alpha)

    hooks = [m.register_forward_pre_hook(lambda m, args: logits.append(list(consumer_logits(*args)))) for m in mixers]
    for i, m in enumerate(mixers):
        m.trace, m.trace_index = Recorder(), i
    try:
        stream = DepthStream(values[0], mixers, S, EPS)
        for out in values[1:]:
            inputs.append(stream.mix())
            stream.push(out)
        inputs.append(stream.finish())
    finally:
        for h in hooks:
            h.remove()
        for m in mixers:
            m.trace, m.trace_index = None, -1
    return logits, alphas, inputs


@pytest.mark.parametrize("S", [1, 3])
def test_depth_logits_and_weights_stay_fp32_under_bf16_autocast(S, mixing_kernel):
    """Sources in bf16, as a network under bf16 autocast produces them (a Swin stage input
    included): the logits, the depth softmax and the mix are float32 under CPU bf16 autocast and
    equal those of the same sources without autocast."""
    torch.manual_seed(3)
    d, L = 48, 7
    values = [(torch.randn(2, 5, d) * 3).bfloat16() for _ in range(L + 1)]
    mixers = [DepthMixer(d, n, f"c{i}") for i, n in enumerate(consumer_source_counts(L, S))]
    with torch.no_grad():
        for m in mixers:
            m.query.normal_(0, 0.5)
            m.gain.uniform_(0.5, 1.5)
    plain = record_stream(values, mixers, S)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = record_stream(values, mixers, S)
    counts = consumer_source_counts(L, S)
    for n, lp, lc in zip(counts, plain[0], cast[0]):
        assert len(lp) == len(lc) == n
        for a, b in zip(lp, lc):
            assert a.dtype == b.dtype == torch.float32
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    assert len(plain[1]) == len(cast[1]) == sum(n > 1 for n in counts)
    for a, b in zip(plain[1], cast[1]):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    for n, a, b in zip(counts, plain[2], cast[2]):
        if n > 1:  # a single-source consumer passes its source through unchanged
            assert a.dtype == b.dtype == torch.float32
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    # and the logits are those of the paper's RMSNorm, in fp32 from the bf16 sources
    m, v = mixers[-1], values[0].float()
    torch.testing.assert_close(cast[0][-1][0], (rms_norm(v, m.gain) * m.query).sum(-1).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("substrate,img,chans", [("vit_tiny", 32, 3), ("swin_demo", 28, 1)])
def test_models_route_in_fp32_under_bf16_autocast(substrate, img, chans, mixing_kernel):
    """Whole models under CPU bf16 autocast: the layers run in bf16, and every consumer's logits
    and mix are those of the paper's equations evaluated in fp32 on the (bf16) sources it got."""
    torch.manual_seed(4)
    model = create_model(substrate, "block", 10, img, chans).eval()
    randomise_mixers(model, seed=5)
    errors, dtypes = [], set()

    def tap(mixer, args, out):
        bank, partial = args[0], args[2]
        logits = consumer_logits(*args)
        values = [bank.values[i] for i in range(bank.size)] + ([] if partial is None else [partial])
        dtypes.add(logits.dtype)
        fp32 = [v.float() for v in values]
        want = torch.stack([(rms_norm(v, mixer.gain) * mixer.query).sum(-1) for v in fp32])
        errors.append((logits - want).abs().max().item())
        if mixer.n_sources > 1:
            dtypes.add(out.dtype)
            errors.append((out - paper_mix(fp32, mixer)).abs().max().item())

    hooks = [m.register_forward_hook(tap) for m in model.attnres]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), routing_capture(model) as trace:
        out = model(torch.randn(2, chans, img, img))
    for h in hooks:
        h.remove()
    assert out.dtype == torch.bfloat16  # the network itself did run under autocast
    assert dtypes == {torch.float32} and len(errors) > len(model.attnres)
    assert max(errors) < 1e-4, max(errors)  # bf16 logits would be off by about 1e-2
    batch = trace.result()
    assert ((batch.H > 0) & (batch.H < 1)).all()


def test_inverse_rms_keeps_float64_and_upcasts_bf16():
    v = torch.randn(3, 4, 16, dtype=torch.float64)
    want = 1 / torch.sqrt(v.pow(2).mean(-1) + EPS)
    assert inverse_rms(v, EPS).dtype == torch.float64
    torch.testing.assert_close(inverse_rms(v, EPS), want, rtol=1e-12, atol=0)
    assert inverse_rms(v.bfloat16(), EPS).dtype == torch.float32


@pytest.mark.parametrize("S", [1, 3])
def test_stream_passes_gradcheck_over_a_retained_graph(S, mixing_kernel):
    """torch.autograd.gradcheck in float64: the stream's hand-written gradients against finite
    differences, for every sub-layer output. gradcheck runs one backward pass per output element
    over the same retained graph, so this also checks that a second pass does not add to the
    first one's sums in the source bank (it did, before each pass started the bank afresh)."""
    torch.manual_seed(6)
    d, L = 4, 5
    mixers = [DepthMixer(d, n, f"c{i}").double() for i, n in enumerate(consumer_source_counts(L, S))]
    with torch.no_grad():
        for m in mixers:
            m.query.normal_(0, 0.5)
            m.gain.uniform_(0.5, 1.5)
    values = [torch.randn(2, 3, d, dtype=torch.float64, requires_grad=True) for _ in range(L + 1)]

    def stream_output(*vals):
        stream = DepthStream(vals[0], mixers, S, EPS)
        for v in vals[1:]:  # a sub-layer output that depends on its input, as in a network
            stream.push(v * torch.tanh(stream.mix()))
        return stream.finish()

    assert torch.autograd.gradcheck(stream_output, values, eps=1e-6, atol=1e-7, rtol=1e-6)
    loss = stream_output(*values).square().sum()
    first = torch.autograd.grad(loss, values, retain_graph=True)
    again = torch.autograd.grad(loss, values)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


@pytest.mark.parametrize("S", [1, 3])
def test_unreached_consumer_takes_nothing_from_an_earlier_step(S, mixing_kernel):
    """A consumer whose output the loss does not use is never reached by the backward pass, so
    its rows of the reused gradient blocks still hold the last step's values; here NaN, from a
    step that reached it with a NaN loss. The sources' gradients must not read them: they equal
    those of a stream with fresh blocks."""
    torch.manual_seed(7)
    d, L, skipped = 8, 6, 2
    mixers = [DepthMixer(d, n, f"c{i}") for i, n in enumerate(consumer_source_counts(L, S))]
    with torch.no_grad():
        for m in mixers:
            m.query.normal_(0, 0.5)
    values = [torch.randn(2, 3, d, requires_grad=True) for _ in range(L + 1)]

    def stream_output(buffers, skip=None):
        stream = DepthStream(values[0], mixers, S, EPS, buffers)
        for l, v in enumerate(values[1:]):
            h = stream.mix()  # consumer l's output
            stream.push(v if l == skip else v * torch.tanh(h))
        return stream.finish()

    reused = BankBuffers()
    nan_step = torch.autograd.grad(stream_output(reused).sum() * math.nan, values)
    assert all(g.isnan().all() for g in nan_step)
    assert reused.spares["out_grads"][1:].isnan().all()  # consumer 0 has one source and no row
    fresh = torch.autograd.grad(stream_output(BankBuffers(), skipped).square().sum(), values)
    again = torch.autograd.grad(stream_output(reused, skipped).square().sum(), values)
    for a, b in zip(fresh, again):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=0, atol=0)
