"""Class lists and the GZS3 seen/unseen splits of PASCAL VOC 2012 and COCO-Stuff 164k.

Indices are the 0-based training ids every reader in this package produces (VOC: 20
classes, background ignored; COCO-Stuff: 171 classes after the raw-id remap). The unseen
sets are the ones SPNet/ZS3Net introduced and ZegCLIP, zsseg, DeOP and LDVC report on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
VOC_UNSEEN = (15, 16, 17, 18, 19)  # pottedplant, sheep, sofa, train, tvmonitor

COCOSTUFF_CLASSES = (
    # 80 things (COCO detection order)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
    # 91 stuff classes
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other",
    "wood",
)
COCOSTUFF_UNSEEN = (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160)


@dataclass(frozen=True)
class GZS3Split:
    """All class names of a dataset and which indices are held out (unseen) in training.

    `background_ids` are labelled "none of the objects" classes (the synthetic world's
    "background"): seen in training, so a model learns to say "none of these", but left out
    of the GZS3 metrics, which keep the papers' convention of ignoring background pixels.
    """

    name: str
    class_names: tuple[str, ...]
    unseen_ids: tuple[int, ...]
    background_ids: tuple[int, ...] = ()

    def __post_init__(self):
        bad = [i for i in self.unseen_ids + self.background_ids if not 0 <= i < len(self.class_names)]
        if bad:
            raise ValueError(f"{self.name}: class ids {bad} outside 0..{len(self.class_names) - 1}")
        both = sorted(set(self.unseen_ids) & set(self.background_ids))
        if both:
            raise ValueError(f"{self.name}: background classes {both} cannot be unseen")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def seen_ids(self) -> tuple[int, ...]:
        unseen = set(self.unseen_ids)
        return tuple(i for i in range(self.num_classes) if i not in unseen)

    @property
    def object_ids(self) -> tuple[int, ...]:
        """The classes the GZS3 metrics score: every class but the background ones."""
        background = set(self.background_ids)
        return tuple(i for i in range(self.num_classes) if i not in background)

    @property
    def seen_object_ids(self) -> tuple[int, ...]:
        background = set(self.background_ids)
        return tuple(i for i in self.seen_ids if i not in background)

    @property
    def seen_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.seen_ids)

    @property
    def unseen_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.unseen_ids)

    def seen_label_table(self, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
        """(256,) uint8 lookup: full class id → position in `seen_names`; unseen and ignore → ignore.

        Inductive training: models are trained against the seen class list only, so targets
        must index that list, and unseen pixels are never shown as any class.
        """
        table = np.full(256, ignore_index, dtype=np.uint8)
        for position, class_id in enumerate(self.seen_ids):
            table[class_id] = position
        return table


VOC_SPLIT = GZS3Split("voc", VOC_CLASSES, VOC_UNSEEN)
COCOSTUFF_SPLIT = GZS3Split("cocostuff", COCOSTUFF_CLASSES, COCOSTUFF_UNSEEN)
