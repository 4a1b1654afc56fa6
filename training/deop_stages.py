"""DeOP's training stages, run one after another by `zs3 train` (DeOP Sec. 3.1-3.2 and the
zsseg / DeOP reference, which trains each with its own config):

1. prompts (`train.prompt_stage_iters` > 0): the learned text prompt is initialised offline
   "as [35]" (SimBaseline) by classifying crops of seen-class ground-truth masks
   (training/prompt_init.py);
2. proposals (`train.proposal_stage_iters` > 0): the class-agnostic proposal network alone,
   with "only the mask loss ... classification loss is removed" (Sec. 3.1): Hungarian-matched
   mask focal + dice, on every decoder layer with `proposal_aux_losses` (MaskFormer);
3. the full model with the proposal network frozen (`DeOP.freeze_proposals`): no gradient of
   the semantic loss reaches it, its outputs stay those stage 2 left.

Each stage is an ordinary `train()` run over a stage model that exposes only that stage's
parameters; stages 1-2 write to `<out_dir>/stage_prompts` / `stage_proposals` (their own
checkpoints and logs, so `--resume` skips a finished stage) and stage 3 to `<out_dir>` itself.
`--max-iters` caps every stage.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from zs3_core.models.base import ZeroShotSegmentationModel
from zs3_core.models.deop.set_criterion import SetCriterionWeights, set_prediction_loss

from training.config import RunConfig

STAGE_FIELDS = ("prompt_stage_iters", "proposal_stage_iters")


class ProposalStage(ZeroShotSegmentationModel):
    """Stage 2's model: DeOP's proposal network and its mask loss, nothing of CLIP."""

    def __init__(self, deop: nn.Module):
        super().__init__()
        self.config = deop.config
        self.options = deop.options
        self.proposals = deop.proposals

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The proposal parameters under DeOP's own names, so the stage's checkpoints name them alike."""
        return {f"proposals.{name}": p for name, p in self.proposals.named_parameters() if p.requires_grad}

    def lr_scale(self, name: str) -> float:
        """MaskFormer's backbone multiplier for the (pre-trained) backbone, 1 elsewhere."""
        return self.options.proposal_backbone_lr_scale if name.startswith("proposals.backbone.") else 1.0

    def encode_classes(self, names, template: str) -> torch.Tensor:
        """No text side here: a (C, 1) placeholder that only carries the class count."""
        return torch.zeros(len(names), 1)

    def training_outputs(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> dict:
        masks = self.proposals(images, every_layer=self.options.proposal_aux_losses)
        return {"masks": masks if isinstance(masks, list) else [masks], "classes": class_embeddings.shape[0]}

    def compute_loss(self, outputs: dict, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class-agnostic set loss: matching and loss by mask cost only (class weight 0), summed
        over the decoder layers given (the last one's terms are logged)."""
        opts = self.options
        weights = SetCriterionWeights(class_weight=0.0, mask_weight=opts.mask_weight, dice_weight=opts.mask_dice_weight,
                                      focal_alpha=opts.focal_alpha, focal_gamma=opts.focal_gamma)
        loss, terms = None, {}
        for masks in outputs["masks"]:
            b, n = masks.shape[:2]
            no_classes = masks.new_zeros(b, n, outputs["classes"] + 1)    # void index only; not scored
            terms = set_prediction_loss(no_classes, masks, targets, weights)
            loss = terms["loss"] if loss is None else loss + terms["loss"]
        return {"loss": loss, "loss_mask": terms["loss_mask"], "loss_dice": terms["loss_dice"]}


def stage_run(run: RunConfig, name: str, iterations: int, **train_fields) -> RunConfig:
    """The run config of an early stage: its iterations, its own out_dir, no nested stages and
    no validation (the final stage validates the whole model), plus `train_fields`."""
    changes = {field: 0 for field in STAGE_FIELDS}
    changes.update(iterations=iterations, out_dir=str(Path(run.train.out_dir) / f"stage_{name}"), eval_every=0,
                   **train_fields)
    raw = copy.deepcopy(run.raw)
    raw.setdefault("train", {}).update(changes)
    return dataclasses.replace(run, train=dataclasses.replace(run.train, **changes), raw=raw)


def train_in_stages(run: RunConfig, model: Optional[nn.Module] = None, max_iters: Optional[int] = None,
                    dry_run: bool = False, resume: bool = False):
    """Prompts, proposals, then the full model with frozen proposals (module doc); returns the
    last stage's TrainResult."""
    from training.train import train

    if model is None:
        from zs3_core.models import build_model
        model = build_model(run.model)
    if not hasattr(model, "freeze_proposals"):
        raise ValueError(f"train.prompt_stage_iters / proposal_stage_iters are DeOP's stages; "
                         f"{type(model).__name__} has none (set both to 0)")
    cfg = run.train
    if cfg.prompt_stage_iters:
        from training.prompt_init import PromptLearningStage
        train(stage_run(run, "prompts", cfg.prompt_stage_iters, loss_stride=1), PromptLearningStage(model, cfg.prompt_crop_size),
              max_iters, dry_run, resume, single_stage=True)
    if cfg.proposal_stage_iters:
        train(stage_run(run, "proposals", cfg.proposal_stage_iters), ProposalStage(model), max_iters, dry_run,
              resume, single_stage=True)
        model.freeze_proposals()
    return train(run, model, max_iters, dry_run, resume, single_stage=True)
