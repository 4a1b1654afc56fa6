"""ClipTokenizer gives exactly open_clip's SimpleTokenizer ids (the ids CLIP was trained on),
padded to 77 with end-of-text kept on truncation, without importing the open_clip package."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from zs3_core.clip import ClipTokenizer, ClipTokenizerUnavailable
from zs3_core.clip import tokenizer as tokenizer_module

TEXTS = [
    "a photo of a red triangle.",
    "A PHOTO of a  Forklift!!",
    "wall-concrete, potted plant & tv monitor",
    "café naïve 3 dogs' bowls",
    "",
]


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer()


@pytest.fixture(scope="module")
def reference():
    """open_clip's own tokenizer file, loaded independently of the code under test."""
    origin = Path(importlib.util.find_spec("open_clip").submodule_search_locations[0]) / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("reference_open_clip_tokenizer", origin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def test_ids_equal_open_clip_simple_tokenizer(tokenizer, reference):
    ours = tokenizer(TEXTS)
    assert ours.dtype == torch.int64 and ours.shape == (len(TEXTS), 77)
    assert torch.equal(ours, reference(TEXTS, context_length=77))


def test_rows_are_padded_with_zero_after_end_of_text(tokenizer):
    row = tokenizer("a photo of a sheep")[0]
    end = int((row == tokenizer.eot_token_id).nonzero()[0])
    assert row[0] == tokenizer.sot_token_id
    assert end == 1 + len(tokenizer.encode("a photo of a sheep"))
    assert torch.all(row[end + 1:] == 0)
    assert int(row.argmax()) == end  # the text encoder finds end-of-text as the argmax


def test_long_text_is_truncated_with_end_of_text_last(tokenizer, reference):
    long_text = " ".join(["forklift"] * 120)
    ours = tokenizer([long_text])
    assert ours[0, -1] == tokenizer.eot_token_id and torch.all(ours[0] != 0)
    assert torch.equal(ours, reference([long_text], context_length=77))


def test_decode_returns_the_text_between_start_and_end(tokenizer):
    assert tokenizer.decode(tokenizer("a photo of a red triangle.")[0]) == "a photo of a red triangle ."


def test_open_clip_package_init_is_not_executed(tokenizer):
    assert "open_clip" not in sys.modules  # its __init__ imports torchvision, which may not work


def test_missing_open_clip_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "open_clip" else real_find_spec(name, *a))
    tokenizer_module.load_open_clip_tokenizer_module.cache_clear()
    try:
        with pytest.raises(ClipTokenizerUnavailable, match="pip install --no-deps open_clip_torch ftfy regex"):
            ClipTokenizer()
    finally:
        monkeypatch.undo()
        tokenizer_module.load_open_clip_tokenizer_module.cache_clear()
