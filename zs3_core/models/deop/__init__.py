"""DeOP (Decoupled One-Pass network): class-agnostic proposals, patch-severed frozen CLIP,
classification anchor heatmaps and mask-class combination."""
from zs3_core.models.deop.model import DeOP, DeOPOptions

__all__ = ["DeOP", "DeOPOptions"]
