"""`zs3 pretrain`: contrastive image–caption pre-training of a (tiny) CLIP on the synthetic world.

Real CLIP learned from web alt-text that names every kind of object, including the ones a
segmentation benchmark later holds out. The synthetic world's captions do the same: each
caption names every class visible in its scene, seen and unseen alike, so the text encoder
learns colour and shape words that LDVC/DeOP can later compose for classes they never
segmented. The model is the very CLIP code ViT-B/16 uses; only the config is small.

Scenes are drawn fresh for every batch (a pure function of world config and index), so the
model never sees an image twice and there is no dataset to store. The output is a CLIP
state dict at OpenAI's parameter names (safetensors), which `model.clip_weights` loads.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, IterableDataset

from zs3_core.clip import CLIP, ClipConfig, ClipTokenizer
from zs3_core.config import IMAGENET_MEAN, IMAGENET_STD, ConfigError, dataclass_from_dict, load_yaml
from zs3_core.datasets.transforms import to_tensor
from zs3_core.model_checkpoint import STORAGE_DTYPES, write_atomically
from zs3_core.models.factory import resolve_clip_config
from zs3_core.synthetic import SyntheticWorld, WorldConfig
from training.precision import training_precision

log = logging.getLogger(__name__)

WEIGHTS_NAME = "clip.safetensors"


@dataclass(frozen=True)
class PretrainData:
    """The captioned world: `world` is a WorldConfig mapping; `eval_scenes` single-object
    scenes (from a disjoint index range) measure zero-shot classification."""

    world: dict = field(default_factory=dict)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    eval_scenes: int = 360
    eval_template: str = "a photo of a {}."
    num_workers: int = 1
    shape_variants: int = 1          # scenes per layout that differ only in shape (hard negatives)


@dataclass(frozen=True)
class PretrainSchedule:
    """AdamW with linear warm-up and cosine decay, as open_clip trains CLIP."""

    iterations: int = 1000
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_iters: int = 50
    seed: int = 0
    log_every: int = 25
    eval_every: int = 0
    save_dtype: str = "float16"      # the weights file; the weights train in fp32
    amp: bool = True                 # bf16 autocast where the hardware has it (training/precision.py)
    out_dir: str = "runs/pretrain"
    initial_temperature: float = 0.07    # CLIP's; the learned scale exp(logit_scale) starts at 1/this
    dense_alignment_weight: float = 0.0  # × the same loss on the mean severed patch feature (0: CLIP's loss alone)

    def __post_init__(self):
        from training.config import require_at_least

        require_at_least(self, "train", ("iterations", "batch_size", "log_every"), 1)
        if not 0.01 <= self.initial_temperature <= 1.0:
            raise ConfigError(f"train.initial_temperature must lie in [0.01, 1] (CLIP clamps the "
                              f"scale at 100), got {self.initial_temperature}")
        if self.batch_size < 2:
            raise ConfigError("train.batch_size must be >= 2: contrastive learning needs negatives")
        if self.dense_alignment_weight < 0:
            raise ConfigError(f"train.dense_alignment_weight must be >= 0, got {self.dense_alignment_weight}")
        if self.save_dtype not in STORAGE_DTYPES:
            raise ConfigError(f"train.save_dtype must be one of {sorted(STORAGE_DTYPES)}, got {self.save_dtype!r}")


@dataclass
class PretrainConfig:
    clip: ClipConfig
    data: PretrainData
    train: PretrainSchedule
    raw: dict


def load_pretrain_config(path: Union[str, Path], out_dir: Optional[str] = None,
                         overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read `clip` / `data` / `train` sections; `--set section.key=value` as for `zs3 train`."""
    from training.config import apply_overrides

    raw = apply_overrides(load_yaml(path), overrides)
    if out_dir is not None:
        raw.setdefault("train", {})["out_dir"] = str(out_dir)
    unknown = sorted(set(raw) - {"clip", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown pretrain config section(s) {unknown}; expected clip, data, train")
    data = dataclass_from_dict(PretrainData, raw.get("data"), "data")
    world = WorldConfig.from_dict(data.world)  # fail now, naming the field, not after model building
    schedule = dataclass_from_dict(PretrainSchedule, raw.get("train"), "train")
    if not 1 <= data.shape_variants <= len(world.shapes):
        raise ConfigError(f"data.shape_variants must be in [1, {len(world.shapes)}] (the number of shapes), "
                          f"got {data.shape_variants}")
    if schedule.batch_size % data.shape_variants:
        raise ConfigError(f"train.batch_size {schedule.batch_size} must be a multiple of "
                          f"data.shape_variants {data.shape_variants}")
    if raw.get("clip") is None:
        raise ConfigError("pretrain config needs `clip`: a preset name (tiny) or a {vision, text} mapping")
    clip = resolve_clip_config(raw["clip"], image_size=max(world.image_size))
    if schedule.dense_alignment_weight and clip.vision.class_token_block:
        raise ConfigError("train.dense_alignment_weight needs vision.class_token_block 0: a late class token "
                          "replaces the severed patch features the term trains")
    return PretrainConfig(clip, data, schedule, copy.deepcopy(raw))


def normalise_images(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """N × (H, W, 3) uint8 RGB → (N, 3, H, W) float32, normalised as the segmentation models feed CLIP."""
    return torch.stack([to_tensor(image, mean, std) for image in images])


class CaptionedBatches(IterableDataset):
    """Endless (images, tokens) batches of fresh scenes, `variants` shape variants per layout:
    batch k holds layouts k·L … k·L + L − 1 with L = B / variants."""

    def __init__(self, world: SyntheticWorld, tokenizer: ClipTokenizer, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], variants: int = 1):
        if batch_size % variants:
            raise ValueError(f"batch_size {batch_size} must be a multiple of variants {variants}")
        self.world, self.tokenizer, self.batch_size = world, tokenizer, batch_size
        self.mean, self.std, self.variants = mean, std, variants

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        layouts = self.batch_size // self.variants
        if self.variants == 1:
            scenes = [self.world.scene(k * layouts + i) for i in range(layouts)]
        else:
            scenes = [s for i in range(layouts) for s in self.world.shape_variants(k * layouts + i, self.variants)]
        images = normalise_images([s.image for s in scenes], self.mean, self.std)
        return images, self.tokenizer([s.caption for s in scenes])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.set_num_threads(1)  # the worker draws scenes; leave the cores to the model
        k = 0
        while True:
            yield self.batch(k)
            k += 1


def sincos_position_table(grid: int, width: int) -> torch.Tensor:
    """(1 + grid², width) 2-D sine-cosine table (MAE / MoCo v3), CLS row zero.

    A ViT from scratch spends its first thousands of steps discovering where its patches
    are; starting the (still trainable) positional embedding from this table skips that,
    which matters on a CPU budget of a few hundred steps.
    """
    if width % 4:
        raise ValueError(f"sine-cosine positions need a width divisible by 4, got {width}")
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                            torch.arange(grid, dtype=torch.float32), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float32) / (width // 4))
    parts = [f(axis.flatten()[:, None] * omega) for axis in (xs, ys) for f in (torch.sin, torch.cos)]
    return torch.cat([torch.zeros(1, width), torch.cat(parts, dim=1)])


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor, tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (CLIP eq.): image i matches caption i.

    With `tokens`, identical captions are all positives (target mass shared equally): a
    world of 36 classes repeats captions within a batch, and pushing an image away from its
    own caption written twice would teach noise.
    """
    logits = logit_scale * image_features @ text_features.T
    if tokens is None:
        same = torch.eye(logits.shape[0], device=logits.device)
    else:
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
    targets = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def severed_patch_embedding(model: CLIP, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One vision pass → the (B, D) image embedding and the (B, D) mean of the L2-normalised
    patch features the last block gives under patch severance α = 1: what the training-free
    baseline and DeOP classify. CLIP's loss trains only the class token, so those patch
    features never meet the text (bench/clip_dense_alignment.py); a contrastive term on their
    mean puts the caption's class into the object's patches. Severed tokens do not mix, so
    the last block runs on the patch tokens alone, from the tap before it: no second pass."""
    visual = model.visual
    before_last = len(visual.transformer.resblocks) - 2
    output = visual(images, taps=(before_last,))
    patches = output.taps[before_last].flatten(2).transpose(1, 2)                  # (B, hw, width)
    patches = visual.transformer.resblocks[-1](patches, alpha=1.0)
    patches = F.normalize(visual.ln_post(patches) @ visual.proj, dim=-1)
    return output.global_feature, patches.mean(dim=1)


def pretraining_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor, dense_weight: float,
                     autocast=contextlib.nullcontext) -> torch.Tensor:
    """CLIP's contrastive loss on the image embedding, plus `dense_weight` × the same loss on
    the mean severed patch feature (`severed_patch_embedding`) when it is > 0. The encoders
    run under `autocast`; the similarities and the loss stay fp32."""
    with autocast():
        if dense_weight:
            image_embedding, patch_embedding = severed_patch_embedding(model, images)
        else:
            image_embedding, patch_embedding = model.encode_image(images), None
        text_embedding = model.encode_text(tokens)
    text_features = F.normalize(text_embedding.float(), dim=-1)
    scale = model.logit_scale.exp().float()
    loss = contrastive_loss(F.normalize(image_embedding.float(), dim=-1), text_features, scale, tokens)
    if patch_embedding is not None:
        loss = loss + dense_weight * contrastive_loss(F.normalize(patch_embedding.float(), dim=-1),
                                                      text_features, scale, tokens)
    return loss


# Evaluation scenes come from an index range pre-training never reaches.
EVAL_OFFSET = 2_000_000_000


def single_object_world(world_config: dict) -> SyntheticWorld:
    """The pre-training world with exactly one object per scene: a clean classification probe."""
    cfg = dict(world_config)
    cfg["objects"] = (1, 1)
    return SyntheticWorld(WorldConfig.from_dict(cfg))


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, world: SyntheticWorld, tokenizer: ClipTokenizer,
                       data: PretrainData) -> dict[str, float]:
    """Top-1 accuracy of classifying single-object scenes among all class names, over the
    classes later held out (unseen) and the others (seen): did pre-training learn each name?"""
    was_training = model.training
    model.eval()
    text = F.normalize(model.encode_text(tokenizer([data.eval_template.format(n) for n in world.class_names])), dim=-1)
    correct, total = np.zeros(world.num_classes), np.zeros(world.num_classes)
    for start in range(0, data.eval_scenes, 64):
        scenes = [world.scene(EVAL_OFFSET + i) for i in range(start, min(start + 64, data.eval_scenes))]
        images = normalise_images([s.image for s in scenes], data.pixel_mean, data.pixel_std)
        predicted = (F.normalize(model.encode_image(images), dim=-1) @ text.T).argmax(1).numpy()
        for scene, p in zip(scenes, predicted):
            if scene.class_ids:
                target = scene.class_ids[0]
                total[target] += 1
                correct[target] += p == target
    model.train(was_training)
    unseen = list(world.unseen_class_ids)
    seen = list(world.seen_class_ids)
    acc = lambda ids: float(correct[ids].sum() / max(total[ids].sum(), 1))  # noqa: E731
    return {"zero_shot_acc": float(correct.sum() / max(total.sum(), 1)),
            "zero_shot_acc_seen": acc(seen), "zero_shot_acc_unseen": acc(unseen)}


