"""LDVC (Language-Driven Visual Consensus): deep vision-language prompts, text adapter and the
local consensus transformer decoder with route attention."""
from zs3_core.models.ldvc.model import LDVC, LDVCOptions

__all__ = ["LDVC", "LDVCOptions"]
