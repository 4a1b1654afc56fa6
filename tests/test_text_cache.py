"""The text encoder runs only for sentences it has not encoded with this model."""
import torch

from zs3_core.text_cache import TextEmbeddingCache


def test_only_missing_sentences_are_encoded():
    calls = []

    def encode(sentences):
        calls.append(list(sentences))
        return torch.stack([torch.full((4,), float(len(s))) for s in sentences])

    cache = TextEmbeddingCache()
    first = cache.get_or_encode("m", ["a cat.", "a horse."], encode)
    second = cache.get_or_encode("m", ["a horse.", "a dog.", "a cat."], encode)
    assert calls == [["a cat.", "a horse."], ["a dog."]]
    assert torch.equal(second[0], first[1]) and torch.equal(second[2], first[0])
    cache.get_or_encode("m", ["the cat."], encode)         # other template, other sentence: encoded
    cache.get_or_encode("other", ["a cat."], encode)       # other model: encoded again
    assert calls[2:] == [["the cat."], ["a cat."]]


def test_a_sentence_repeated_in_one_request_is_encoded_once():
    calls = []
    cache = TextEmbeddingCache()
    out = cache.get_or_encode("m", ["a cat.", "a cat."], lambda s: calls.append(list(s)) or torch.ones(len(s), 2))
    assert calls == [["a cat."]] and out.shape == (2, 2)


def test_cache_is_bounded():
    cache = TextEmbeddingCache(max_entries=3)
    cache.get_or_encode("m", list("abcde"), lambda ns: torch.zeros(len(ns), 2))
    assert len(cache) == 3
