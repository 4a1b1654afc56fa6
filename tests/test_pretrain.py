"""`zs3 pretrain`: contrastive CLIP pre-training on captioned synthetic scenes.

Real modules, real files: a few steps of the real loop write a weights file that the CLIP
loader and the segmentation configs read back; the loss and the captions are checked on
their own terms.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from zs3.cli import main as zs3
from zs3_core.clip import CLIP, ClipConfig, load_clip, severance_last_layer
from zs3_core.clip.tokenizer import ClipTokenizer
from zs3_core.config import REPO_ROOT, ConfigError
from zs3_core.synthetic import SyntheticWorld, WorldConfig
from training.pretrain import (CaptionedBatches, contrastive_loss, load_pretrain_config, pretraining_loss,
                               severed_patch_embedding, single_object_world)

CONFIG = REPO_ROOT / "config" / "pretrain" / "tiny_clip_synthetic.yaml"
SMALL = ["train.batch_size=4", "train.log_every=1", "data.eval_scenes=8", "data.num_workers=0",
         "train.warmup_iters=1", "data.world.image_size=[64, 64]", "data.shape_variants=2"]


def test_shipped_config_is_the_tiny_preset_at_the_world_size_with_a_short_context():
    config = load_pretrain_config(CONFIG)
    tiny = ClipConfig.tiny(image_size=128, stem="conv")
    assert config.clip.vision == tiny.vision
    assert config.clip.text == dataclasses.replace(tiny.text, context_length=32)
    assert config.clip.text.vocab_size == 49408          # the real BPE vocabulary
    assert config.data.world["seed"] != 0                 # never the segmentation world's scenes


def test_contrastive_loss_is_low_for_matched_pairs_and_symmetric():
    features = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    matched = contrastive_loss(features, features, torch.tensor(100.0))
    shuffled = contrastive_loss(features, features.roll(1, 0), torch.tensor(100.0))
    assert matched < 0.05 < math.log(8) < shuffled
    other = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    assert torch.isclose(contrastive_loss(features, other, torch.tensor(10.0)),
                         contrastive_loss(other, features, torch.tensor(10.0)))


def test_severed_patch_embedding_equals_a_full_severed_pass():
    """The dense term's shortcut (last block on the patch tokens alone) must be exactly what
    DeOP and the baseline compute: a whole pass with severance on the last block."""
    torch.manual_seed(0)
    clip = CLIP(ClipConfig.tiny(image_size=64)).eval()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        image_embedding, patch_embedding = severed_patch_embedding(clip, images)
        layers = clip.config.vision.layers
        full = clip.visual(images, severance=severance_last_layer(layers)).patch_features
        expected = torch.nn.functional.normalize(full.flatten(2), dim=1).mean(-1)
        assert torch.allclose(patch_embedding, expected, atol=1e-5)
        assert torch.allclose(image_embedding, clip.encode_image(images), atol=1e-5)


def test_dense_alignment_term_trains_the_severed_patches_towards_the_captions():
    """With weight 0 the loss is CLIP's alone; with a weight, a few steps make the mean severed
    patch feature pick its own caption."""
    torch.manual_seed(0)
    clip = CLIP(ClipConfig.tiny(image_size=64)).train()
    images, tokens = torch.randn(6, 3, 64, 64), torch.randint(1, 400, (6, 8))

    def patch_accuracy():
        with torch.no_grad():
            _, patches = severed_patch_embedding(clip, images)
            text = clip.encode_text(tokens)
        return (patches @ text.t()).argmax(1).eq(torch.arange(6)).float().mean().item()

    with torch.no_grad():
        plain = pretraining_loss(clip, images, tokens, 0.0)
        image_features, text_features, scale = clip(images, tokens)
        assert torch.isclose(plain, contrastive_loss(image_features, text_features, scale, tokens), atol=1e-5)
        assert pretraining_loss(clip, images, tokens, 1.0) > plain
    before = patch_accuracy()
    optimizer = torch.optim.Adam(clip.parameters(), lr=1e-3)
    for _ in range(30):
        optimizer.zero_grad()
        pretraining_loss(clip, images, tokens, 1.0).backward()
        optimizer.step()
    assert before < 0.5 < patch_accuracy() == 1.0


def test_identical_captions_are_all_positives():
    """Two images captioned alike: strict InfoNCE keeps pulling the caption towards one image
    and away from the other; with shared targets the caption sits at its optimum between them."""
    images = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), dim=-1)
    captions = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    tokens = torch.tensor([[1, 5, 2], [1, 5, 2], [1, 7, 2]])
    scale = torch.tensor(50.0)

    def caption_gradient(tokens_or_none):
        text = captions.clone().requires_grad_(True)
        contrastive_loss(images, text, scale, tokens_or_none).backward()
        return text.grad.abs().max().item()

    assert caption_gradient(tokens) < 1e-6
    assert caption_gradient(None) > 0.1


def test_shape_variant_batches_differ_only_in_shape_words():
    world = SyntheticWorld(WorldConfig(seed=1, image_size=(64, 64)))
    batches = CaptionedBatches(world, ClipTokenizer(context_length=32), 12, (0, 0, 0), (1, 1, 1), variants=6)
    images, tokens = batches.batch(0)
    assert images.shape == (12, 3, 64, 64) and len({tuple(t.tolist()) for t in tokens}) == 12
    first = world.shape_variants(0, 6)
    colour_words = [[w for w in s.caption.split() if w in world.config.colours] for s in first]
    assert all(words == colour_words[0] for words in colour_words)
    with pytest.raises(ValueError, match="multiple"):
        CaptionedBatches(world, ClipTokenizer(context_length=32), 8, (0, 0, 0), (1, 1, 1), variants=6)


def test_captions_name_every_visible_class_including_unseen():
    world = SyntheticWorld(WorldConfig(seed=1, image_size=(64, 64)))
    batches = CaptionedBatches(world, ClipTokenizer(context_length=77), 16, (0, 0, 0), (1, 1, 1))
    images, tokens = batches.batch(3)
    assert images.shape == (16, 3, 64, 64) and tokens.shape == (16, 77)
    named_unseen = 0
    for i in range(16):
        scene = world.scene(3 * 16 + i)
        for cid in scene.class_ids:
            assert world.class_names[cid] in scene.caption
            named_unseen += cid in world.unseen_class_ids
        assert tokens[i].argmax() > 0                     # an end-of-text token, not truncated away
    assert single_object_world({"seed": 1}).scene(0).objects.__len__() == 1
    # over a few hundred scenes every unseen class is named somewhere
    named = {c for k in range(200) for c in world.scene(k).class_ids}
    assert set(world.unseen_class_ids) <= named


def test_pretrain_command_writes_weights_that_the_clip_loader_reads(tmp_path):
    out = tmp_path / "pt"
    args = ["pretrain", str(CONFIG), "--out", str(out), "--max-iters", "3", "--set", "train.initial_temperature=0.05"]
    for item in SMALL:
        args += ["--set", item]
    assert zs3(args) == 0
    weights = out / "clip.safetensors"
    assert weights.is_file() and (out / "metrics.json").is_file() and (out / "log.csv").is_file()
    clip = load_clip(weights, load_pretrain_config(CONFIG, overrides=SMALL).clip)
    assert clip.visual.stem.proj.weight.dtype == torch.float32      # stored fp16, loaded fp32
    inferred = load_clip(weights)                                    # architecture from the shapes alone
    assert inferred.config.text.context_length == 32 and inferred.config.vision.width == 192
    assert inferred.config.vision.stem == "conv" and inferred.config.vision.patch_size == 16
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and all(math.isfinite(float(r.split(",")[1])) for r in rows[1:])
    assert abs(float(rows[1].split(",")[2]) - 1 / 0.05) < 0.1       # the scale starts at 1 / temperature


def test_pretrain_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        load_pretrain_config(CONFIG, overrides=["train.batch_size=1"])
    with pytest.raises(ConfigError, match="save_dtype"):
        load_pretrain_config(CONFIG, overrides=["train.save_dtype=int8"])
    with pytest.raises(ConfigError, match="shape_variants"):
        load_pretrain_config(CONFIG, overrides=["data.shape_variants=7"])
    with pytest.raises(ConfigError, match="initial_temperature"):
        load_pretrain_config(CONFIG, overrides=["train.initial_temperature=0.001"])
    with pytest.raises(ConfigError, match="multiple of data.shape_variants"):
        load_pretrain_config(CONFIG, overrides=["train.batch_size=128"])
    with pytest.raises(ValueError, match="objects"):
        load_pretrain_config(CONFIG, overrides=["data.world.objects=[0, 2]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("clip: tiny\nmodel: {}\n")
    with pytest.raises(ConfigError, match="model"):
        load_pretrain_config(bad)
    assert zs3(["pretrain", str(bad)]) == 2
