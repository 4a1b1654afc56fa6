"""The synthetic world: seeded scenes of coloured shapes with pixel labels and captions.

No real dataset or CLIP weights can be fetched on the CPU machines this project trains on,
so this world stands in for both: classes are colour × shape compositions ("red triangle"),
scenes have VOC-like labels (background = 255, ignored), captions cover every class for
contrastive pre-training, and held-out compositions give a real GZS3 split. Everything
is a pure function of (config, index), so train/val sets and camera streams are
reproducible on any machine. Kept torch-free: datasets wrap it elsewhere.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from zs3_core.synthetic.captions import caption
from zs3_core.synthetic.shapes import SHAPES, shape_mask
from zs3_core.synthetic.split import CompositionSplit, make_split
from zs3_core.synthetic.textures import TEXTURES, background

IGNORE_INDEX = 255
BACKGROUND_NAME = "background"   # the class name datasets give the background when they label it

DEFAULT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (30, 70, 230),
    "yellow": (240, 220, 20),
    "purple": (150, 40, 210),
    "cyan": (20, 210, 220),
}

_PLACEMENT_TRIES = 25


class WorldConfigError(ValueError):
    """A WorldConfig field out of range; the message names the field."""


@dataclass
class WorldConfig:
    """Everything that defines a world; two equal configs give identical scenes."""

    seed: int = 0
    image_size: tuple[int, int] = (128, 128)        # (H, W)
    colours: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(DEFAULT_COLOURS))
    shapes: tuple[str, ...] = SHAPES
    textures: tuple[str, ...] = TEXTURES
    objects: tuple[int, int] = (1, 4)               # objects per scene, inclusive range
    scale: tuple[float, float] = (0.22, 0.5)        # object size / min(H, W)
    max_occlusion: float = 0.4                      # share of an object a later one may hide
    colour_jitter: float = 12.0                     # std of a per-object RGB offset
    num_unseen: int = 6
    split_seed: int = 0

    def __post_init__(self) -> None:
        # YAML gives lists; keep the dataclass hashable-ish and comparable.
        self.image_size = tuple(int(v) for v in self.image_size)
        self.shapes = tuple(self.shapes)
        self.textures = tuple(self.textures)
        self.objects = tuple(int(v) for v in self.objects)
        self.scale = tuple(float(v) for v in self.scale)
        self.colours = {str(k): tuple(int(c) for c in v) for k, v in self.colours.items()}
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise WorldConfigError(f"image_size must be (H, W) with both >= 16, got {self.image_size}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise WorldConfigError(f"objects must be (min, max) with 1 <= min <= max, got {self.objects}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise WorldConfigError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 <= self.max_occlusion < 1:
            raise WorldConfigError(f"max_occlusion must be in [0, 1), got {self.max_occlusion}")
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise WorldConfigError(f"unknown shapes {unknown}; known shapes: {', '.join(SHAPES)}")

    @classmethod
    def from_dict(cls, data: dict) -> WorldConfig:
        """Build from a YAML mapping, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise WorldConfigError(f"unknown world config keys {extra}; known keys: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; `visible_pixels` counts what survives occlusion."""

    class_id: int
    name: str
    center: tuple[float, float]     # (x, y) pixels
    size: float                      # diameter of the circumscribed circle, pixels
    angle: float                     # radians
    visible_pixels: int


@dataclass(frozen=True)
class Scene:
    """image (H, W, 3) uint8 RGB; labels (H, W) uint8 class id or 255 for background."""

    image: np.ndarray
    labels: np.ndarray
    caption: str
    objects: tuple[SceneObject, ...]

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Sorted ids of the classes with visible pixels."""
        return tuple(sorted({o.class_id for o in self.objects if o.visible_pixels > 0}))


@dataclass
class _Placed:
    class_id: int
    center: tuple[float, float]
    size: float
    angle: float


class SyntheticWorld:
    """Colour × shape classes, a GZS3 split, seeded scenes and a camera stream."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        colour_names = list(self.config.colours)
        self.class_names: list[str] = [f"{c} {s}" for c in colour_names for s in self.config.shapes]
        self.split: CompositionSplit = make_split(len(colour_names), len(self.config.shapes),
                                                  self.config.num_unseen, self.config.split_seed)
        self._colours = np.array([self.config.colours[c] for c in colour_names], np.float32)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def seen_class_ids(self) -> tuple[int, ...]:
        return self.split.seen_ids

    @property
    def unseen_class_ids(self) -> tuple[int, ...]:
        return self.split.unseen_ids

    def label_background(self, labels: np.ndarray) -> np.ndarray:
        """A scene's labels with the background as class `num_classes` (named BACKGROUND_NAME)
        instead of IGNORE_INDEX: a model trained on it learns to say "none of these objects"."""
        return np.where(labels == IGNORE_INDEX, np.uint8(self.num_classes), labels).astype(np.uint8)

    def class_colour(self, class_id: int) -> tuple[int, int, int]:
        """Nominal RGB of a class (its colour word), for palettes and docs."""
        return tuple(int(v) for v in self._colours[class_id // len(self.config.shapes)])

    def scene(self, index: int) -> Scene:
        """Scene number `index`: a pure function of (config, index)."""
        rng = np.random.default_rng([self.config.seed, int(index)])
        placed, bg = self._layout(rng)
        return self._render(bg, placed, rng)

    def shape_variants(self, index: int, count: int) -> list[Scene]:
        """`count` scenes with scene `index`'s layout, background and colours (and one noise
        draw for all) whose objects differ only in shape: variant j turns every shape j steps
        along the shape list.

        Contrastive pre-training needs these hard negatives: in random batches the colour
        words alone nearly always tell captions apart, so a ViT from scratch learns colour
        and ignores shape (measured: colour at once, shape near chance after 500 steps).
        """
        num_shapes = len(self.config.shapes)
        if not 1 <= count <= num_shapes:
            raise ValueError(f"count must be in [1, {num_shapes}] so that no two variants coincide, got {count}")
        rng = np.random.default_rng([self.config.seed, int(index)])
        placed, bg = self._layout(rng)
        noise_seed = int(rng.integers(2**63))
        scenes = []
        for shift in range(count):
            turned = [_Placed(o.class_id - o.class_id % num_shapes + (o.class_id + shift) % num_shapes,
                              o.center, o.size, o.angle) for o in placed]
            scenes.append(self._render(bg, turned, np.random.default_rng(noise_seed)))
        return scenes

    def _layout(self, rng: np.random.Generator) -> tuple[list[_Placed], np.ndarray]:
        """Classes, placements (within the occlusion limit) and background of one scene."""
        cfg = self.config
        count = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        class_ids = rng.choice(self.num_classes, size=min(count, self.num_classes), replace=False)
        placed: list[_Placed] = []
        areas: list[int] = []
        visible: list[np.ndarray] = []
        for cid in class_ids:
            for _ in range(_PLACEMENT_TRIES):
                obj = self._random_placement(int(cid), rng)
                mask = self._mask(obj)
                if self._occlusion_ok(mask, areas, visible):
                    visible = [v & ~mask for v in visible] + [mask]
                    areas.append(int(mask.sum()))
                    placed.append(obj)
                    break
        return placed, background(cfg.image_size, rng, cfg.textures)

    def camera_stream(self, num_frames: int, fps: float = 10.0, seed: int = 0,
                      class_ids: Sequence[int] | None = None) -> Iterator[Scene]:
        """Frames of shapes gliding and turning over a fixed background, bouncing off the
        edges and off each other.

        Every frame keeps the rule the still scenes are drawn with: no object hides more
        than `max_occlusion` of an earlier one. A move or turn that would break it is not
        made; the object bounces back instead (velocity and spin reversed), so the stream
        stays within the distribution the models were trained and evaluated on.
        Deterministic per (config, seed); `class_ids` picks the classes shown (default: a
        seeded draw that includes an unseen class when the object count allows, so a demo's
        vocabulary change has something to find). The first class is placed first; a later
        one that finds no room within the occlusion limit is left out.
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 0x5EED, int(seed)])
        h, w = cfg.image_size
        if class_ids is None:
            count = max(cfg.objects[1], 2)
            unseen = rng.choice(self.unseen_class_ids, size=1).tolist()
            seen = rng.choice(self.seen_class_ids, size=count - 1, replace=False).tolist()
            class_ids = unseen + seen
        objs: list[_Placed] = []
        for cid in class_ids:
            for _ in range(4 * _PLACEMENT_TRIES):
                obj = self._inside_frame(self._random_placement(int(cid), rng))
                if self._keeps_occlusion_limit(objs + [obj]):
                    objs.append(obj)
                    break
        speed = rng.uniform(0.1, 0.3, size=len(objs)) * min(h, w)      # px / s
        heading = rng.uniform(0, 2 * math.pi, size=len(objs))
        velocity = np.stack([speed * np.cos(heading), speed * np.sin(heading)], 1)
        spin = rng.uniform(-0.8, 0.8, size=len(objs))                    # rad / s
        bg = background((h, w), rng, cfg.textures)
        dt = 1.0 / fps
        for frame in range(int(num_frames)):
            yield self._render(bg, objs, np.random.default_rng([cfg.seed, 0x5EED, int(seed), frame]))
            for i, obj in enumerate(objs):
                x, y = obj.center[0] + velocity[i, 0] * dt, obj.center[1] + velocity[i, 1] * dt
                r = obj.size / 2
                if not r <= x <= w - r:
                    velocity[i, 0] *= -1
                if not r <= y <= h - r:
                    velocity[i, 1] *= -1
                moved = self._inside_frame(_Placed(obj.class_id, (x, y), obj.size, obj.angle + spin[i] * dt))
                trial = objs[:i] + [moved] + objs[i + 1:]
                if self._keeps_occlusion_limit(trial):
                    objs = trial
                else:                      # bounce off the object it would hide or be hidden by
                    velocity[i] *= -1
                    spin[i] *= -1

    def _inside_frame(self, obj: _Placed) -> _Placed:
        """`obj` moved so that its circumscribed circle lies inside the image."""
        h, w = self.config.image_size
        r = obj.size / 2
        x, y = (min(max(obj.center[0], r), w - r), min(max(obj.center[1], r), h - r))
        return _Placed(obj.class_id, (x, y), obj.size, obj.angle)

    def _keeps_occlusion_limit(self, objs: Sequence[_Placed]) -> bool:
        """True if, painted in this order, no object hides more than `max_occlusion` of an
        earlier one (the rule `_layout` places still scenes by)."""
        areas: list[int] = []
        visible: list[np.ndarray] = []
        for obj in objs:
            mask = self._mask(obj)
            if not self._occlusion_ok(mask, areas, visible):
                return False
            visible = [v & ~mask for v in visible] + [mask]
            areas.append(int(mask.sum()))
        return True

    # -- drawing -----------------------------------------------------------------------

    def _random_placement(self, class_id: int, rng: np.random.Generator) -> _Placed:
        h, w = self.config.image_size
        size = rng.uniform(*self.config.scale) * min(h, w)
        margin = 0.3 * size  # centres stay inside; up to ~20% of an object may leave the frame
        return _Placed(class_id, (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)),
                       size, rng.uniform(0, 2 * math.pi))

    def _mask(self, obj: _Placed) -> np.ndarray:
        shape = self.config.shapes[obj.class_id % len(self.config.shapes)]
        return shape_mask(shape, obj.center, obj.size, obj.angle, self.config.image_size)

    def _occlusion_ok(self, new: np.ndarray, areas: list[int], visible: list[np.ndarray]) -> bool:
        """True if every earlier object keeps >= (1 - max_occlusion) of its area in total."""
        if not new.any():
            return False
        keep = 1 - self.config.max_occlusion
        return all((v & ~new).sum() >= keep * a for a, v in zip(areas, visible))

    def _render(self, bg: np.ndarray, objs: Sequence[_Placed], rng: np.random.Generator) -> Scene:
        """Paint objects back to front; labels keep only what stays visible."""
        cfg = self.config
        image = bg.astype(np.float32)
        labels = np.full(cfg.image_size, IGNORE_INDEX, np.uint8)
        h, w = cfg.image_size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        for obj in objs:
            mask = self._mask(obj)
            base = self._colours[obj.class_id // len(cfg.shapes)]
            colour = base + rng.normal(0, cfg.colour_jitter, size=3)
            # A soft light gradient across the object: shading, not a new colour.
            t = rng.uniform(0, 2 * math.pi)
            shade = 1 + 0.12 * ((xs - obj.center[0]) * math.cos(t) + (ys - obj.center[1]) * math.sin(t)
                                ) / max(obj.size, 1.0)
            image[mask] = colour * shade[mask][:, None]
            labels[mask] = obj.class_id
        image += rng.normal(0, 3.0, size=image.shape)
        image = cv2.GaussianBlur(np.clip(image, 0, 255), (3, 3), 0.6)
        counts = np.bincount(labels.ravel(), minlength=256)
        objects = tuple(SceneObject(o.class_id, self.class_names[o.class_id], o.center, o.size,
                                    o.angle, int(counts[o.class_id])) for o in objs)
        present = sorted({o.class_id for o in objects if o.visible_pixels > 0})
        text = caption([self.class_names[c] for c in present], rng)
        return Scene(image.round().astype(np.uint8), labels, text, objects)
