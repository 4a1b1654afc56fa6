"""Cache of text embeddings, one per sentence.

The text encoder runs only when the vocabulary changes, and then only for sentences it has
not encoded with this model: switching back and forth between vocabularies, or adding a
class to a large template ensemble, costs nothing for what was encoded before. A sentence
is a template filled with one synonym ("a photo of a pedestrian."), so the key (model
identity, sentence) covers everything that changes its embedding: the model's config and
weights (`model_id`), the template and the synonym. A class's embedding, the mean over its
sentences, is recomputed from these on every vocabulary (`zs3_core.class_embeddings`).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Sequence

import torch


class TextEmbeddingCache:
    """LRU map (model id, sentence) → (D,) embedding, safe across threads."""

    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_encode(self, model_id: str, sentences: Sequence[str],
                      encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """(N, D) embeddings of `sentences`; `encode(missing)` computes the ones not cached."""
        with self._lock:
            found = {s: self._entries.get((model_id, s)) for s in sentences}
        missing = [s for s, e in found.items() if e is None]
        if missing:
            encoded = encode(missing)
            if encoded.shape[0] != len(missing):
                raise RuntimeError(f"text encoder returned {encoded.shape[0]} embeddings for {len(missing)} sentences")
            for sentence, emb in zip(missing, encoded):
                found[sentence] = emb.detach().clone()
        with self._lock:
            self.hits += len(found) - len(missing)
            self.misses += len(missing)
            for sentence in found:
                key = (model_id, sentence)
                self._entries[key] = found[sentence]
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return torch.stack([found[s] for s in sentences])

    def __len__(self) -> int:
        return len(self._entries)
