"""Deep prompts for both CLIP towers (LDVC Sec. 3.3, eq. 1–2): vision-language prompt tuning.

Shared by LDVC (visual and language prompts) and DeOP (its learned text prompt, encoded by
`encode_prompted_classes`). Only these tokens (and the models' heads) train; every CLIP
weight stays frozen unless a model fine-tunes blocks (`vision_finetuning`).

Visual (as ZegCLIP's reference code, docs/sources.md): N tokens per layer for all layers, inserted after `ln_pre`
as [CLS, prompts, patches] and replaced before every block (the vision tower does the
insertion). VPT's uniform initialisation ±√(6 / (3·p² + width)) and ZegCLIP's shared
Linear(width, width) + Dropout(0.1) applied to every layer's tokens.

Language (MaPLe/IVLP form): n_ctx tokens per layer at positions 1..n_ctx, right after the
start-of-text token, initialised from the frozen text encoder's own activations for the
hand-crafted prompt "a photo of a" (LDVC Sec. 3.3, Table 6 "pretrain" initialisation).
How the 6 slots are filled: "a photo of a" tokenises to [SOT, a, photo, of, a, EOT, pad…];
slot j takes the activation at position j of that sequence, i.e. the slots sit exactly where
the hand-crafted words sat: slots 1–4 = "a", "photo", "of", "a"; slot 5 = the end-of-text
token (the encoder's summary of the template); slot 6 = the first padding position (which,
under the causal mask, also summarises the whole template). Layer 0 takes token embeddings
(the text tower adds the positional embedding itself), layer i ≥ 1 the input of block i.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Sequence

import torch
from torch import nn

HAND_CRAFTED_PROMPT = "a photo of a"


class VisualDeepPrompts(nn.Module):
    """(layers, N, width) learned visual tokens → projected prompts, or None when N = 0."""

    def __init__(self, layers: int, num_tokens: int, width: int, patch_size: int, dropout: float = 0.1):
        super().__init__()
        if num_tokens < 0:
            raise ValueError(f"visual prompt tokens must be >= 0, got {num_tokens}")
        self.num_tokens = num_tokens
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + width))   # VPT
        self.prompt_tokens = nn.Parameter(torch.empty(layers, num_tokens, width).uniform_(-bound, bound))
        self.prompt_proj = nn.Linear(width, width)
        self.prompt_dropout = nn.Dropout(dropout)

    def forward(self) -> Optional[torch.Tensor]:
        """(layers, N, width) prompts for `VisionTransformer(prompts=...)`; None with N = 0."""
        if self.num_tokens == 0:
            return None
        return self.prompt_dropout(self.prompt_proj(self.prompt_tokens))


class TextDeepPrompts(nn.Module):
    """(layers, n_ctx, width) learned language tokens for `encode_text(prompts=..., prompt_start=1)`."""

    def __init__(self, layers: int, num_tokens: int, width: int):
        super().__init__()
        if num_tokens < 0:
            raise ValueError(f"text prompt tokens must be >= 0, got {num_tokens}")
        self.num_tokens = num_tokens
        self.prompt_tokens = nn.Parameter(torch.empty(layers, num_tokens, width).normal_(std=0.02))

    @torch.no_grad()
    def initialize_from_text(self, text_tower, tokenizer, text: str = HAND_CRAFTED_PROMPT) -> None:
        """Copy the frozen text tower's per-layer activations of `text` into the slots (see module doc)."""
        if self.num_tokens == 0:
            return
        tokens = tokenizer([text])                                             # (1, context)
        if 1 + self.num_tokens > tokens.shape[1]:
            raise ValueError(f"{self.num_tokens} text prompt tokens do not fit in {tokens.shape[1]} positions")
        device = self.prompt_tokens.device
        inputs = text_tower.layer_inputs(tokens.to(device))                    # (layers, 1, L, width)
        layers = self.prompt_tokens.shape[0]
        self.prompt_tokens.copy_(inputs[:layers, 0, 1:1 + self.num_tokens].to(self.prompt_tokens.dtype))

    def forward(self) -> Optional[torch.Tensor]:
        return self.prompt_tokens if self.num_tokens else None


def insert_placeholders(tokens: torch.Tensor, num_tokens: int, placeholder: int) -> torch.Tensor:
    """(C, L) ids [SOT, words…, EOT, 0…] → [SOT, placeholder × n, words…, EOT, 0…], still (C, L).

    The learned prompts overwrite the placeholders at every prompted layer; the placeholder id
    only has to be below the end-of-text id so the encoder's argmax still finds EOT. Rows whose
    text would be cut are rejected rather than silently losing the end-of-text token.
    """
    if num_tokens == 0:
        return tokens
    c, length = tokens.shape
    used = int((tokens != 0).sum(dim=1).max())
    if used + num_tokens > length:
        raise ValueError(f"class prompt of {used} tokens plus {num_tokens} learned tokens exceeds the "
                         f"{length}-token context; shorten the class name or template")
    fill = torch.full((c, num_tokens), placeholder, dtype=tokens.dtype, device=tokens.device)
    return torch.cat([tokens[:, :1], fill, tokens[:, 1:length - num_tokens]], dim=1)


@lru_cache(maxsize=4)
def clip_tokenizer(context_length: int = 77):
    """The shared BPE tokenizer (loading its vocabulary takes a moment, so it is cached)."""
    from zs3_core.clip import ClipTokenizer
    return ClipTokenizer(context_length=context_length)


def encode_prompted_classes(clip, prompts: TextDeepPrompts, names: Sequence[str], template: str) -> torch.Tensor:
    """(C, D) L2-normalised embeddings of [SOT, P_1..P_n, template(name), EOT] with deep prompts.

    The learned tokens take the place of a hand-crafted prefix such as "a photo of a", so the
    prompted models' configs use the template "{}." (CoOp/MaPLe form). Runs with autograd
    when grad is enabled: training calls it every step so the prompts learn.
    """
    tokenizer = clip_tokenizer(clip.text_config.context_length)
    tokens = tokenizer([template.format(name) for name in names])
    tokens = insert_placeholders(tokens, prompts.num_tokens, tokenizer.encode("X")[0])
    tokens = tokens.to(clip.token_embedding.weight.device)
    return torch.nn.functional.normalize(clip.encode_text(tokens, prompts=prompts(), prompt_start=1), dim=-1)
