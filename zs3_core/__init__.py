"""zs3_core: zero-shot semantic segmentation without ROS.

CLIP encoders with deep prompts and patch severance, the LDVC and DeOP models, a
training-free baseline, vocabularies with cached text embeddings, and the Segmenter API.
Top-level names load lazily so torch-free parts (the synthetic world, configs) stay light.
"""
__version__ = "0.1.0"

_EXPORTS = {
    "Segmenter": "zs3_core.segmenter",
    "SegmentationResult": "zs3_core.segmenter",
    "EncodedVocabulary": "zs3_core.segmenter",
    "Vocabulary": "zs3_core.vocabulary",
    "VocabularyError": "zs3_core.vocabulary",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zs3_core' has no attribute {name!r}")
