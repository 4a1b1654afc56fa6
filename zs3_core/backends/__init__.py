"""Executors of a model's image path (`predict(image, class_embeddings)`).

Every backend answers the same call, so the Segmenter and the node do not care which one
runs: eager PyTorch here; ONNX Runtime and TensorRT plug in beside it.
"""
from zs3_core.backends.base import BackendError, ImageBackend
from zs3_core.backends.factory import available_backends, create_backend

__all__ = ["BackendError", "ImageBackend", "available_backends", "create_backend"]
