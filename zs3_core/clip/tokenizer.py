"""CLIP's byte-pair tokenizer, taken from open_clip without importing open_clip.

``import open_clip`` pulls torchvision, which fails on CPU-only/Jetson setups where the
torchvision wheel does not match torch. The tokenizer itself needs only ftfy, regex, numpy
and torch, so its file is loaded by path under a stand-in package (no ``open_clip/__init__``
runs); relative imports of light sibling modules (e.g. ``constants``) still resolve.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import List, Sequence, Union

import torch

INSTALL_HINT = "pip install --no-deps open_clip_torch ftfy regex"
_STANDIN_PACKAGE = "_zs3_open_clip"


class ClipTokenizerUnavailable(ImportError):
    """open_clip's tokenizer file (or its ftfy/regex dependencies) is not installed."""


@lru_cache(maxsize=1)
def load_open_clip_tokenizer_module() -> types.ModuleType:
    """open_clip's ``tokenizer.py`` as a module, loaded by file path (cached)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(d) / "tokenizer.py" for d in locations if (Path(d) / "tokenizer.py").is_file()]
    if not files:
        raise ClipTokenizerUnavailable(f"open_clip's tokenizer is not installed; install it with `{INSTALL_HINT}`")
    package = sys.modules.get(_STANDIN_PACKAGE)
    if package is None:
        package = types.ModuleType(_STANDIN_PACKAGE)
        package.__path__ = [str(files[0].parent)]
        sys.modules[_STANDIN_PACKAGE] = package
    name = f"{_STANDIN_PACKAGE}.tokenizer"
    module_spec = importlib.util.spec_from_file_location(name, files[0])
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise ClipTokenizerUnavailable(
            f"open_clip's tokenizer ({files[0]}) could not be imported: {exc}. Install its dependencies "
            f"with `{INSTALL_HINT}`"
        ) from exc
    return module


class ClipTokenizer:
    """Text → (N, context_length) int64 token ids, as CLIP's text encoder expects.

    Each row is [start_of_text, BPE tokens…, end_of_text] padded with 0. Longer texts are
    truncated with end_of_text kept as the last token, so the encoder's argmax still finds it.
    """

    def __init__(self, context_length: int = 77):
        self.context_length = context_length
        self._bpe = load_open_clip_tokenizer_module().SimpleTokenizer()
        self.sot_token_id: int = self._bpe.sot_token_id
        self.eot_token_id: int = self._bpe.eot_token_id
        self.vocab_size: int = self._bpe.vocab_size

    def encode(self, text: str) -> List[int]:
        """BPE ids of ``text`` without start/end tokens (after ftfy clean-up and lower-casing)."""
        return list(self._bpe.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of one row of ids: what lies between start_of_text and end_of_text."""
        ids = [int(i) for i in ids]
        if ids and ids[0] == self.sot_token_id:
            ids = ids[1:]
        if self.eot_token_id in ids:
            ids = ids[: ids.index(self.eot_token_id)]
        return self._bpe.decode(ids).strip()

    def __call__(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """str or list of N str → (N, context_length) int64."""
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id] + self.encode(text)[: self.context_length - 2] + [self.eot_token_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result
