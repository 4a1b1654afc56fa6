"""CLIP encoders: severance, deep prompts, taps and positional embeddings behave as
docs/architecture.md says. Real modules with random weights; small inputs keep this fast."""
import pytest
import torch
import yaml
from torch import nn

from zs3_core.clip import (
    ClipConfig,
    ClipConfigError,
    TextTransformer,
    VisionTransformer,
    resize_pos_embed,
    severance_last_layer,
)
from zs3_core.clip.attention import ResidualAttentionBlock, SeverableAttention
from zs3_core.config import ConfigError

TINY = ClipConfig.tiny()


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    return VisionTransformer(TINY.vision).eval()


@pytest.fixture(scope="module")
def text():
    torch.manual_seed(1)
    return TextTransformer(TINY.text).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2))  # 4×5 patch grid


def _multihead_twin(attn: SeverableAttention, width: int, heads: int) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(width, heads, batch_first=True)
    mha.load_state_dict(attn.state_dict())  # same parameter names: the OpenAI checkpoint layout
    return mha.eval()


@pytest.mark.parametrize("causal", [False, True])
def test_severance_alpha_zero_is_plain_multihead_attention(causal):
    torch.manual_seed(3)
    attn = SeverableAttention(64, 2)
    x = torch.randn(2, 7, 64)
    mask = nn.Transformer.generate_square_subsequent_mask(7) if causal else None
    expected, _ = _multihead_twin(attn, 64, 2)(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(attn(x, alpha=0.0, causal=causal), expected, atol=1e-5, rtol=1e-5)


def test_severance_alpha_mixes_value_and_attention_linearly():
    torch.manual_seed(4)
    attn = SeverableAttention(64, 2)
    x = torch.randn(1, 5, 64)
    mixed = 0.3 * attn(x, alpha=1.0) + 0.7 * attn(x, alpha=0.0)
    torch.testing.assert_close(attn(x, alpha=0.3), mixed, atol=1e-5, rtol=1e-5)


def test_severance_alpha_one_block_keeps_tokens_independent():
    torch.manual_seed(5)
    block = ResidualAttentionBlock(64, 2).eval()
    x = torch.randn(1, 6, 64)
    x2 = x.clone()
    x2[:, 3] += 1.0
    changed = (block(x2, alpha=1.0) - block(x, alpha=1.0)).abs().amax(dim=-1)[0]
    assert changed[3] > 1e-3
    assert torch.all(changed[torch.arange(6) != 3] == 0)
    assert (block(x2) - block(x)).abs().amax(dim=-1)[0, 0] > 0  # plain attention does mix


def test_full_severance_changes_only_the_perturbed_patch(vision, images):
    severed = (1.0,) * TINY.vision.layers
    perturbed = images.clone()
    perturbed[:, :, 16:32, 32:48] += 1.0  # patch (row 1, column 2)
    with torch.no_grad():
        a = vision(images, severance=severed)
        b = vision(perturbed, severance=severed)
    changed = (a.patch_features - b.patch_features).abs().amax(dim=1)  # (B, h, w)
    assert torch.all(changed[:, 1, 2] > 1e-4)
    changed[:, 1, 2] = 0
    assert torch.all(changed == 0)
    torch.testing.assert_close(a.global_feature, b.global_feature, atol=0, rtol=0)


def test_severance_must_cover_every_layer(vision, images):
    with pytest.raises(ValueError, match="6 layers"):
        vision(images, severance=(1.0,))
    assert severance_last_layer(4) == (0.0, 0.0, 0.0, 1.0)


def test_no_prompts_equals_empty_prompts(vision, images):
    with torch.no_grad():
        plain = vision(images, taps=(2,))
        no_layers = vision(images, prompts=torch.zeros(0, 5, TINY.vision.width), taps=(2,))
        no_tokens = vision(images, prompts=torch.zeros(3, 0, TINY.vision.width), taps=(2,))
    for other in (no_layers, no_tokens):
        torch.testing.assert_close(other.patch_features, plain.patch_features, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(other.global_feature, plain.global_feature, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(other.taps[2], plain.taps[2], atol=1e-6, rtol=1e-6)


def _prompted_by_hand(vision, images, prompts):
    """The contract spelled out: [CLS, prompts, patches] after ln_pre, replaced before block i < L'."""
    out = vision(images)  # only for shapes
    b, n = images.shape[0], prompts.shape[1]
    x = vision.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([vision.class_embedding.expand(b, 1, -1), x], 1)
    x = vision.ln_pre(x + vision.positional_embedding_for(*out.patch_features.shape[-2:]))
    for i, block in enumerate(vision.transformer.resblocks):
        if i < prompts.shape[0]:
            keep = 1 if i == 0 else 1 + n
            x = torch.cat([x[:, :1], prompts[i].expand(b, n, -1), x[:, keep:]], 1)
        x = block(x)
    return x


def test_deep_prompts_sit_after_cls_and_are_replaced_per_layer(vision, images):
    prompts = torch.randn(3, 5, TINY.vision.width)
    with torch.no_grad():
        out = vision(images, prompts=prompts, taps=(0, 5))
        expected = _prompted_by_hand(vision, images, prompts)
        plain = vision(images)
    torch.testing.assert_close(out.tokens, expected, atol=1e-5, rtol=1e-5)
    assert out.tokens.shape == (2, 1 + 5 + 4 * 5, TINY.vision.width)
    assert out.taps[0].shape == out.taps[5].shape == (2, TINY.vision.width, 4, 5)  # prompts excluded
    assert out.patch_features.shape == (2, TINY.vision.output_dim, 4, 5)
    assert not torch.allclose(out.patch_features, plain.patch_features, atol=1e-3)


def test_taps_are_patch_grids_after_each_block(vision):
    x = torch.randn(1, 3, 48, 96)
    with torch.no_grad():
        out = vision(x, taps=(0, 3, 5))
    assert sorted(out.taps) == [0, 3, 5]
    assert all(t.shape == (1, TINY.vision.width, 3, 6) for t in out.taps.values())
    # the last tap is the last block's patch tokens, which ln_post + proj turn into patch features
    last = out.taps[5].flatten(2).transpose(1, 2)
    projected = (vision.ln_post(last) @ vision.proj).transpose(1, 2).reshape(1, -1, 3, 6)
    torch.testing.assert_close(projected, out.patch_features)
    with pytest.raises(ValueError, match="out of range"):
        vision(x, taps=(6,))


def test_resize_pos_embed_to_native_grid_is_identity():
    pos = torch.randn(1 + 14 * 14, 32)
    assert resize_pos_embed(pos, (14, 14)) is pos
    wide = torch.randn(1 + 6 * 10, 32)
    assert resize_pos_embed(wide, (6, 10), old_grid=(6, 10)) is wide


def test_resize_pos_embed_keeps_cls_and_reaches_any_grid():
    pos = torch.randn(1 + 14 * 14, 32)
    resized = resize_pos_embed(pos, (32, 20))
    assert resized.shape == (1 + 32 * 20, 32)
    torch.testing.assert_close(resized[0], pos[0], atol=0, rtol=0)
    with pytest.raises(ValueError, match="not a square grid"):
        resize_pos_embed(torch.randn(1 + 15, 8), (4, 4))


def test_pos_embed_is_cached_while_frozen_and_follows_updates():
    torch.manual_seed(6)
    vis = VisionTransformer(ClipConfig.tiny(image_size=64).vision)
    vis.requires_grad_(False)
    first = vis.positional_embedding_for(6, 6)
    assert vis.positional_embedding_for(6, 6) is first
    assert vis.positional_embedding_for(4, 4) is vis.positional_embedding
    with torch.no_grad():
        vis.positional_embedding.mul_(2)
    again = vis.positional_embedding_for(6, 6)
    assert again is not first
    torch.testing.assert_close(again, resize_pos_embed(vis.positional_embedding, (6, 6)))


def test_trainable_pos_embed_gets_gradients_at_other_grids():
    torch.manual_seed(7)
    vis = VisionTransformer(ClipConfig.tiny(image_size=64).vision)
    vis(torch.randn(1, 3, 96, 96)).global_feature.sum().backward()
    assert vis.positional_embedding.grad is not None
    assert vis.positional_embedding.grad.abs().sum() > 0


def test_vision_graph_exports_with_prompts_and_severance():
    cfg = ClipConfig.from_dict({"vision": {"image_size": 32, "width": 64, "layers": 2, "heads": 1, "output_dim": 16},
                                "text": {"width": 64, "layers": 1, "heads": 1, "output_dim": 16}})
    torch.manual_seed(8)
    vis = VisionTransformer(cfg.vision).eval()
    prompts = torch.randn(2, 3, 64)

    class Dense(nn.Module):
        def forward(self, x):
            return vis(x, prompts=prompts, severance=(0.0, 1.0)).patch_features

    x = torch.randn(1, 3, 48, 64)  # not the native grid: interpolation is traced too
    exported = torch.export.export(Dense(), (x,))
    torch.testing.assert_close(exported.module()(x), Dense()(x))


def _shared_prefix_tokens():
    # "<sot> a photo of a {name} <eot>" with the same 4 template ids at positions 1..4
    tokens = torch.zeros(3, 77, dtype=torch.long)
    tokens[:, 0] = 49406
    tokens[:, 1:5] = torch.tensor([320, 1125, 539, 320])
    tokens[:, 5] = torch.tensor([736, 1746, 2540])
    tokens[:, 6] = 49407
    return tokens


def test_text_prompts_with_zero_layers_equal_plain_encoder(text):
    tokens = _shared_prefix_tokens()
    with torch.no_grad():
        plain = text(tokens)
        empty = text(tokens, prompts=torch.zeros(0, 4, TINY.text.width))
        prompted = text(tokens, prompts=torch.randn(2, 4, TINY.text.width))
    assert plain.shape == (3, TINY.text.output_dim)
    torch.testing.assert_close(empty, plain)
    assert not torch.allclose(prompted, plain, atol=1e-3)


def test_text_prompts_from_own_activations_reproduce_the_template(text):
    """LDVC initialises deep text prompts from the encoder's activations of "a photo of a":
    fed back at the same positions in every layer, they must leave the output unchanged."""
    tokens = _shared_prefix_tokens()
    with torch.no_grad():
        acts = text.layer_inputs(tokens)  # (layers, C, 77, width)
        prompts = acts[:, 0, 1:5]  # causal: positions 1..4 see only the shared prefix
        torch.testing.assert_close(text(tokens, prompts=prompts, prompt_start=1), text(tokens), atol=1e-5, rtol=1e-5)
    assert acts.shape == (TINY.text.layers, 3, 77, TINY.text.width)


def test_text_output_is_read_at_end_of_text_and_ignores_padding(text):
    tokens = _shared_prefix_tokens()
    noisy = tokens.clone()
    noisy[:, 10:] = 5  # after end-of-text; the causal mask hides it from the EOT position
    with torch.no_grad():
        torch.testing.assert_close(text(noisy), text(tokens))
    with pytest.raises(ValueError, match="outside"):
        text(tokens, prompts=torch.zeros(1, 4, TINY.text.width), prompt_start=75)


def test_config_round_trips_through_yaml_and_rejects_unknown_keys():
    cfg = ClipConfig.vitb16(image_size=512)
    assert ClipConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert cfg.vision.grid_size == 32
    with pytest.raises(ConfigError, match="widht"):
        ClipConfig.from_dict({"vision": {"widht": 10}})
    with pytest.raises(ClipConfigError, match="output_dim"):
        ClipConfig.from_dict({"vision": {"output_dim": 64}})
    with pytest.raises(ConfigError, match="clip.text.layers: expected an integer"):
        ClipConfig.from_dict({"text": {"layers": "four"}})


def test_vitb16_at_512_gives_a_32x32_grid():
    torch.manual_seed(9)
    vis = VisionTransformer(ClipConfig.vitb16().vision).eval()
    with torch.no_grad():
        out = vis(torch.randn(1, 3, 512, 512), taps=(3, 7), severance=severance_last_layer(12))
    assert out.patch_features.shape == (1, 512, 32, 32)
    assert out.global_feature.shape == (1, 512)
    assert out.taps[3].shape == out.taps[7].shape == (1, 768, 32, 32)
    assert out.tokens.shape == (1, 1 + 32 * 32, 768)


def test_conv_stem_gives_the_patch_grid_and_sees_across_patch_borders():
    torch.manual_seed(3)
    vis = VisionTransformer(ClipConfig.tiny(image_size=64, stem="conv").vision).eval()
    assert not hasattr(vis, "conv1") and vis.patch_embed is vis.stem
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        embedded = vis.patch_embed(images)
        changed = images.clone()
        changed[..., 15, 15] += 5.0            # the last pixel of patch (0, 0)
        embedded_changed = vis.patch_embed(changed)
        assert vis(images).patch_features.shape == (1, TINY.vision.output_dim, 4, 4)
    assert embedded.shape == (1, TINY.vision.width, 4, 4)
    moved = (embedded_changed - embedded).abs().amax(dim=1)[0]
    # A patchify conv would change patch (0, 0) only. Overlapping 3x3 convolutions reach its
    # neighbours too; far patches move only through GroupNorm's per-image statistics, less.
    assert moved[:2, :2].min() > moved[2:, 2:].max()


def test_conv_stem_needs_a_power_of_two_patch_and_a_known_name():
    with pytest.raises(ClipConfigError, match="power-of-two patch_size, got 14"):
        ClipConfig.from_dict({"vision": {"image_size": 224, "patch_size": 14, "stem": "conv"}})
    with pytest.raises(ClipConfigError, match="vision.stem is 'resnet'"):
        ClipConfig.from_dict({"vision": {"stem": "resnet"}})


LATE = ClipConfig.from_dict({"vision": {**TINY.vision.__dict__, "class_token_block": 4}, "text": TINY.text.__dict__})


@pytest.fixture(scope="module")
def late_vision():
    torch.manual_seed(5)
    return VisionTransformer(LATE.vision).eval()


def test_late_class_token_restarts_from_its_embedding_at_its_block(late_vision, images):
    """The image embedding depends on blocks < k only through the patches they hand on."""
    with torch.no_grad():
        out = late_vision(images, taps=(3,))
        x = late_vision.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([late_vision.class_embedding.expand(2, 1, -1), x], 1)
        start = late_vision.ln_pre(x + late_vision.positional_embedding_for(4, 5))[:, :1]
        x = torch.cat([start, out.taps[3].flatten(2).transpose(1, 2)], 1)   # fresh class token + patches
        for block in late_vision.transformer.resblocks[4:]:
            x = block(x)
        expected = late_vision.ln_post(x[:, 0]) @ late_vision.proj
    torch.testing.assert_close(out.global_feature, expected, atol=1e-5, rtol=1e-5)


def test_late_class_patch_features_are_the_class_token_reading_one_patch(late_vision, images):
    severed = (1.0,) * LATE.vision.layers       # patches independent in every block
    perturbed = images.clone()
    perturbed[:, :, 16:32, 32:48] += 1.0        # patch (row 1, column 2)
    with torch.no_grad():
        a = late_vision(images, severance=severed, taps=(3, 4))
        b = late_vision(perturbed, severance=severed)
        # by hand for patch (0, 0): the class token whose attention in blocks 4 and 5 lands on it alone
        blocks = late_vision.transformer.resblocks
        start = late_vision.ln_pre(late_vision.class_embedding + late_vision.positional_embedding[0])
        y = start
        for block, tap in zip(blocks[4:], (a.taps[3], a.taps[4])):
            y = y + block.attn(block.ln_1(tap[:, :, 0, 0])[:, None], alpha=1.0)[:, 0]
            y = y + block.mlp(block.ln_2(y))
        expected = late_vision.ln_post(y) @ late_vision.proj
    torch.testing.assert_close(a.patch_features[:, :, 0, 0], expected, atol=1e-5, rtol=1e-5)
    changed = (a.patch_features - b.patch_features).abs().amax(dim=1)
    assert torch.all(changed[:, 1, 2] > 1e-4)
    changed[:, 1, 2] = 0
    assert torch.all(changed == 0)


def test_class_token_block_must_name_a_block():
    assert TINY.vision.class_token_block == 0
    with pytest.raises(ClipConfigError, match="class_token_block is 6"):
        ClipConfig.from_dict({"vision": {**TINY.vision.__dict__, "class_token_block": 6}})
    assert ClipConfig.from_dict(yaml.safe_load(yaml.safe_dump(LATE.to_dict()))) == LATE
