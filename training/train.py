"""`zs3 train`: the GZS3 training loop, readable top to bottom.

data → model → AdamW over the trainable tensors only → warm-up + poly schedule → loop of
(grad-accumulated, optionally mixed-precision) steps → logs → checkpoints. DDP is the few
lines marked DDP: `torchrun --nproc_per_node=N` sets RANK/WORLD_SIZE/LOCAL_RANK, each
process loads its share of every global batch (DistributedSampler), DDP averages gradients.

Determinism that DDP equivalence and --resume rely on: sample i of epoch e is augmented
with seed (seed, e, i); torch's RNG (dropout) is re-seeded from (seed, step, rank) at every
step; the data stream of a resumed run restarts at the exact micro-batch it stopped at.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from zs3_core.config import ConfigError
from zs3_core.losses import subsample_targets
from zs3_core.model_checkpoint import (STORAGE_DTYPES, load_model_checkpoint, load_training_state,
                                       save_model_checkpoint, save_training_state)

from training.config import RunConfig, TrainConfig
from training.data import training_set
from training.precision import training_precision

log = logging.getLogger(__name__)
CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.safetensors$")


@dataclass
class TrainResult:
    """What a run did: per-step mean losses (rank-averaged) and where it wrote."""

    out_dir: Path
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    start_step: int = 0
    last_checkpoint: Optional[Path] = None


class TrainingStep(nn.Module):
    """Text side + image side + loss in one forward, so DDP sees every trainable tensor
    (learned text prompts included) used inside the call it wraps."""

    def __init__(self, model: nn.Module, class_names, template: str, loss_stride: int = 1):
        super().__init__()
        self.model = model
        self.class_names = list(class_names)
        self.template = template
        self.loss_stride = loss_stride
        self._frozen_text: Optional[torch.Tensor] = None

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        embeddings = self._frozen_text
        if embeddings is None:
            embeddings = self.model.encode_classes(self.class_names, self.template)
            if not embeddings.requires_grad:  # nothing to learn on the text side: encode once
                self._frozen_text = embeddings.detach()
        outputs = self.model.training_outputs(images, embeddings)
        return self.model.compute_loss(outputs, subsample_targets(targets, self.loss_stride))


def lr_factor(step: int, warmup_iters: int, iterations: int, power: float) -> float:
    """Linear warm-up to the base rate, times poly decay (1 − step/iterations)^power."""
    poly = (1.0 - min(step, iterations) / iterations) ** power
    return poly * min(1.0, (step + 1) / warmup_iters) if warmup_iters else poly


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable tensors only; no weight decay on norms and biases (1-D);
    each parameter's learning rate scaled by `model.lr_scale(name)`."""
    params = model.trainable_parameters()
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters; nothing to train")
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in params.items():
        groups.setdefault((p.ndim >= 2, model.lr_scale(name)), []).append(p)
    ordered = sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))   # decayed group first
    return torch.optim.AdamW([{"params": members, "lr": cfg.lr * scale,
                               "weight_decay": cfg.weight_decay if decay else 0.0}
                              for (decay, scale), members in ordered], lr=cfg.lr)


def per_process_batch(cfg: TrainConfig, world_size: int) -> int:
    """Images each process loads per micro-step so the global batch stays `batch_size`."""
    share = world_size * cfg.grad_accum
    if cfg.batch_size % share:
        raise ConfigError(f"train.batch_size {cfg.batch_size} is not divisible by "
                          f"{world_size} processes × grad_accum {cfg.grad_accum}")
    return cfg.batch_size // share


