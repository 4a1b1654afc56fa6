"""The text encoder runs only for names it has not encoded with this model and template."""
import torch

from zs3_core.text_cache import TextEmbeddingCache


def test_only_missing_names_are_encoded():
    calls = []

    def encode(names):
        calls.append(list(names))
        return torch.stack([torch.full((4,), float(len(n))) for n in names])

    cache = TextEmbeddingCache()
    first = cache.get_or_encode("m", "a {}.", ["cat", "horse"], encode)
    second = cache.get_or_encode("m", "a {}.", ["horse", "dog", "cat"], encode)
    assert calls == [["cat", "horse"], ["dog"]]
    assert torch.equal(second[0], first[1]) and torch.equal(second[2], first[0])
    cache.get_or_encode("m", "the {}.", ["cat"], encode)         # other template: encoded again
    cache.get_or_encode("other", "a {}.", ["cat"], encode)       # other model: encoded again
    assert calls[2:] == [["cat"], ["cat"]]


def test_cache_is_bounded():
    cache = TextEmbeddingCache(max_entries=3)
    cache.get_or_encode("m", "{}", list("abcde"), lambda ns: torch.zeros(len(ns), 2))
    assert len(cache) == 3
