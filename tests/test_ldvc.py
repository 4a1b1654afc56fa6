"""LDVC: route attention, deep prompts, the decoder and the whole model (zs3_core.models.ldvc).

Random weights throughout. The tiny CLIP serves every test except the ViT-B/16 one, which runs
one 512×512 forward + backward of the real VOC config (tens of seconds on a CPU).
"""
import copy
import math
import time

import pytest
import torch
import torch.nn.functional as F

from export_check import assert_predict_exports_with_dynamic_classes
from zs3_core.clip import CLIP, ClipConfig, ClipTokenizer
from zs3_core.config import ModelConfig, load_model_config
from zs3_core.models import build_model
from zs3_core.models.ldvc import LDVC
from zs3_core.models.ldvc.decoder import LocalConsensusDecoder
from zs3_core.models.prompts import TextDeepPrompts, VisualDeepPrompts, encode_prompted_classes
from zs3_core.models.ldvc.route_attention import RouteAttention, window_merge, window_partition

PAPER_TRAINABLE_PARAMETERS = 11e6          # LDVC Sec. 4.3 (Table 9 discussion), ViT-B/16


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return CLIP(ClipConfig.tiny()).eval()


def tiny_ldvc(clip, **options) -> LDVC:
    options = {"tap_layers": [3, 5], "windows_per_side": 4, "route_top_k": 4, "visual_prompt_tokens": 4, **options}
    config = ModelConfig(name="ldvc", clip="tiny", input_size=128, prompt_template="{}.", options=options)
    return LDVC(config, clip)


