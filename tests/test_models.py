"""Encoders and translation transformers against supplement Table 1 and §A.1."""

from __future__ import annotations

import math

import pytest
import torch

from avsa_train.models import Conv2D10, CrossModalTranslator, R2Plus1D18


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- video encoder


def test_video_encoder_table1_shapes_width1():
    torch.manual_seed(0)
    model = R2Plus1D18().eval()
    with torch.no_grad():
        feat, maps = model(torch.randn(1, 3, 8, 112, 112), return_maps=True)
    assert feat.shape == (1, 512)
    # Table 1: (C, X_t, X_s, X_s) per level
    assert maps["conv1"].shape == (1, 64, 8, 56, 56)
    assert maps["block2"].shape == (1, 64, 8, 56, 56)
    assert maps["block3"].shape == (1, 128, 4, 28, 28)
    assert maps["block4"].shape == (1, 256, 2, 14, 14)
    assert maps["block5"].shape == (1, 512, 1, 7, 7)
    # global max pool of the last map
    assert torch.allclose(feat, maps["block5"].amax(dim=(2, 3, 4)))
    assert_levels_end_in_relu(maps)


def assert_levels_end_in_relu(maps: dict[str, torch.Tensor]) -> None:
    """Table 1: "ReLU activations ... at each layer": every level's map has nothing negative and a good share of
    exact zeros (a map without its ReLU has about half its values below 0)."""
    for name, m in maps.items():
        assert m.min() == 0 and (m == 0).float().mean() > 0.1, name


#: Supplement Table 1, video network: the rows ``(C, K_s, K_t, S_s, S_t)`` of each level; a block row holds its
#: two (2+1)D convolutions.
VIDEO_TABLE1 = {
    "conv1": [(64, 7, 3, 2, 1)],
    "block2.1": [(64, 3, 3, 1, 1), (64, 3, 3, 1, 1)],
    "block2.2": [(64, 3, 3, 1, 1), (64, 3, 3, 1, 1)],
    "block3.1": [(128, 3, 3, 2, 2), (128, 3, 3, 1, 1)],
    "block3.2": [(128, 3, 3, 1, 1), (128, 3, 3, 1, 1)],
    "block4.1": [(256, 3, 3, 2, 2), (256, 3, 3, 1, 1)],
    "block4.2": [(256, 3, 3, 1, 1), (256, 3, 3, 1, 1)],
    "block5.1": [(512, 3, 3, 2, 2), (512, 3, 3, 1, 1)],
    "block5.2": [(512, 3, 3, 1, 1), (512, 3, 3, 1, 1)],
}


def tran2018_mid(n_in: int, n_out: int, t: int = 3, d: int = 3) -> int:
    """Tran et al. 2018, §3.5: ``M = ⌊t·d²·N_in·N_out / (d²·N_in + t·N_out)⌋`` (written here from the paper)."""
    return (t * d * d * n_in * n_out) // (d * d * n_in + t * n_out)


def video_layers_from_table1(factorisation: str) -> tuple[list[tuple], list[int]]:
    """``(weight shape, stride)`` of every Conv3d in module order and the width of every BatchNorm3d that
    Table 1 implies: each (2+1)D convolution is a spatial ``1×K_s×K_s`` conv to M channels, BN, and a temporal
    ``K_t×1×1`` conv to C, then BN; a block that changes shape adds a ``1×1×1`` shortcut with its stride (the
    authors' ``BasicR2P1DBlock``). ``reference``: M = C and a full ``K_t×K_s×K_s`` conv1; ``tran2018``: M from
    :func:`tran2018_mid`, conv1 factorised as well."""
    convs, norms = [], []
    ((c, ks, kt, ss, st),) = VIDEO_TABLE1["conv1"]
    if factorisation == "reference":
        convs.append(((c, 3, kt, ks, ks), (st, ss, ss)))
        norms.append(c)
    else:
        m = tran2018_mid(3, c, t=kt, d=ks)
        convs += [((m, 3, 1, ks, ks), (1, ss, ss)), ((c, m, kt, 1, 1), (st, 1, 1))]
        norms += [m, c]
    cin = c
    for level, rows in VIDEO_TABLE1.items():
        if level == "conv1":
            continue
        block_in, (_, _, _, block_ss, block_st) = cin, rows[0]
        for c, ks, kt, ss, st in rows:
            m = c if factorisation == "reference" else tran2018_mid(cin, c)
            convs += [((m, cin, 1, ks, ks), (1, ss, ss)), ((c, m, kt, 1, 1), (st, 1, 1))]
            norms += [m, c]
            cin = c
        if block_in != cin or (block_ss, block_st) != (1, 1):
            convs.append(((cin, block_in, 1, 1, 1), (block_st, block_ss, block_ss)))
    return convs, norms


