"""LDVC: Language-Driven Visual Consensus for zero-shot semantic segmentation.

Pipeline (LDVC Sec. 3.2–3.4): CLIP ViT with deep visual prompts → dense features F (B, D, h, w),
intermediate features F_i, global feature g; CLIP text encoder with deep language prompts →
class embeddings t; text adapter (eq. 3) → t′; local consensus transformer decoder
(eq. 4–12) → logits = X · t′ (eq. 13), per-class sigmoid scores (as ZegCLIP).
Trained with focal ×100 + dice ×1 (Sec. 4); only prompts, adapter and decoder train, unless
`finetune_vision_blocks` also trains the last image blocks (a deviation, for small CLIPs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zs3_core.config import ModelConfig, dataclass_from_dict
from zs3_core.losses import dice_loss, one_hot_targets, resize_to_target, sigmoid_focal_loss
from zs3_core.models.base import ZeroShotSegmentationModel
from zs3_core.models.ldvc.decoder import LocalConsensusDecoder
from zs3_core.models.prompts import (HAND_CRAFTED_PROMPT, TextDeepPrompts, VisualDeepPrompts,
                                          clip_tokenizer, encode_prompted_classes)
from zs3_core.models.ldvc.text_adapter import TextAdapter
from zs3_core.models.vision_finetuning import unfreeze_last_vision_blocks, vision_lr_scale


@dataclass(frozen=True)
class LDVCOptions:
    """The `model.options` section of an LDVC config (sources in config/models/ldvc_*.yaml)."""
    visual_prompt_tokens: int = 40          # per layer; 40 VOC, 100 COCO-Stuff (Sec. 4)
    visual_prompt_dropout: float = 0.1      # ZegCLIP
    prompt_norm: bool = True                # ZegCLIP's trainable LayerNorm before ln_post
    text_prompt_tokens: int = 6             # per layer (Sec. 4)
    text_prompt_init: str = HAND_CRAFTED_PROMPT   # "random" for N(0, 0.02) (Table 6 "Random")
    tap_layers: tuple[int, ...] = (7, 10)   # one intermediate CLIP block per decoder block
    decoder_blocks: int = 2                 # Table 9
    decoder_heads: int = 8
    decoder_mlp_ratio: float = 4.0
    windows_per_side: int = 8               # 64 windows of 4×4 tokens at 512² (Sec. 4)
    route_top_k: int = 16                   # Table 8
    finetune_vision_blocks: int = 0         # last N CLIP image blocks train too (0: frozen, the paper;
    finetune_lr_scale: float = 0.1          # models/vision_finetuning.py) at this × the decoder's rate
    focal_weight: float = 100.0             # Sec. 4
    dice_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_normalization: str = "present_pairs"   # ZegCLIP's (losses.py); "all_maps": mean over B·C maps

    def __post_init__(self):
        if len(self.tap_layers) != self.decoder_blocks:
            raise ValueError(f"model.options.tap_layers has {len(self.tap_layers)} entries but "
                             f"decoder_blocks is {self.decoder_blocks}: give one CLIP layer per block")


class LDVC(ZeroShotSegmentationModel):
    """(B, 3, S, S) image + (C, D) class embeddings → (B, C, S/p, S/p) logits (eq. 13)."""

    # The deep language prompts, learned at every text layer behind the trained template "{}.",
    # take the place of the hand-written context an ensemble varies (Sec. 3.3, Table 6): LDVC
    # keeps its template; synonyms still average.
    prompt_ensembles = False
    prompt_ensemble_note = "its deep language prompts, learned at every text layer, stand in for hand-written templates"

    def __init__(self, config: ModelConfig, clip):
        super().__init__()
        self.config = config
        self.options = dataclass_from_dict(LDVCOptions, config.options, "model.options")
        opts = self.options
        vision, text = clip.config.vision, clip.config.text
        bad = [i for i in opts.tap_layers if not 0 <= i < vision.layers]
        if bad:
            raise ValueError(f"model.options.tap_layers {bad} outside the vision tower's blocks 0..{vision.layers - 1}")
        self.clip = clip
        self.clip.requires_grad_(False)
        unfreeze_last_vision_blocks(clip, opts.finetune_vision_blocks, opts.finetune_lr_scale)
        self.visual_prompts = VisualDeepPrompts(vision.layers, opts.visual_prompt_tokens, vision.width,
                                                vision.patch_size, opts.visual_prompt_dropout)
        self.prompt_norm = nn.LayerNorm(vision.width) if opts.prompt_norm else nn.Identity()
        self.text_prompts = TextDeepPrompts(text.layers, opts.text_prompt_tokens, text.width)
        dim = clip.config.embed_dim
        self.text_adapter = TextAdapter(dim)
        self.decoder = LocalConsensusDecoder(dim, vision.width, opts.decoder_blocks, opts.decoder_heads,
                                             opts.windows_per_side, opts.route_top_k, opts.decoder_mlp_ratio)
        if opts.text_prompt_init != "random" and opts.text_prompt_tokens:
            tokenizer = clip_tokenizer(text.context_length)
            self.text_prompts.initialize_from_text(self.clip, tokenizer, opts.text_prompt_init)

    def lr_scale(self, name: str) -> float:
        return vision_lr_scale(name, self.options.finetune_lr_scale)

    def encode_classes(self, names: Sequence[str], template: str) -> torch.Tensor:
        """(C, D) normalised class embeddings with the deep language prompts; see
        `encode_prompted_classes` (template "{}.": the prompts replace "a photo of a")."""
        return encode_prompted_classes(self.clip, self.text_prompts, names, template)

    def encode_image(self, image: torch.Tensor):
        """Prompted CLIP image side → (F (B, D, h, w) normalised, g (B, D) normalised, taps)."""
        visual = self.clip.visual
        prompts = self.visual_prompts()
        out = visual(image, prompts=prompts, taps=self.options.tap_layers)
        n_prompts = 0 if prompts is None else prompts.shape[1]
        tokens = visual.ln_post(self.prompt_norm(out.tokens))
        b, _, h, w = out.patch_features.shape
        global_feature = tokens[:, 0] @ visual.proj
        if visual.config.class_token_block:
            # the class token's view of each patch is in the text space already; 300-step runs
            # on such a tiny CLIP: hIoU 16.3 from it, 13.8 from the last block's patch tokens
            patches = out.patch_features
        else:
            patches = (tokens[:, 1 + n_prompts:] @ visual.proj).transpose(1, 2).reshape(b, -1, h, w)
        taps = [out.taps[i] for i in self.options.tap_layers]
        return F.normalize(patches, dim=1), F.normalize(global_feature, dim=-1), taps

    def forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S), (C, D) → logits (B, C, h, w) at the patch grid, in train and eval mode."""
        features, global_feature, taps = self.encode_image(image)
        classes = self.text_adapter(class_embeddings.to(features.dtype), global_feature)   # (B, C, D)
        return self.decoder(features, taps, classes)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Independent per-class sigmoid scores, as ZegCLIP/LDVC train them."""
        return logits.sigmoid()

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Focal ×100 + dice ×1 (LDVC Sec. 4) on logits upsampled to the (B, H, W) targets.

        `outputs`: what forward returned (B, C, h, w); `targets`: int64 labels into the class
        list given to forward, 255 = ignored (all-zero one-hot row, as ZegCLIP).
        """
        opts = self.options
        logits = resize_to_target(outputs.float(), targets)
        onehot = one_hot_targets(targets, logits.shape[1])
        focal = sigmoid_focal_loss(logits, onehot, opts.focal_alpha, opts.focal_gamma, opts.focal_normalization)
        dice = dice_loss(logits.sigmoid(), onehot)
        loss = opts.focal_weight * focal + opts.dice_weight * dice
        return {"loss": loss, "loss_focal": focal.detach(), "loss_dice": dice.detach()}
