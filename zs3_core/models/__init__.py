"""Zero-shot segmentation models: the training-free CLIP baseline, LDVC and DeOP."""
from zs3_core.models.base import ZeroShotSegmentationModel
from zs3_core.models.factory import build_model

__all__ = ["ZeroShotSegmentationModel", "build_model"]