@pytest.mark.parametrize("factorisation", ["reference", "tran2018"])
def test_video_encoder_layers_and_parameter_count_follow_table1(factorisation):
    """Every convolution's shape and stride and every BatchNorm's width are Table 1's, and the model has no
    other parameters (no biases: each conv is followed by BN)."""
    model = R2Plus1D18(factorisation=factorisation)
    convs, norms = video_layers_from_table1(factorisation)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(tuple(m.weight.shape), m.stride) for m in layers] == convs
    assert all(m.bias is None for m in layers)
    assert [m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)] == norms
    assert n_params(model) == sum(math.prod(shape) for shape, _ in convs) + sum(2 * n for n in norms)


def test_video_encoder_width_quarter_and_tran2018_shapes():
    torch.manual_seed(0)
    for fact in ("reference", "tran2018"):
        model = R2Plus1D18(width=0.25, factorisation=fact).eval()
        with torch.no_grad():
            feat, maps = model(torch.randn(2, 3, 8, 112, 112), return_maps=True)
        assert feat.shape == (2, 128)
        assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
            "conv1": (16, 8, 56, 56),
            "block2": (16, 8, 56, 56),
            "block3": (32, 4, 28, 28),
            "block4": (64, 2, 14, 14),
            "block5": (128, 1, 7, 7),
        }
        assert model.out_dim == 128


def test_video_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        R2Plus1D18(width=0.25)(torch.randn(1, 8, 3, 112, 112))


# ---------------------------------------------------------------- audio encoder


def test_audio_encoder_table1_shapes_width1():
    torch.manual_seed(0)
    model = Conv2D10(in_channels=4).eval()
    with torch.no_grad():
        feat, maps = model(torch.randn(1, 4, 129, 100), return_maps=True)
    assert feat.shape == (1, 512)
    assert maps["conv1"].shape == (1, 64, 65, 50)
    assert maps["block2"].shape == (1, 64, 65, 50)
    assert maps["block3"].shape == (1, 128, 33, 25)
    assert maps["block4"].shape == (1, 256, 17, 13)
    assert maps["block5"].shape == (1, 512, 17, 13)
    assert torch.allclose(feat, maps["block5"].amax(dim=(2, 3)))
    assert_levels_end_in_relu(maps)


#: Supplement Table 1, audio network: ``(C, K_f, K_t, S_f, S_t)`` of conv1, block2.1 … block5.2.
AUDIO_TABLE1 = [
    (64, 7, 7, 2, 2),
    (64, 3, 3, 1, 1),
    (64, 3, 3, 1, 1),
    (128, 3, 3, 2, 2),
    (128, 3, 3, 1, 1),
    (256, 3, 3, 2, 2),
    (256, 3, 3, 1, 1),
    (512, 3, 3, 1, 1),
    (512, 3, 3, 1, 1),
]


@pytest.mark.parametrize("n_in", [1, 2, 4])
def test_audio_encoder_layers_and_parameter_count_follow_table1(n_in):
    """Nine conv–BN–ReLU layers of Table 1's shapes and strides on an N-channel spectrogram, nothing else."""
    model = Conv2D10(in_channels=n_in)
    cins = [n_in] + [c for c, *_ in AUDIO_TABLE1[:-1]]
    convs = [((c, cin, kf, kt), (sf, st)) for cin, (c, kf, kt, sf, st) in zip(cins, AUDIO_TABLE1)]
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(tuple(m.weight.shape), m.stride) for m in layers] == convs
    assert all(m.bias is None for m in layers)
    norms = [m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == [c for c, *_ in AUDIO_TABLE1]
    assert n_params(model) == sum(math.prod(shape) for shape, _ in convs) + 2 * sum(norms)


@pytest.mark.parametrize("n_in", [1, 2, 4])
def test_audio_encoder_channels_width_and_mel_input(n_in):
    torch.manual_seed(0)
    model = Conv2D10(in_channels=n_in, width=0.25).eval()
    with torch.no_grad():
        feat, maps = model(torch.randn(2, n_in, 128, 100), return_maps=True)
    assert feat.shape == (2, 128)
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "conv1": (16, 64, 50),
        "block2": (16, 64, 50),
        "block3": (32, 32, 25),
        "block4": (64, 16, 13),
        "block5": (128, 16, 13),
    }
    with pytest.raises(ValueError, match=f"\\[B, {n_in}, F, T\\]"):
        model(torch.randn(2, n_in + 1, 128, 100))


# ---------------------------------------------------------------- translation transformers


