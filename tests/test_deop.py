"""DeOP: proposals, anchor heatmaps, mask-class combination, severance and the whole model
(zs3_core.models.deop). Random weights; tiny CLIP except the one ViT-B/16 512×512 test."""
import time

import pytest
import torch

from export_check import assert_predict_exports_with_dynamic_classes
from zs3_core.clip import CLIP, ClipConfig
from zs3_core.config import ModelConfig, load_model_config
from zs3_core.models import build_model
from zs3_core.models.deop import DeOP
from zs3_core.models.deop.anchor_decoder import AnchorHeatmapDecoder
from zs3_core.models.deop.proposals import MaskProposalNetwork

SMALL = {"proposal_queries": 10, "proposal_channels": [16, 32, 64, 128], "proposal_hidden_dim": 64,
         "proposal_mask_dim": 32, "proposal_decoder_layers": 1, "proposal_ffn_dim": 64, "anchor_ffn_dim": 64}


def tiny_deop(stem: str = "patch", **options) -> DeOP:
    torch.manual_seed(0)
    config = ModelConfig(name="deop", clip="tiny", input_size=128, prompt_template="{}.", options={**SMALL, **options})
    return DeOP(config, CLIP(ClipConfig.tiny(stem=stem)))


def test_proposal_network_gives_class_agnostic_masks_at_quarter_resolution():
    network = MaskProposalNetwork(num_queries=7, channels=(16, 32, 64, 128), hidden_dim=32, mask_dim=16,
                                  decoder_layers=1, heads=4, ffn_dim=32)
    assert network(torch.randn(2, 3, 128, 96)).shape == (2, 7, 32, 24)


def test_anchor_heatmaps_vanish_outside_their_proposal_and_pooling_is_normalised():
    torch.manual_seed(1)
    decoder = AnchorHeatmapDecoder(dim=32, num_queries=3, layers=1, heads=2, ffn_dim=64)
    masks = torch.full((1, 3, 4, 4), -50.0)
    masks[0, 0, :2, :2] = 50.0                                     # proposal 0 covers the top-left quarter
    pooled, heatmaps = decoder(torch.randn(1, 32, 4, 4), masks)
    assert heatmaps[0, 0, 2:].abs().max() < 1e-12 and heatmaps[0, 0, :2, :2].min() > 0
    torch.testing.assert_close(pooled[0, 0].norm(), torch.tensor(1.0))       # empty proposals pool to ~0
    with pytest.raises(ValueError, match="3 queries but got 2"):
        decoder(torch.randn(1, 32, 4, 4), masks[:, :2])


def test_severance_is_on_the_last_clip_layer_only():
    model = tiny_deop()
    assert model.severance == (0.0,) * 5 + (1.0,)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_zero_additive_visual_prompt_leaves_clip_unchanged(stem):
    model = tiny_deop(stem)
    images = torch.randn(1, 3, 128, 128)
    with_prompt = model.clip.visual(images).patch_features
    model.visual_prompt.prompt.data.normal_()
    changed = model.clip.visual(images).patch_features
    model.visual_prompt.prompt.data.zero_()
    torch.testing.assert_close(model.clip.visual(images).patch_features, with_prompt)
    assert not torch.allclose(changed, with_prompt)


def test_scores_are_a_distribution_over_classes_and_void():
    model = tiny_deop()
    classes = model.encode_classes(["red ring", "blue square"], "{}.").detach()
    image = torch.randn(1, 3, 128, 128)
    model.train()
    outputs = model.training_outputs(image, classes)
    assert outputs["semantic"].shape == (1, 3, 32, 32) and outputs["class_logits"].shape == (1, 10, 3)
    torch.testing.assert_close(outputs["semantic"].sum(1), torch.ones(1, 32, 32))
    model.eval()
    with torch.no_grad():
        scores = model.predict(image, classes)
    torch.testing.assert_close(scores, outputs["semantic"][:, :2].detach(), atol=1e-5, rtol=1e-5)


def test_semantic_map_loss_sends_ignored_pixels_to_void_and_needs_training_outputs():
    model = tiny_deop(mask_weight=0, mask_dice_weight=0).train()   # the semantic-map terms alone
    semantic = torch.zeros(1, 3, 32, 32)
    semantic[:, 2] = 1.0                                            # everything predicted void
    ignored = torch.full((1, 128, 128), 255, dtype=torch.long)
    assert model.compute_loss({"semantic": semantic}, ignored)["loss"].item() < 1e-3
    assert model.compute_loss({"semantic": semantic}, torch.zeros_like(ignored))["loss"].item() > 1.0
    with pytest.raises(TypeError, match="training mode"):
        model.compute_loss(semantic, ignored)


