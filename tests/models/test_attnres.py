"""Attention-Residual substrates (arcal.models): faithfulness to the paper at initialisation,
routing capture, checkpoint compatibility with timm backbones, and any input geometry."""

import copy
import functools
import pickle

import numpy as np
import pytest
import torch

from arcal.models import create_model, load_backbone_checkpoint, routing_capture
from arcal.models.attnres import DepthMixer, consumer_source_counts

# (substrate, image size, channels): a small ViT with a class token, the demo Swin (stage-local)
SMALL = [("vit_tiny", 32, 3), ("swin_demo", 28, 1)]


def mixers(model):
    return [m for m in model.modules() if isinstance(m, DepthMixer)]


def with_baseline_weights(substrate, variant, img, chans, **kw):
    torch.manual_seed(0)
    base = create_model(substrate, "baseline", 10, img, chans, **kw).eval()
    ar = create_model(substrate, variant, 10, img, chans, **kw).eval()
    missing, unexpected = ar.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(k.startswith("attnres.") for k in missing)
    return base, ar


@pytest.mark.parametrize("substrate,img,chans", SMALL)
@pytest.mark.parametrize("variant", ["full", "block"])
def test_zero_init_attnres_equals_the_baseline_on_the_same_weights(substrate, img, chans, variant):
    """Uniform mixing is the residual sum divided by the source count, which every consumer's
    LayerNorm removes: equal up to the LayerNorm epsilon, so built with a tiny
    epsilon the two agree to float32 rounding."""
    tiny_eps = functools.partial(torch.nn.LayerNorm, eps=1e-12)
    base, ar = with_baseline_weights(substrate, variant, img, chans, norm_layer=tiny_eps)
    x = torch.randn(4, chans, img, img) * 3
    with torch.no_grad():
        ref, out = base(x), ar(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    # and the comparison is not vacuous: a trained-looking query changes the function
    with torch.no_grad():
        for m in mixers(ar):
            m.query.normal_(0, 1.0)
        assert (ar(x) - ref).abs().max() > 1e-2


@pytest.mark.parametrize("substrate,img,chans", SMALL)
def test_pseudo_queries_are_zero_and_gains_one_after_timm_init(substrate, img, chans):
    for variant in ("full", "block"):
        model = create_model(substrate, variant, 10, img, chans)
        assert mixers(model)
        for m in mixers(model):
            assert m.query.ndim == 1 and torch.count_nonzero(m.query) == 0
            assert torch.all(m.gain == 1)


@pytest.mark.parametrize("substrate,img,chans", SMALL)
@pytest.mark.parametrize("variant", ["full", "block"])
def test_routing_is_uniform_at_init(substrate, img, chans, variant):
    """Zero queries: weights sum to one and are uniform, so normalised entropy and normalised
    depth variance are exactly 1 for every consumer and image."""
    model = create_model(substrate, variant, 10, img, chans).eval()
    with routing_capture(model) as trace, torch.no_grad():
        model(torch.randn(3, chans, img, img))
    batch = trace.result()
    L = len(batch.consumers)
    assert L > 0 and batch.H.shape == batch.V.shape == (3, L)
    np.testing.assert_allclose(batch.H, 1.0, atol=1e-5)
    np.testing.assert_allclose(batch.V, 1.0, atol=1e-5)
    for n, alpha_sum in zip(batch.n_sources, batch.alpha_sum):
        assert n >= 2  # single-source mixers are left out of the trace
        np.testing.assert_allclose(alpha_sum / batch.n_images, 1.0 / n, atol=1e-5)
    if substrate.startswith("vit"):
        np.testing.assert_allclose(batch.H_cls, 1.0, atol=1e-5)
    else:
        assert batch.H_cls is None


@pytest.mark.parametrize("substrate,img,chans", SMALL)
@pytest.mark.parametrize("variant", ["full", "block"])
def test_every_multi_source_query_gets_gradient(substrate, img, chans, variant):
    torch.manual_seed(1)
    model = create_model(substrate, variant, 10, img, chans)
    loss = torch.nn.functional.cross_entropy(
        model(torch.randn(8, chans, img, img)), torch.randint(0, 10, (8,))
    )
    loss.backward()
    for m in mixers(model):
        if m.n_sources > 1:
            assert m.query.grad is not None and m.query.grad.abs().sum() > 0, m.name
        else:  # one source: the softmax is constant, nothing to learn
            assert m.query.grad is None or torch.count_nonzero(m.query.grad) == 0


def test_block_source_counts_follow_the_paper():
    """A block's first layer sees the embedding and the finished blocks, no
    partial sum; later layers add the running partial; the output mixer sees all blocks."""
    assert consumer_source_counts(8, 4) == [1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert consumer_source_counts(4, 1) == [1, 2, 3, 4, 5]  # block size 1 is Full AttnRes
    model = create_model("vit_tiny", "block", 10, 32, 3, block_size=4)  # 6 blocks = 12 layers
    assert [m.n_sources for m in mixers(model)] == consumer_source_counts(12, 4)


def test_timm_checkpoint_loads_with_only_mixers_missing(tmp_path):
    base = create_model("vit_tiny", "baseline", 10, 32, 3)
    path = tmp_path / "backbone.pth"
    torch.save(base.state_dict(), path)
    model = create_model("vit_tiny", "full", 10, 32, 3)
    report = load_backbone_checkpoint(model, path)
    assert report.missing and all(k.startswith("attnres.") for k in report.missing)
    assert not report.unexpected
    for k, v in base.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    base = create_model("vit_tiny", "baseline", 10, 32, 3)
    path = tmp_path / "backbone.pth"
    torch.save(base.state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="backbone.pth.*cannot be read"):
        load_backbone_checkpoint(create_model("vit_tiny", "full", 10, 32, 3), path)


@pytest.mark.parametrize("family", ["vit_tiny", "swin_tiny"])
@pytest.mark.parametrize("img,chans,classes", [(28, 1, 10), (32, 3, 100), (64, 3, 200)])
def test_any_image_size_channels_and_classes(family, img, chans, classes):
    for variant in ("baseline", "block"):
        model = create_model(family, variant, classes, img, chans).eval()
        with torch.no_grad():
            assert model(torch.randn(2, chans, img, img)).shape == (2, classes)
        assert create_model(**model.arcal_config).state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("substrate,img,chans", SMALL)
def test_capture_changes_nothing_and_baseline_has_no_trace(substrate, img, chans):
    torch.manual_seed(2)
    model = create_model(substrate, "block", 10, img, chans).eval()
    with torch.no_grad():
        for m in mixers(model):
            m.query.normal_(0, 0.5)
        x = torch.randn(3, chans, img, img)
        plain = model(x)
        with routing_capture(model) as trace:
            captured = model(x)
    assert torch.equal(plain, captured)
    batch = trace.result()
    assert ((batch.H > 0) & (batch.H < 1)).all()  # learned-looking routing is not uniform
    base = create_model(substrate, "baseline", 10, img, chans).eval()
    with routing_capture(base) as trace, torch.no_grad():
        base(x)
    empty = trace.result()
    assert empty.H.shape == (3, 0) and empty.V.shape == (3, 0) and len(empty.consumers) == 0


def test_full_attnres_keeps_memory_lean():
    """No stack of all sources at every consumer. The distinct storages kept for backward by Full
    AttnRes (saved tensors, and the source banks the graph's routing nodes hold) stay within 30%
    of the baseline's (the notes measured a naive stack at 5.4 times the baseline)."""

    def kept_bytes(variant):
        torch.manual_seed(0)
        model = create_model("vit_tiny", variant, 10, 32, 3)
        storages, banks = {}, set()

        def keep(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()

        with torch.autograd.graph.saved_tensors_hooks(lambda t: keep(t) or t, lambda t: t):
            out = model(torch.randn(8, 3, 32, 32)).sum()
        seen, todo = set(), [out.grad_fn]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if getattr(node, "bank", None) is not None:
                banks.add(id(node.bank))
                keep(node.bank.values)
                keep(node.bank.scores)
            todo.extend(next_node for next_node, _ in node.next_functions)
        return sum(storages.values()), len(banks)

    (full, full_banks), (baseline, _) = kept_bytes("full"), kept_bytes("baseline")
    assert full_banks == 1 and full < 1.3 * baseline


@pytest.mark.parametrize("variant", ["full", "block"])
def test_compiled_model_has_the_eager_gradients(variant):
    """torch.compile (Dynamo capture, eager backend) must not change the gradients: the source
    bank is written in the backward pass, which a traced graph would not replay."""
    torch.manual_seed(0)
    model = create_model("vit_demo", variant, 10, 28, 1).train()
    with torch.no_grad():
        for m in model.attnres:
            m.query.normal_(0, 0.3)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    params = list(model.parameters())
    grads = []
    for fwd in (model, torch.compile(model, backend="eager")):
        torch.manual_seed(1)  # the same dropout and drop-path draws
        grads.append(torch.autograd.grad(torch.nn.functional.cross_entropy(fwd(x), y), params))
    for name, a, b in zip([n for n, _ in model.named_parameters()], *grads):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=lambda m: f"gradient of {name}: {m}")


def train_step_grads(model, x, y):
    return torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))


