"""Cache of class text embeddings.

The text encoder runs only when the vocabulary changes, and then only for names it has not
seen with this model and template: switching back and forth between vocabularies costs
nothing after the first time.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Sequence

import torch


class TextEmbeddingCache:
    """LRU map (model id, template, class name) → (D,) embedding, safe across threads."""

    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_encode(self, model_id: str, template: str, names: Sequence[str],
                      encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """(C, D) embeddings for `names`; `encode(missing_names)` computes the ones not cached."""
        with self._lock:
            found = {n: self._entries.get((model_id, template, n)) for n in names}
        missing = [n for n, e in found.items() if e is None]
        if missing:
            encoded = encode(missing)
            if encoded.shape[0] != len(missing):
                raise RuntimeError(f"text encoder returned {encoded.shape[0]} embeddings for {len(missing)} names")
            for name, emb in zip(missing, encoded):
                found[name] = emb.detach().clone()
        with self._lock:
            self.hits += len(names) - len(missing)
            self.misses += len(missing)
            for name in names:
                key = (model_id, template, name)
                self._entries[key] = found[name]
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return torch.stack([found[n] for n in names])

    def __len__(self) -> int:
        return len(self._entries)
