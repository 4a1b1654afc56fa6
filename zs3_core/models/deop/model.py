"""DeOP: Decoupled One-Pass network for zero-shot semantic segmentation (Han et al. 2023).

Two decoupled streams, one CLIP pass per image (Sec. 4, Fig. 2):
1. class-agnostic mask proposals M (B, N, S/4, S/4) from a MaskFormer-style network;
2. the frozen CLIP image encoder with generalized patch severance α = 1 on its last layer
   (Sec. 4.1, Table 4) → F_V; the anchor heatmap decoder pools one embedding per proposal
   (Sec. 4.2) which is classified against the text embeddings plus a learned "void"
   embedding at temperature 100 (zsseg/SimBaseline);
3. mask-class combination (MaskFormer semantic inference):
   S_c = Σ_n sigmoid(M_n) · softmax(cls_n)[c] for the C classes (void dropped).
   Deviation: S is divided by the total mask mass Σ_n sigmoid(M_n) (the reference instead
   squashes it as sigmoid(3·S − 3)), which turns it into a
   per-pixel distribution over C classes + void (same argmax). Without it the sum of 100
   overlapping sigmoids starts far above 1 and a loss on probabilities has no gradient.

Prompt learning (Sec. 3.2, supp. Table 7 "Both"): a CoOp-style learned text context
(16 tokens at the input layer, N(0, 0.02); the paper initialises it offline as SimBaseline
does, by learning it on crops of seen-class ground-truth masks of the training set: the
prompt-learning stage of `zs3 train`, training/prompt_init.py) and an additive visual prompt, one
learned vector per patch added to the patch embeddings (zero-initialised so training starts
from plain CLIP). CLIP's own weights stay frozen unless `finetune_vision_blocks` trains the
last image blocks (a deviation, for small CLIPs without dense alignment).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zs3_core.clip import severance_last_layer
from zs3_core.config import ModelConfig, dataclass_from_dict
from zs3_core.losses import IGNORE_INDEX, dice_loss, one_hot_targets, probability_focal_loss, resize_to_target
from zs3_core.models.base import ZeroShotSegmentationModel
from zs3_core.models.deop.anchor_decoder import AnchorHeatmapDecoder
from zs3_core.models.deop.proposals import MaskProposalNetwork
from zs3_core.models.deop.set_criterion import SetCriterionWeights, set_prediction_loss
from zs3_core.models.prompts import TextDeepPrompts, encode_prompted_classes
from zs3_core.models.vision_finetuning import unfreeze_last_vision_blocks, vision_lr_scale

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeOPOptions:
    """The `model.options` section of a DeOP config (sources in config/models/deop_*.yaml)."""
    proposal_queries: int = 100                      # Sec. 5 implementation details
    proposal_backbone: str = "light_resnet_c"        # or "resnet101c", the paper's (proposals.py)
    proposal_channels: tuple[int, ...] = (64, 128, 256, 512)   # light_resnet_c only
    proposal_backbone_weights: Optional[str] = None  # ImageNet ResNet-101(c) file for resnet101c (the
                                                     # frozen BN statistics come only from it)
    proposal_backbone_lr_scale: float = 1.0          # MaskFormer: 0.1 for a pre-trained backbone
    proposal_aux_losses: bool = False                # proposal stage: mask loss on every decoder layer (MaskFormer)
    proposal_hidden_dim: int = 256                   # MaskFormer defaults from here on
    proposal_mask_dim: int = 256
    proposal_decoder_layers: int = 6
    proposal_heads: int = 8
    proposal_ffn_dim: int = 2048
    severance_alpha: float = 1.0                     # on the last CLIP layer only (Table 4)
    anchor_decoder_layers: int = 1                   # K (Table 5)
    anchor_heads: int = 8
    anchor_ffn_dim: int = 2048
    text_prompt_tokens: int = 16                     # zsseg / SimBaseline learned prompt
    additive_visual_prompt: bool = True              # supp. Table 7 "Both"
    logit_scale: float = 100.0                       # CLIP temperature
    focal_weight: float = 2.0                        # semantic map: reference code
    dice_weight: float = 0.8
    mask_weight: float = 20.0                        # matched proposal masks: MaskFormer's focal
    mask_dice_weight: float = 1.0                    # and dice weights (0 and 0: no matching)
    class_weight: float = 0.0                        # matched proposal classes (0: class-agnostic, the paper)
    no_object_weight: float = 0.1                    # unmatched → void, MaskFormer
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_normalization: str = "present_pairs"       # ZegCLIP's (losses.py); "all_maps": mean over B·C maps
    ignored_as_void: bool = True                     # ignored pixels are void targets of the semantic map
                                                     # (reference code); false leaves them out of it
    finetune_vision_blocks: int = 0                  # last N CLIP image blocks train too (0: frozen, the
    finetune_lr_scale: float = 0.1                   # paper; models/vision_finetuning.py) at this × the rate


class AdditivePatchPrompt(nn.Module):
    """A learned (width, g, g) map added to the patch embeddings (DeOP supp. B "adding prompts").

    Attached as a forward hook on CLIP's patch embedding (`visual.patch_embed`), because the CLIP tower has no
    additive-prompt input; resized bilinearly if the patch grid differs from g × g.
    """

    def __init__(self, width: int, grid: int):
        super().__init__()
        self.prompt = nn.Parameter(torch.zeros(1, width, grid, grid))

    def forward(self, patch_embeddings: torch.Tensor) -> torch.Tensor:
        prompt = self.prompt
        if prompt.shape[-2:] != patch_embeddings.shape[-2:]:
            prompt = F.interpolate(prompt, size=patch_embeddings.shape[-2:], mode="bilinear", align_corners=False)
        return patch_embeddings + prompt.to(patch_embeddings.dtype)

    def hook(self, _module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
        """Forward hook for CLIP's `visual.patch_embed` (a bound method, so deepcopy rebinds it)."""
        return self(output)