def micro_batches(dataset: Dataset, sampler: DistributedSampler, batch: int, start: int,
                  num_workers: int, pin_memory: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless micro-batches, epoch after epoch, beginning `start` micro-batches in."""
    per_epoch = len(sampler) // batch
    if per_epoch == 0:
        raise ConfigError(f"the training set gives {len(sampler)} images per process, fewer than "
                          f"one micro-batch of {batch}")
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)[skip * batch:per_epoch * batch]
        yield from DataLoader(dataset, batch_size=batch, sampler=indices, drop_last=True,
                              num_workers=num_workers, pin_memory=pin_memory)
        epoch, skip = epoch + 1, 0


def checkpoint_paths(out_dir: Path, step: int) -> tuple[Path, Path]:
    base = out_dir / "checkpoints" / f"step_{step:07d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".state.pt")


def latest_checkpoint_step(out_dir: Path) -> int:
    """Highest step with both the model file and the resume state written (0: none)."""
    steps = [int(m.group(1)) for p in (out_dir / "checkpoints").glob("step_*.safetensors")
             if (m := CHECKPOINT_NAME.match(p.name))]
    complete = [s for s in steps if checkpoint_paths(out_dir, s)[1].is_file()]
    return max(complete, default=0)


class RunLog:
    """CSV (always) and TensorBoard (when installed) scalars; rank 0 only."""

    def __init__(self, out_dir: Path, start_step: int):
        self.path = out_dir / "log.csv"
        rows = []
        if start_step and self.path.is_file():  # drop rows a killed run logged after its checkpoint
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        self.fields = list(rows[0]) if rows else []
        self.rows = rows
        self._write_all()
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step or None)
        except ImportError:
            log.info("tensorboard is not installed (pip install -e .[train]); logging to CSV only")

    def _write_all(self) -> None:
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields or ["step"])
            writer.writeheader()
            writer.writerows(self.rows)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in scalars.items()}}
        self.rows.append(row)
        if any(k not in self.fields for k in row):
            self.fields = list(dict.fromkeys(self.fields + list(row)))
            self._write_all()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def setup_distributed() -> tuple[int, int, torch.device]:
    """DDP: join the torchrun process group (nccl on CUDA, gloo on CPU); else one process."""
    cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return rank, world, device


def end_distributed(wait_for_peers: bool) -> None:
    """Tear the torchrun process group down, if there is one. After a normal finish every rank
    first waits for the others: a rank that destroys its gloo group while a peer's last
    collective is still in flight makes the peer abort ("terminate called without an active
    exception"; the two-process test hit it about 1 run in 12). After an error there is no
    wait, since a peer may never arrive."""
    if not dist.is_initialized():
        return
    if wait_for_peers:
        dist.barrier()
    dist.destroy_process_group()


def train(run: RunConfig, model: Optional[nn.Module] = None, max_iters: Optional[int] = None,
          dry_run: bool = False, resume: bool = False, single_stage: bool = False) -> TrainResult:
    """Train `model` (default: the one run.model builds). `max_iters` stops at that step
    without changing the schedule (which spans train.iterations); `resume` continues from
    the latest complete checkpoint in train.out_dir; `dry_run` runs one micro-batch forward
    and backward, updates nothing and writes nothing. A config with DeOP's stages
    (train.prompt_stage_iters / proposal_stage_iters) runs them in order first
    (training/deop_stages.py; `max_iters` then caps each stage); `single_stage` runs one stage."""
    if not single_stage and (run.train.prompt_stage_iters or run.train.proposal_stage_iters):
        from training.deop_stages import train_in_stages
        return train_in_stages(run, model, max_iters=max_iters, dry_run=dry_run, resume=resume)
    cfg = run.train
    rank, world, device = setup_distributed()
    master = rank == 0
    out_dir = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)  # identical initialisation on every rank

    # data: this process's share of each global batch
    dataset = training_set(run)
    micro = per_process_batch(cfg, world)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)

    # model: frozen CLIP + trainable parts; DDP wraps text side, image side and loss
    if model is None:
        from zs3_core.models import build_model
        model = build_model(run.model)
    model.to(device).train()
    step_module = TrainingStep(model, dataset.class_names, run.model.prompt_template, cfg.loss_stride)
    ddp_model = step_module
    if world > 1:  # DDP
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = DistributedDataParallel(step_module, device_ids=device_ids, broadcast_buffers=False)

    # optimizer and schedule; mixed precision where the hardware has it (training/precision.py)
    optimizer = build_optimizer(model, cfg)
    scheduler = LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup_iters, cfg.iterations, cfg.poly_power))
    precision = training_precision(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.needs_grad_scaler)
    autocast = precision.autocast()
    if master:
        log.info("train.%s", precision.reason)

    start = latest_checkpoint_step(out_dir) if resume else 0
    if resume and start == 0 and master:
        log.warning("--resume: no complete checkpoint in %s/checkpoints; starting from step 0", out_dir)
    if start:
        model_path, state_path = checkpoint_paths(out_dir, start)
        load_model_checkpoint(model_path, model)
        state = load_training_state(state_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if master:
            log.info("resumed from %s (step %d)", model_path, start)
    stop = min(cfg.iterations, max_iters) if max_iters is not None else cfg.iterations
    batches = micro_batches(dataset, sampler, micro, start * cfg.grad_accum, run.data.num_workers,
                            device.type == "cuda")
    if master:
        n_train = sum(p.numel() for p in model.trainable_parameters().values())
        log.info("%s: %d training images, %d seen classes; %d trainable parameters; global batch %d = "
                 "%d process(es) × %d × grad_accum %d; steps %d → %d of %d", type(model).__name__,
                 len(dataset), len(dataset.class_names), n_train, cfg.batch_size, world, micro,
                 cfg.grad_accum, start, stop, cfg.iterations)

    if dry_run:
        images, targets = next(batches)
        with autocast():
            losses = ddp_model(images.to(device), targets.to(device))
        losses["loss"].backward()
        if master:
            log.info("dry run: loss %.4f on a micro-batch of %s; no step taken, nothing written",
                     losses["loss"].item(), tuple(images.shape))
        return TrainResult(out_dir, [start + 1], [losses["loss"].item()], start)

    result = TrainResult(out_dir, start_step=start)
    run_log = None
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
        run_log = RunLog(out_dir, start)
    progress = None
    if master:
        from tqdm import tqdm
        progress = tqdm(total=stop, initial=start, desc="train", unit="it", dynamic_ncols=True)

    for step in range(start, stop):
        torch.manual_seed(cfg.seed * 1_000_003 + step * 1_009 + rank)
        totals: dict[str, torch.Tensor] = {}
        for micro_step in range(cfg.grad_accum):
            images, targets = next(batches)
            if world > 1:  # DDP: all-reduce gradients only on the last micro-step
                ddp_model.require_backward_grad_sync = micro_step == cfg.grad_accum - 1
            with autocast():
                losses = ddp_model(images.to(device, non_blocking=True), targets.to(device, non_blocking=True))
            scaler.scale(losses["loss"] / cfg.grad_accum).backward()
            for key, value in losses.items():
                totals[key] = totals.get(key, 0) + value.detach().float() / cfg.grad_accum
        if cfg.grad_clip_norm:  # detectron2's "full_model" clipping: one norm over all parameters
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(model.trainable_parameters().values()), cfg.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        done = step + 1

        if done % cfg.log_every == 0 or done == stop:
            keys = sorted(totals)
            values = torch.stack([totals[k] for k in keys])
            if world > 1:  # DDP: report the mean over all processes
                dist.all_reduce(values)
                values /= world
            scalars = dict(zip(keys, values.tolist()))
            if not all(math.isfinite(v) for v in scalars.values()):
                raise FloatingPointError(f"non-finite loss at step {done}: {scalars}")
            result.steps.append(done)
            result.losses.append(scalars["loss"])
            if master:
                run_log.write(done, {**scalars, "lr": scheduler.get_last_lr()[0]})
                progress.set_postfix(loss=f"{scalars['loss']:.4f}")
        if master:
            progress.update(1)

        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == stop:
            if master:
                model_path, state_path = checkpoint_paths(out_dir, done)
                save_training_state(state_path, {"optimizer": optimizer.state_dict(),
                                                 "scheduler": scheduler.state_dict(),
                                                 "scaler": scaler.state_dict(), "step": done})
                save_model_checkpoint(model_path, model, run.to_dict(), done,
                                      {"world_size": world, "dataset": run.data.dataset},
                                      STORAGE_DTYPES[cfg.checkpoint_dtype])
                result.last_checkpoint = model_path
            if world > 1:
                dist.barrier()

        # validation: every eval_every steps and at the end of a complete run (not at --max-iters)
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.iterations):
            from training.evaluate import evaluate_model
            metrics = evaluate_model(model, run, device=device, progress=False, shard=(rank, world))
            if master:
                run_log.write(done, {f"val/{k}": v for k, v in metrics.summary.items()})
                log.info("step %d: %s", done, ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.summary.items()))

    if master:
        progress.close()
        run_log.close()
        log.info("trained to step %d; checkpoint %s", stop, result.last_checkpoint)
    return result