def full_attention(module: RouteAttention, x: torch.Tensor) -> torch.Tensor:
    b, h, w, d = x.shape
    q, k, v = module.qkv(x.reshape(b, h * w, d)).chunk(3, dim=-1)
    heads = module.num_heads

    def split(t):
        return t.reshape(b, h * w, heads, d // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return module.proj(out.transpose(1, 2).reshape(b, h, w, d))


def test_route_attention_with_all_windows_routed_equals_full_attention():
    torch.manual_seed(1)
    attention = RouteAttention(dim=64, num_heads=4, windows_per_side=4, top_k=16)
    x = torch.randn(2, 8, 8, 64)
    torch.testing.assert_close(attention(x), full_attention(attention, x), atol=1e-5, rtol=1e-5)


def test_route_attention_tokens_only_see_their_routed_windows():
    torch.manual_seed(2)
    attention = RouteAttention(dim=32, num_heads=2, windows_per_side=4, top_k=3)
    x = torch.randn(1, 8, 8, 32, requires_grad=True)
    q, k, _ = window_partition(attention.qkv(x), 4).chunk(3, dim=-1)
    routed = attention.route(q.mean(2), k.mean(2))[0, 0]                   # windows seen by window 0
    attention(x)[0, :2, :2].sum().backward()                               # outputs of window 0
    touched = window_partition(x.grad.abs().sum(-1, keepdim=True), 4)[0, :, :, 0].sum(-1) > 0
    assert set(touched.nonzero().flatten().tolist()) == set(routed.tolist()) | {0}


def test_window_partition_round_trips():
    x = torch.arange(2 * 8 * 8 * 3, dtype=torch.float32).reshape(2, 8, 8, 3)
    windows = window_partition(x, 4)
    assert windows.shape == (2, 16, 4, 3)
    torch.testing.assert_close(windows[0, 1, 0], x[0, 0, 2])                # window (0, 1) starts at column 2
    torch.testing.assert_close(window_merge(windows, 4, 8, 8), x)


def test_route_attention_rejects_grids_that_do_not_split_into_windows():
    with pytest.raises(ValueError, match="divisible by 8 windows"):
        RouteAttention(32, 2, windows_per_side=8, top_k=4)(torch.randn(1, 12, 12, 32))
    with pytest.raises(ValueError, match="top_k"):
        RouteAttention(32, 2, windows_per_side=2, top_k=5)


def test_decoder_needs_one_intermediate_feature_per_block():
    decoder = LocalConsensusDecoder(dim=32, tap_width=48, blocks=2, num_heads=2, windows_per_side=2, top_k=2)
    features, classes = torch.randn(1, 32, 4, 4), torch.randn(1, 5, 32)
    assert decoder(features, [torch.randn(1, 48, 4, 4)] * 2, classes).shape == (1, 5, 4, 4)
    with pytest.raises(ValueError, match="2 blocks but got 1"):
        decoder(features, [torch.randn(1, 48, 4, 4)], classes)


def test_decoder_logits_can_leave_the_prior_quickly_with_unit_norm_classes():
    """The text adapter starts from unit-norm class embeddings and the decoder output is layer-
    normalised; logits X·t'/sqrt(D) were bounded to about +-1 around the prior bias (p <= 0.03)
    until weights grew. With the learned scale a few dozen steps put the target pixels above 0.5."""
    torch.manual_seed(0)
    decoder = LocalConsensusDecoder(dim=32, tap_width=48, blocks=2, num_heads=2, windows_per_side=2, top_k=2)
    features, taps = torch.randn(1, 32, 4, 4), [torch.randn(1, 48, 4, 4)] * 2
    classes = F.normalize(torch.randn(1, 3, 32), dim=-1)
    target = torch.zeros(1, 3, 4, 4)
    target[:, 0, :, :2] = 1.0
    target[:, 1, :, 2:] = 1.0
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(decoder(features, taps, classes), target).backward()
        optimizer.step()
    with torch.no_grad():
        probs = decoder(features, taps, classes).sigmoid()
    assert probs[target.bool()].min() > 0.5 and probs[~target.bool()].max() < 0.5


def test_zero_visual_prompt_tokens_equal_the_plain_encoder(tiny_clip):
    cfg = tiny_clip.config.vision
    prompts = VisualDeepPrompts(cfg.layers, 0, cfg.width, cfg.patch_size)
    images = torch.randn(1, 3, 64, 64)
    assert prompts() is None
    plain = tiny_clip.visual(images).patch_features
    torch.testing.assert_close(tiny_clip.visual(images, prompts=prompts()).patch_features, plain)
    empty = prompts.prompt_proj(prompts.prompt_tokens)                       # (layers, 0, width)
    torch.testing.assert_close(tiny_clip.visual(images, prompts=empty).patch_features, plain)


def test_a_late_class_token_tower_hands_ldvc_its_aligned_patch_features():
    torch.manual_seed(7)
    tiny = ClipConfig.tiny().to_dict()
    clip = CLIP(ClipConfig.from_dict({**tiny, "vision": {**tiny["vision"], "class_token_block": 5}})).eval()
    model = tiny_ldvc(clip).eval()
    image = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        patches, _, _ = model.encode_image(image)
        view = clip.visual(image, prompts=model.visual_prompts()).patch_features
    torch.testing.assert_close(patches, torch.nn.functional.normalize(view, dim=1))


def test_zero_text_prompt_tokens_equal_the_plain_encoder(tiny_clip):
    prompts = TextDeepPrompts(tiny_clip.text_config.layers, 0, tiny_clip.text_config.width)
    tokens = ClipTokenizer()(["a photo of a cat."])
    plain = F.normalize(tiny_clip.encode_text(tokens), dim=-1)
    torch.testing.assert_close(encode_prompted_classes(tiny_clip, prompts, ["cat"], "a photo of a {}."), plain)


def test_text_prompts_initialised_from_activations_reproduce_the_hand_crafted_prompt(tiny_clip):
    # With 4 slots exactly "a", "photo", "of", "a" are copied; under the causal mask those
    # activations do not depend on what follows, so the prompted "{}." encodes like the template.
    cfg = tiny_clip.text_config
    prompts = TextDeepPrompts(cfg.layers, 4, cfg.width)
    prompts.initialize_from_text(tiny_clip, ClipTokenizer(), "a photo of a")
    expected = F.normalize(tiny_clip.encode_text(ClipTokenizer()(["a photo of a red ring."])), dim=-1)
    torch.testing.assert_close(encode_prompted_classes(tiny_clip, prompts, ["red ring"], "{}."),
                               expected, atol=1e-5, rtol=1e-5)


def test_six_text_slots_hold_the_words_then_end_of_text_then_padding(tiny_clip):
    model = tiny_ldvc(tiny_clip)
    tokens = ClipTokenizer()(["a photo of a"])
    inputs = tiny_clip.layer_inputs(tokens)                                  # (layers, 1, L, width)
    torch.testing.assert_close(model.text_prompts.prompt_tokens.data, inputs[:, 0, 1:7])
    assert tokens[0, 5] == ClipTokenizer().eot_token_id and tokens[0, 6] == 0


def test_loss_treats_ignored_pixels_as_negatives(tiny_clip):
    model = tiny_ldvc(tiny_clip)
    logits = torch.full((1, 2, 8, 8), -20.0)
    target = torch.full((1, 128, 128), 255, dtype=torch.long)
    assert model.compute_loss(logits, target)["loss"].item() < 1e-6         # all-negative: nothing to learn
    losses = model.compute_loss(logits, torch.zeros(1, 128, 128, dtype=torch.long))
    assert set(losses) == {"loss", "loss_focal", "loss_dice"} and losses["loss"].item() > 1.0


def test_ldvc_predict_exports_with_a_dynamic_class_count(tiny_clip):
    assert_predict_exports_with_dynamic_classes(tiny_ldvc(tiny_clip).eval(), torch.randn(1, 3, 128, 128), 128)


def test_ldvc_vitb16_voc_forward_backward_trains_only_prompts_adapter_and_decoder():
    torch.manual_seed(0)
    config = load_model_config("config/models/ldvc_vitb16_voc.yaml")
    model = build_model(config)
    model.train()
    start = time.perf_counter()
    classes = model.encode_classes(["aeroplane", "bicycle", "bird"], config.prompt_template)
    logits = model(torch.randn(1, 3, 512, 512), classes)
    assert logits.shape == (1, 3, 32, 32)
    target = torch.randint(0, 3, (1, 512, 512))
    target[:, :100] = 255
    losses = model.compute_loss(logits, target)
    losses["loss"].backward()
    seconds = time.perf_counter() - start

    trainable = model.trainable_parameters()
    assert not any(name.startswith("clip.") for name in trainable)
    assert all(p.grad is None for p in model.clip.parameters())
    missing = [name for name, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    groups = {name.split(".")[0] for name in trainable}
    assert groups == {"visual_prompts", "prompt_norm", "text_prompts", "text_adapter", "decoder"}

    count = sum(p.numel() for p in trainable.values())
    print(f"\nLDVC ViT-B/16 VOC trainable parameters: {count / 1e6:.2f}M (paper: 11M); "
          f"forward+backward at 512x512: {seconds:.1f}s")
    # 10.72M on VOC (40 visual tokens) and 11.27M on COCO-Stuff (100 tokens): within 3% of 11M.
    # The decoder's 1x1 tap convs are what keep it there (3x3 convs would add 6.3M).
    assert math.isclose(count, PAPER_TRAINABLE_PARAMETERS, rel_tol=0.15)
    coco_count = count + (100 - 40) * 12 * 768                                # 100 visual tokens per layer
    assert math.isclose(coco_count, PAPER_TRAINABLE_PARAMETERS, rel_tol=0.15)


def test_finetuned_vision_blocks_train_are_stored_and_take_the_smaller_step(tiny_clip, tmp_path):
    from training.config import TrainConfig
    from training.train import build_optimizer
    from zs3_core.model_checkpoint import load_model_checkpoint, save_model_checkpoint

    layers = tiny_clip.config.vision.layers
    model = tiny_ldvc(copy.deepcopy(tiny_clip), finetune_vision_blocks=2, finetune_lr_scale=0.1).train()
    tuned = sorted({name.split(".")[4] for name in model.trainable_parameters() if name.startswith("clip.")})
    assert tuned == [str(layers - 2), str(layers - 1)]
    assert not any(p.requires_grad for p in model.clip.transformer.parameters())      # text tower frozen

    classes = model.encode_classes(["red circle", "blue ring"], "{}.")
    model.compute_loss(model(torch.randn(2, 3, 128, 128), classes), torch.randint(0, 2, (2, 128, 128)))["loss"].backward()
    last = model.clip.visual.transformer.resblocks[layers - 1]
    assert last.mlp.c_fc.weight.grad is not None and last.mlp.c_fc.weight.grad.abs().sum() > 0
    assert model.clip.visual.transformer.resblocks[0].mlp.c_fc.weight.grad is None

    optimizer = build_optimizer(model, TrainConfig(lr=1e-3))
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of[id(last.mlp.c_fc.weight)] == pytest.approx(1e-4)
    assert lr_of[id(model.decoder.logit_bias)] == pytest.approx(1e-3)

    with torch.no_grad():
        last.mlp.c_fc.weight.add_(1.0)
    path = save_model_checkpoint(tmp_path / "ldvc.safetensors", model, {"model": {"name": "ldvc"}}, 1)
    fresh = tiny_ldvc(copy.deepcopy(tiny_clip), finetune_vision_blocks=2)
    load_model_checkpoint(path, fresh)
    assert torch.equal(fresh.clip.visual.transformer.resblocks[layers - 1].mlp.c_fc.weight, last.mlp.c_fc.weight)
    assert not torch.equal(fresh.clip.visual.transformer.resblocks[layers - 1].mlp.c_fc.weight,
                           tiny_clip.visual.transformer.resblocks[layers - 1].mlp.c_fc.weight)


@pytest.mark.parametrize("options", [{"finetune_vision_blocks": -1}, {"finetune_vision_blocks": 99},
                                     {"finetune_lr_scale": 0.0}])
def test_finetune_options_out_of_range_are_refused(tiny_clip, options):
    with pytest.raises(ValueError, match="finetune"):
        tiny_ldvc(copy.deepcopy(tiny_clip), **options)