def mask_class_scores(probs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """MaskFormer's semantic inference with DeOP's normalisation (see module doc):
    (B, N, K) per-proposal class probabilities, (B, N, h, w) mask logits → (B, K, h, w)."""
    masks = mask_logits.sigmoid()
    weights = masks / masks.sum(dim=1, keepdim=True).clamp_min(1e-6)
    return torch.einsum("bnk,bnhw->bkhw", probs, weights)


class DeOP(ZeroShotSegmentationModel):
    """(B, 3, S, S) image + (C, D) class embeddings → (B, C, S/4, S/4) mask-class scores."""

    # The learned context sits at the input layer only, before the template's words, so a
    # template ensemble varies the words after it (the model trained with "{}."; the effect is
    # measured in docs/vocabularies.md).
    prompt_ensembles = True

    def __init__(self, config: ModelConfig, clip):
        super().__init__()
        self.config = config
        self.options = dataclass_from_dict(DeOPOptions, config.options, "model.options")
        opts = self.options
        vision, text = clip.config.vision, clip.config.text
        self.clip = clip
        self.clip.requires_grad_(False)
        unfreeze_last_vision_blocks(clip, opts.finetune_vision_blocks, opts.finetune_lr_scale)
        self.severance = severance_last_layer(vision.layers, opts.severance_alpha)
        self.proposals = MaskProposalNetwork(opts.proposal_queries, opts.proposal_channels, opts.proposal_hidden_dim,
                                             opts.proposal_mask_dim, opts.proposal_decoder_layers,
                                             opts.proposal_heads, opts.proposal_ffn_dim, opts.proposal_backbone)
        self.proposals_frozen = False
        self._frozen_proposal_parameters: dict[str, nn.Parameter] = {}
        if opts.proposal_backbone_weights:
            from zs3_core.models.deop.backbone_convert import load_backbone_weights
            load_backbone_weights(self.proposals.backbone, opts.proposal_backbone_weights)
        elif opts.proposal_backbone == "resnet101c":
            log.warning("model.options.proposal_backbone_weights is not set: ResNet-101c has RANDOM weights and "
                        "frozen BN statistics (the paper starts from ImageNet weights)")
        dim = clip.config.embed_dim
        self.anchor_decoder = AnchorHeatmapDecoder(dim, opts.proposal_queries, opts.anchor_decoder_layers,
                                                   opts.anchor_heads, opts.anchor_ffn_dim)
        self.void_embedding = nn.Parameter(torch.randn(1, dim) * dim ** -0.5)
        self.text_prompts = TextDeepPrompts(1, opts.text_prompt_tokens, text.width)
        self.visual_prompt = None
        if opts.additive_visual_prompt:
            self.visual_prompt = AdditivePatchPrompt(vision.width, config.input_size // vision.patch_size)
            self.clip.visual.patch_embed.register_forward_hook(self.visual_prompt.hook)

    def lr_scale(self, name: str) -> float:
        if name.startswith("proposals.backbone."):
            return self.options.proposal_backbone_lr_scale
        return vision_lr_scale(name, self.options.finetune_lr_scale)

    def freeze_proposals(self) -> None:
        """DeOP's second stage: the proposal network trained first (mask loss only) is fixed;
        it gets no gradient, stays in eval mode, and its mask losses are no longer computed.
        Its parameters still count as learned weights, so checkpoints keep storing them."""
        self._frozen_proposal_parameters.update({f"proposals.{name}": p for name, p in self.proposals.named_parameters()
                                                 if p.requires_grad})
        self.proposals.requires_grad_(False)
        self.proposals.eval()
        self.proposals_frozen = True

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters with gradients, plus the frozen proposal network's learned ones (checkpoints
        store the same names in both stages; the optimizer skips tensors without a gradient)."""
        frozen = self._frozen_proposal_parameters
        return {name: p for name, p in self.named_parameters() if p.requires_grad or name in frozen}

    def train(self, mode: bool = True) -> "DeOP":
        super().train(mode)
        if self.proposals_frozen:
            self.proposals.eval()
        return self

    def encode_classes(self, names: Sequence[str], template: str) -> torch.Tensor:
        """(C, D) normalised text classifiers with the learned context (template "{}.")."""
        return encode_prompted_classes(self.clip, self.text_prompts, names, template)

    def classify_proposals(self, image: torch.Tensor, mask_logits: torch.Tensor,
                           class_embeddings: torch.Tensor) -> torch.Tensor:
        """One severed CLIP pass + anchor pooling → (B, N, C + 1) class logits, void last."""
        features = self.clip.visual(image, severance=self.severance).patch_features    # (B, D, h, w)
        pooled, _ = self.anchor_decoder(features, mask_logits)                          # (B, N, D)
        classifiers = torch.cat([class_embeddings.to(pooled.dtype), self.void_embedding.to(pooled.dtype)])
        return self.options.logit_scale * pooled @ F.normalize(classifiers, dim=-1).t()

    def forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, C, S/4, S/4) class probabilities Σ_n w_n·softmax(cls_n)[c], w = normalised
        sigmoid(M) (the "logits" of the base interface are already probabilities here)."""
        mask_logits = self.proposals(image)
        class_logits = self.classify_proposals(image, mask_logits, class_embeddings)
        return mask_class_scores(class_logits.softmax(dim=-1)[..., :-1], mask_logits)

    def training_outputs(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> dict:
        """A dict for `compute_loss` with "semantic" (B, C + 1, S/4, S/4) including the void
        channel, "masks" (B, N, S/4, S/4) logits and "class_logits" (B, N, C + 1)."""
        mask_logits = self.proposals(image)
        class_logits = self.classify_proposals(image, mask_logits, class_embeddings)
        semantic = mask_class_scores(class_logits.softmax(dim=-1), mask_logits)
        return {"semantic": semantic, "masks": mask_logits, "class_logits": class_logits}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Identity up to rounding: forward already returns probabilities (the void mass is
        what the C classes leave to 1, so the unlabeled threshold sees it)."""
        return logits.clamp(0.0, 1.0)

    def compute_loss(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference loss on what `training_outputs` returned, a weighted sum of:

        - the semantic map (focal ×`focal_weight` + dice ×`dice_weight`), which trains the
          classification stream. Ignored pixels are void targets as in the reference code, or,
          with `ignored_as_void` false, left out (the focal mean then runs over labelled pixels).
          Under GZS3 they include the unseen objects of training images: as void targets they
          teach the classifier to reject exactly the objects it must later name;
        - the proposals' own mask losses (focal ×`mask_weight` + dice ×`mask_dice_weight`)
          after Hungarian matching to the class regions (`set_criterion`): the paper trains its
          class-agnostic proposals with mask losses. Without them no proposal owns a region and
          the proposals barely learn (best-proposal IoU 0.22 against 0.16 untrained, 0.74 with
          them after 600 synthetic iterations; bench/deop_proposal_quality.py);
        - optionally (`class_weight` > 0) MaskFormer's per-proposal class cross-entropy.
        """
        if not isinstance(outputs, dict):
            raise TypeError("DeOP.compute_loss needs the dict of training mode outputs that "
                            "training_outputs returns, not forward's probabilities")
        opts = self.options
        terms: dict[str, torch.Tensor] = {}
        loss = outputs["semantic"].new_zeros(())
        if opts.focal_weight or opts.dice_weight:
            semantic = resize_to_target(outputs["semantic"].float(), targets)
            onehot = one_hot_targets(targets, semantic.shape[1] - 1, void=True)
            scale = 1.0
            if not opts.ignored_as_void:
                labelled = (targets != IGNORE_INDEX).unsqueeze(1)
                semantic, onehot = semantic * labelled, onehot * labelled
                scale = labelled.numel() / labelled.sum().clamp_min(1)
            terms["loss_focal"] = scale * probability_focal_loss(semantic, onehot, opts.focal_alpha, opts.focal_gamma,
                                                                 normalization=opts.focal_normalization)
            terms["loss_dice"] = dice_loss(semantic, onehot)
            loss = loss + opts.focal_weight * terms["loss_focal"] + opts.dice_weight * terms["loss_dice"]
        mask_weight, mask_dice_weight = (0.0, 0.0) if self.proposals_frozen else (opts.mask_weight,
                                                                                   opts.mask_dice_weight)
        if mask_weight or mask_dice_weight or opts.class_weight:
            weights = SetCriterionWeights(class_weight=opts.class_weight, mask_weight=mask_weight,
                                          dice_weight=mask_dice_weight, no_object_weight=opts.no_object_weight,
                                          focal_alpha=opts.focal_alpha, focal_gamma=opts.focal_gamma)
            matched = set_prediction_loss(outputs["class_logits"], outputs["masks"], targets, weights)
            loss = loss + matched.pop("loss")
            terms.update({f"{name}_proposals" if name in ("loss_mask", "loss_dice") else name: value
                          for name, value in matched.items()})
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}