def test_semantic_map_loss_can_leave_ignored_pixels_out():
    """ignored_as_void false: ignored pixels (background, unseen objects) neither reward nor
    punish any prediction, and the labelled pixels are scored as if they were the whole map."""
    model = tiny_deop(mask_weight=0, mask_dice_weight=0, ignored_as_void=False).train()
    target = torch.full((1, 128, 128), 255, dtype=torch.long)
    target[:, :64] = 1
    right = torch.zeros(1, 3, 32, 32)
    right[:, 1] = 1.0
    wrong_where_ignored = right.clone()
    wrong_where_ignored[:, :, 17:] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    loss_right = model.compute_loss({"semantic": right}, target)
    loss_ignored = model.compute_loss({"semantic": wrong_where_ignored}, target)
    torch.testing.assert_close(loss_ignored["loss"], loss_right["loss"])
    assert loss_right["loss"].item() < 1e-3
    void_on_labels = torch.zeros(1, 3, 32, 32)
    void_on_labels[:, 2] = 1.0                                      # void is never a target here
    everything_labelled = torch.ones(1, 128, 128, dtype=torch.long)
    half = model.compute_loss({"semantic": void_on_labels}, target)
    whole = model.compute_loss({"semantic": void_on_labels}, everything_labelled)
    torch.testing.assert_close(half["loss_focal"], whole["loss_focal"])
    assert half["loss"].item() > 1.0


def test_proposal_mask_losses_follow_matching_and_reach_the_proposal_network():
    model = tiny_deop().train()
    classes = model.encode_classes(["red ring", "blue square"], "{}.").detach()
    target = torch.full((1, 128, 128), 255, dtype=torch.long)
    target[:, 10:60, 10:60] = 1
    losses = model.compute_loss(model.training_outputs(torch.randn(1, 3, 128, 128), classes), target)
    assert {"loss_focal", "loss_dice", "loss_mask_proposals", "loss_dice_proposals"} <= set(losses)
    model.zero_grad()
    model.compute_loss(model.training_outputs(torch.randn(1, 3, 128, 128), classes), target)["loss"].backward()
    assert model.proposals.query_feat.weight.grad.abs().sum() > 0


def test_deop_predict_exports_with_a_dynamic_class_count():
    assert_predict_exports_with_dynamic_classes(tiny_deop().eval(), torch.randn(1, 3, 128, 128), 128, (1, 9))


def test_deop_vitb16_voc_forward_backward_keeps_clip_frozen():
    torch.manual_seed(0)
    config = load_model_config("config/models/deop_vitb16_voc.yaml")
    model = build_model(config).train()
    start = time.perf_counter()
    classes = model.encode_classes(["aeroplane", "bicycle", "bird"], config.prompt_template)
    outputs = model.training_outputs(torch.randn(1, 3, 512, 512), classes)
    assert outputs["semantic"].shape == (1, 4, 128, 128) and outputs["masks"].shape == (1, 100, 128, 128)
    target = torch.randint(0, 3, (1, 512, 512))
    target[:, :100] = 255
    model.compute_loss(outputs, target)["loss"].backward()
    seconds = time.perf_counter() - start

    trainable = model.trainable_parameters()
    assert all(p.grad is None and not p.requires_grad for p in model.clip.parameters())
    missing = [name for name, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    assert {name.split(".")[0] for name in trainable} == {
        "proposals", "anchor_decoder", "void_embedding", "text_prompts", "visual_prompt"}
    count = sum(p.numel() for p in trainable.values())
    proposals = sum(p.numel() for p in model.proposals.parameters())
    print(f"\nDeOP ViT-B/16 VOC trainable parameters: {count / 1e6:.2f}M "
          f"(proposal network {proposals / 1e6:.2f}M); forward+backward at 512x512: {seconds:.1f}s")


def test_finetuned_last_vision_block_gets_gradients_through_the_severed_layer():
    model = tiny_deop(finetune_vision_blocks=1, finetune_lr_scale=0.5).train()
    last = len(model.clip.visual.transformer.resblocks) - 1
    tuned = {name.split(".")[4] for name in model.trainable_parameters() if name.startswith("clip.")}
    assert tuned == {str(last)}
    assert model.lr_scale(f"clip.visual.transformer.resblocks.{last}.attn.in_proj_weight") == 0.5
    assert model.lr_scale("anchor_decoder.query_feat.weight") == 1.0
    classes = model.encode_classes(["red circle", "blue ring"], "{}.")
    outputs = model.training_outputs(torch.randn(2, 3, 128, 128), classes)
    model.compute_loss(outputs, torch.randint(0, 2, (2, 128, 128)))["loss"].backward()
    block = model.clip.visual.transformer.resblocks[last]
    assert block.mlp.c_proj.weight.grad is not None and block.mlp.c_proj.weight.grad.abs().sum() > 0
    assert model.clip.visual.transformer.resblocks[0].mlp.c_proj.weight.grad is None
