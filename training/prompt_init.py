"""DeOP's text-prompt initialisation: learn the prompt on crops of seen-class ground-truth masks.

DeOP "learn[s] a text prompt in an offline manner, same as [35]" (Sec. 3.1) and initialises
its end-to-end prompt from it (Sec. 3.2). SimBaseline's [35] reference learns it as a
classification task over the training set's ground-truth segments: each seen-class mask of a
training image is cut out by its bounding box, the pixels outside the mask are filled with the
mean pixel (`MASK_FILL: "mean"`, i.e. 0 after normalisation), the crop is resized to CLIP's
input, and frozen CLIP's image embedding is classified against the prompted text embeddings
of the seen classes (cross-entropy at CLIP's temperature). Only the prompt learns.

Only seen classes can reach it: the training set's labels already map unseen classes and
background to 255 (inductive GZS3), a crop is made only for a labelled class, and every pixel
outside that class's mask is replaced, not blended, before the crop is resized.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zs3_core.models.base import ZeroShotSegmentationModel
from zs3_core.losses import IGNORE_INDEX


def seen_class_crops(images: torch.Tensor, targets: torch.Tensor, size: int,
                     ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) normalised images, (B, H, W) labels → (K, 3, size, size) crops and (K,)
    labels, one per (image, labelled class): the class mask's bounding box with every pixel
    outside the mask set to 0 (the mean pixel), resized bilinearly."""
    if images.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"crops need labels at the image size: images {tuple(images.shape[-2:])}, "
                         f"labels {tuple(targets.shape[-2:])}")
    crops, labels = [], []
    for image, target in zip(images, targets):
        for label in target.unique().tolist():
            if label == ignore_index:
                continue
            mask = target == label
            rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            region = torch.where(mask, image, torch.zeros((), dtype=image.dtype, device=image.device))
            region = region[:, top:bottom, left:right].unsqueeze(0)
            crops.append(F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False)[0])
            labels.append(label)
    if not crops:
        return images.new_zeros(0, images.shape[1], size, size), torch.zeros(0, dtype=torch.long, device=images.device)
    return torch.stack(crops), torch.tensor(labels, dtype=torch.long, device=images.device)


class PromptLearningStage(ZeroShotSegmentationModel):
    """The prompt-learning stage's model: DeOP's frozen CLIP and its text prompt (the only
    trainable tensor), classifying seen-class crops (module doc)."""

    def __init__(self, deop: nn.Module, crop_size: int = 224):
        super().__init__()
        self.config = deop.config
        self.clip = deop.clip
        self.text_prompts = deop.text_prompts
        self.crop_size = crop_size
        self.logit_scale = deop.options.logit_scale
        self._encode = deop.encode_classes           # a bound method: DeOP is not a submodule here

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The prompt under DeOP's own name (`text_prompts.*`)."""
        return {f"text_prompts.{name}": p for name, p in self.text_prompts.named_parameters()}

    def lr_scale(self, name: str) -> float:
        return 1.0

    def encode_classes(self, names, template: str) -> torch.Tensor:
        return self._encode(names, template)

    def training_outputs(self, images: torch.Tensor, class_embeddings: torch.Tensor):
        """The crops need the labels, which only `compute_loss` receives: pass both on."""
        return images, class_embeddings

    def compute_loss(self, outputs, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        images, class_embeddings = outputs
        crops, labels = seen_class_crops(images, targets, self.crop_size)
        if labels.numel() == 0:      # no labelled pixel in the batch: a zero that keeps the graph
            loss = class_embeddings.sum() * 0.0
            return {"loss": loss, "crops": torch.zeros((), device=images.device)}
        with torch.no_grad():
            features = F.normalize(self.clip.encode_image(crops.to(images.dtype)), dim=-1)
        logits = self.logit_scale * features.float() @ class_embeddings.float().t()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach(), "crops": torch.tensor(float(labels.numel()), device=images.device)}
