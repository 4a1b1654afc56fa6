"""CLIP text encoder with deep language prompts (MaPLe/IVLP style; LDVC Sec. 3.3).

OpenAI's CLIP keeps the text tower's parameters at the top level of the model
(``token_embedding``, ``positional_embedding``, ``transformer.*``, ``ln_final``,
``text_projection``). ``TextTower`` defines those parameters and the encoding once;
``TextTransformer`` is the stand-alone encoder and ``CLIP`` (model.py) extends the same tower
with the image side, so both load OpenAI/open_clip state dicts without renaming.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .attention import LayerNorm, Transformer, scaled_normal
from .config import TextConfig


class TextTower(nn.Module):
    """Text-side parameters at OpenAI names and the prompted encoding."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.text_config = config
        width = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = scaled_normal(config.context_length, width, std=0.01)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, config.activation)
        self.ln_final = LayerNorm(width)
        self.text_projection = scaled_normal(width, config.output_dim, std=width ** -0.5)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.transformer.init_parameters()

    def _check_inputs(self, tokens: torch.Tensor, prompts: Optional[torch.Tensor], prompt_start: int) -> None:
        cfg = self.text_config
        if tokens.dim() != 2 or tokens.shape[1] > cfg.context_length:
            raise ValueError(f"tokens must be (C, L) with L <= {cfg.context_length}, got {tuple(tokens.shape)}")
        if prompts is None:
            return
        if prompts.dim() != 3 or prompts.shape[-1] != cfg.width or prompts.shape[0] > cfg.layers:
            raise ValueError(
                f"text prompts must be (L', n_ctx, {cfg.width}) with L' <= {cfg.layers}, got {tuple(prompts.shape)}"
            )
        if prompt_start < 0 or prompt_start + prompts.shape[1] > tokens.shape[1]:
            raise ValueError(
                f"text prompts occupy positions [{prompt_start}, {prompt_start + prompts.shape[1]}), "
                f"outside the {tokens.shape[1]} token positions"
            )

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(C, L) int64 → (C, L, width) token embeddings (positional embedding not yet added)."""
        return self.token_embedding(tokens).to(self.positional_embedding.dtype)

    def encode_text(
        self, tokens: torch.Tensor, prompts: Optional[torch.Tensor] = None, prompt_start: int = 1
    ) -> torch.Tensor:
        """tokens: (C, L) int64, L ≤ context_length → (C, output_dim), not normalised.

        prompts: (L', n_ctx, width) deep text prompts replacing positions
        [prompt_start, prompt_start + n_ctx): at layer 0 in the token embeddings (before the
        positional embedding is added, as MaPLe), and before each deeper block i < L' in the
        hidden states. Tokenise the template with n_ctx placeholder words so the end-of-text
        token, found as the argmax of the ids, stays where it belongs.
        """
        self._check_inputs(tokens, prompts, prompt_start)
        n_layers_prompted = 0 if prompts is None else prompts.shape[0]
        end = prompt_start + (prompts.shape[1] if n_layers_prompted else 0)

        x = self._embed(tokens)
        c, length, width = x.shape
        for i, block in enumerate(self.transformer.resblocks):
            if i < n_layers_prompted:
                layer_prompts = prompts[i].to(x.dtype).unsqueeze(0).expand(c, end - prompt_start, width)
                x = torch.cat([x[:, :prompt_start], layer_prompts, x[:, end:]], dim=1)
            if i == 0:
                x = x + self.positional_embedding[:length].to(x.dtype)
            x = block(x, causal=True)
        x = self.ln_final(x)
        eot = x[torch.arange(c, device=x.device), tokens.argmax(dim=-1)]  # (C, width)
        return eot @ self.text_projection

    @torch.no_grad()
    def layer_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(C, L) → (layers, C, L, width): what each block's prompt slots would replace.

        Entry 0 is the token embeddings (without positional embedding), entry i ≥ 1 the input
        of block i: the activations LDVC initialises its text prompts from (Sec. 3.3).
        """
        self._check_inputs(tokens, None, 1)
        x = self._embed(tokens)
        inputs = [x]
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        for block in list(self.transformer.resblocks)[:-1]:
            x = block(x, causal=True)
            inputs.append(x)
        return torch.stack(inputs)


class TextTransformer(TextTower):
    """Stand-alone CLIP text encoder; ``forward`` is ``encode_text``."""

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self.config = config

    def forward(self, tokens: torch.Tensor, prompts: Optional[torch.Tensor] = None,
                prompt_start: int = 1) -> torch.Tensor:
        """(C, context_length) int64 → (C, output_dim); see ``encode_text``."""
        return self.encode_text(tokens, prompts, prompt_start)