def build_optimizer(model: CLIP, schedule: PretrainSchedule) -> torch.optim.AdamW:
    """No weight decay on gains, biases, embeddings and the temperature (open_clip's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": schedule.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=schedule.lr, betas=(0.9, 0.98), eps=1e-6)


def cosine_factor(step: int, warmup: int, total: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def save_clip_weights(model: CLIP, path: Path, dtype: torch.dtype, metadata: dict) -> Path:
    """OpenAI-named state dict as safetensors; the config travels in the header as JSON."""
    from safetensors.torch import save_file

    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items()}
    header = {k: json.dumps(v) for k, v in metadata.items()}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return path


@dataclass
class PretrainResult:
    weights: Path
    steps: list[int]
    losses: list[float]
    metrics: dict[str, float]
    minutes: float


def pretrain(config: PretrainConfig, max_iters: Optional[int] = None) -> PretrainResult:
    """Train CLIP from scratch on captioned scenes; write weights, log.csv and metrics.json."""
    from tqdm import tqdm

    schedule = config.train
    out_dir = Path(schedule.out_dir)
    torch.manual_seed(schedule.seed)
    world = SyntheticWorld(WorldConfig.from_dict(config.data.world))
    probe = single_object_world(config.data.world)
    tokenizer = ClipTokenizer(context_length=config.clip.text.context_length)
    model = CLIP(config.clip).train()
    with torch.no_grad():
        vision = config.clip.vision
        model.visual.positional_embedding.copy_(sincos_position_table(vision.grid_size, vision.width))
        model.logit_scale.fill_(math.log(1 / schedule.initial_temperature))
    optimizer = build_optimizer(model, schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_factor(s, schedule.warmup_iters, schedule.iterations))
    batches = CaptionedBatches(world, tokenizer, schedule.batch_size, config.data.pixel_mean,
                               config.data.pixel_std, config.data.shape_variants)
    loader = DataLoader(batches, batch_size=None, num_workers=config.data.num_workers,
                        persistent_workers=False)
    stop = min(schedule.iterations, max_iters) if max_iters else schedule.iterations
    precision = training_precision(schedule.amp, torch.device("cpu"))
    autocast = precision.autocast()
    n_params = sum(p.numel() for p in model.parameters())
    log.info("pre-training CLIP (%.2fM parameters) on %d classes, batch %d, %d steps; train.%s",
             n_params / 1e6, world.num_classes, schedule.batch_size, stop, precision.reason)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config.raw, sort_keys=False))
    log_path = out_dir / "log.csv"
    log_path.write_text("step,loss,logit_scale,lr,zero_shot_acc_seen,zero_shot_acc_unseen\n")

    started = time.perf_counter()
    steps, losses = [], []
    running, metrics = 0.0, {}
    progress = tqdm(total=stop, desc="pretrain", unit="it", dynamic_ncols=True)
    for step, (images, tokens) in zip(range(stop), loader):
        loss = pretraining_loss(model, images, tokens, schedule.dense_alignment_weight, autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # early ViT steps spike without it
        optimizer.step()
        scheduler.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        value = loss.item()
        running += value
        done = step + 1
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite contrastive loss at step {done}")
        evaluate_now = schedule.eval_every and done % schedule.eval_every == 0
        if done % schedule.log_every == 0 or done == stop or evaluate_now:
            mean = running / (done - (steps[-1] if steps else 0))
            running = 0.0
            if evaluate_now or done == stop:
                metrics = zero_shot_accuracy(model, probe, tokenizer, config.data)
            steps.append(done)
            losses.append(mean)
            with open(log_path, "a") as f:
                f.write(f"{done},{mean:.5f},{model.logit_scale.exp().item():.3f},"
                        f"{scheduler.get_last_lr()[0]:.3g},{metrics.get('zero_shot_acc_seen', '')},"
                        f"{metrics.get('zero_shot_acc_unseen', '')}\n")
            progress.set_postfix(loss=f"{mean:.3f}", **{name: f"{metrics[key]:.2f}" for name, key in
                                                        (("acc_seen", "zero_shot_acc_seen"),
                                                         ("acc_unseen", "zero_shot_acc_unseen")) if key in metrics})
        progress.update(1)
    progress.close()
    minutes = (time.perf_counter() - started) / 60
    metrics = {**metrics, "minutes": minutes, "steps": stop, "precision": str(precision.dtype).removeprefix("torch.")}
    weights = save_clip_weights(model, out_dir / WEIGHTS_NAME, STORAGE_DTYPES[schedule.save_dtype],
                                {"clip_config": config.clip.to_dict(), "pretrain_steps": stop,
                                 "seed": schedule.seed})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("pre-trained %d steps in %.1f min; zero-shot accuracy seen %.1f%% unseen %.1f%%; wrote %s",
             stop, minutes, 100 * metrics.get("zero_shot_acc_seen", float("nan")),
             100 * metrics.get("zero_shot_acc_unseen", float("nan")), weights)
    return PretrainResult(weights, steps, losses, metrics, minutes)