def _features(b=2, v=4, dim=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, dim, generator=g), torch.randn(b, v, dim, generator=g)


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
@pytest.mark.parametrize("heads", [1, 8])
def test_translator_shapes_and_unit_norm(depth, heads):
    torch.manual_seed(0)
    model = CrossModalTranslator(dim=128, depth=depth, proj_dim=32, heads=heads).eval()
    video, audio = _features()
    out = model(video, audio)
    for name in ("v2a", "a2v", "audio", "video"):
        t = getattr(out, name)
        assert t.shape == (2, 4, 32)
        assert torch.allclose(t.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    assert len(model.v2a_transformer) == depth and len(model.a2v_transformer) == depth


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_translator_is_permutation_equivariant_in_views(depth):
    """No positional encoding: permuting the V viewpoints permutes every output the same way."""
    torch.manual_seed(0)
    model = CrossModalTranslator(dim=128, depth=depth, proj_dim=32, heads=8).eval()
    video, audio = _features(v=5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = model(video, audio)
        out_p = model(video[:, perm], audio[:, perm])
    for a, b in zip(out, out_p):
        assert torch.allclose(a[:, perm], b, atol=1e-5)


@pytest.mark.parametrize(
    "depth, context, mixes", [(0, "attention", False), (2, "attention", True), (2, "none", False), (1, "none", False)]
)
def test_translator_context_mixes_views_only_with_a_transformer(depth, context, mixes):
    """With a transformer (D >= 1) a view's prediction depends on the other views (spatial context); with
    D = 0 or the per-viewpoint MLP (context none, the authors' NoCtx) it does not: changing view 0's input leaves
    the other views' outputs unchanged, while view 0's own output changes."""
    torch.manual_seed(0)
    model = CrossModalTranslator(dim=128, depth=depth, proj_dim=32, context=context).eval()
    video, audio = _features()
    video2, audio2 = video.clone(), audio.clone()
    video2[:, 0] += 1.0  # change view 0 only
    audio2[:, 0] -= 1.0
    with torch.no_grad():
        a, b = model(video, audio), model(video2, audio2)
    for name in ("v2a", "a2v"):
        others = (getattr(b, name)[:, 1:] - getattr(a, name)[:, 1:]).abs().max()
        own = (getattr(b, name)[:, 0] - getattr(a, name)[:, 0]).abs().max()
        assert (others > 1e-4) == mixes, (name, float(others))
        assert own > 1e-3


def test_per_viewpoint_mlp_is_the_authors_noctx_layer():
    """Two residual MLP blocks per layer, post-norm, ReLU after each: y = ReLU(LN(h + W4 ReLU(W3 h))),
    h = ReLU(LN(x + W2 ReLU(W1 x))); no attention parameters; D layers; a nonlinear map of each view."""
    from avsa_train.models import PerViewpointMLP

    torch.manual_seed(0)
    net = PerViewpointMLP(depth=2, dim=16, expansion=4, dropout=0.1).eval()
    assert len(net) == 2
    x = torch.randn(3, 5, 16)
    ref = x
    for layer in net:
        for block, norm in zip(layer.blocks, layer.norms):
            w1, w2 = block[0], block[2]
            ref = torch.relu(norm(ref + w2(torch.relu(w1(ref)))))
    torch.testing.assert_close(net(x), ref)
    assert not torch.allclose(net(x), x)
    tr = CrossModalTranslator(dim=64, depth=2, proj_dim=16, context="none")
    assert not any("attention" in k or "query" in k for k, _ in tr.named_parameters())
    with pytest.raises(ValueError, match="context must be one of"):
        CrossModalTranslator(dim=64, depth=2, context="mlp")


def test_translator_parameter_count_dim512_depth2():
    d, w1 = 512, 2048
    attention = 4 * (d * d + d)  # W_qr, W_key, W_val, W_0 (with bias)
    ffn = (d * w1 + w1) + (w1 * d + d)  # W_1, W_2
    layer = attention + ffn + 2 * (2 * d)  # two LayerNorms
    heads = 4 * (d * 128 + 128)
    assert n_params(CrossModalTranslator(dim=512, depth=2)) == 2 * 2 * layer + heads
    assert n_params(CrossModalTranslator(dim=512, depth=0)) == heads
    noctx_layer = 2 * ffn + 2 * (2 * d)  # two MLP blocks and their LayerNorms, no attention
    assert n_params(CrossModalTranslator(dim=512, depth=2, context="none")) == 2 * 2 * noctx_layer + heads


def test_translator_moments_axis_and_bad_input():
    torch.manual_seed(0)
    model = CrossModalTranslator(dim=64, depth=1, proj_dim=16).eval()
    g = torch.Generator().manual_seed(1)
    video, audio = torch.randn(2, 3, 4, 64, generator=g), torch.randn(2, 3, 4, 64, generator=g)
    out = model(video, audio)
    assert out.a2v.shape == (2, 3, 4, 16)
    # attention runs per moment: moment 1 alone gives the same result
    with torch.no_grad():
        alone = model(video[:, 1], audio[:, 1])
    assert torch.allclose(alone.v2a, out.v2a[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="must both be"):
        model(video, audio[..., :32])