@pytest.mark.parametrize("substrate,img,chans", SMALL)
def test_each_step_reuses_the_blocks_of_the_step_before(substrate, img, chans):
    """A freed source bank leaves its blocks to its stack's BankBuffers, the next step's bank takes
    them (the same storage goes round), and the gradients are those of a model that starts every
    step with fresh blocks; a copy or a pickle of the model starts without spares."""
    torch.manual_seed(0)
    model = create_model(substrate, "full", 10, img, chans).train()
    with torch.no_grad():
        for m in model.attnres:
            m.query.normal_(0, 0.3)
    x, y = torch.randn(4, chans, img, img), torch.randint(0, 10, (4,))
    stacks = model.attnres_buffers  # one per AttnRes stack: the ViT's, each Swin stage's
    first = train_step_grads(model, x, y)
    left = [{name: block.data_ptr() for name, block in b.spares.items()} for b in stacks]
    assert all(set(blocks) == {"values", "scores", "out_grads", "weights", "out_dots"} for blocks in left)
    again = train_step_grads(model, x, y)
    assert [{name: block.data_ptr() for name, block in b.spares.items()} for b in stacks] == left
    for a, b in zip(first, again):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert all(not b.spares for b in clone.attnres_buffers)
        for a, b in zip(first, train_step_grads(clone, x, y)):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_two_live_forward_passes_do_not_share_blocks():
    """Two forward passes in one graph: the second bank cannot take the first one's blocks, which
    go back only when the graph is freed, so the gradients are the sum of the separate ones."""
    torch.manual_seed(0)
    model = create_model("vit_demo", "full", 10, 28, 1).train()
    with torch.no_grad():
        for m in model.attnres:
            m.query.normal_(0, 0.3)
    x1, x2, y = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    params = list(model.parameters())
    ce = torch.nn.functional.cross_entropy
    together = torch.autograd.grad(ce(model(x1), y) + ce(model(x2), y), params)
    for both, a, b in zip(together, train_step_grads(model, x1, y), train_step_grads(model, x2, y)):
        torch.testing.assert_close(both, a + b)
