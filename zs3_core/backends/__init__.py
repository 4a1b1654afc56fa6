"""Executors of a model's image path (`predict(image, class_embeddings)`).

Every backend answers the same call, so the Segmenter and the node do not care which one
runs: eager PyTorch (fp32, bf16 CPU autocast, fp16 CUDA), ONNX Runtime (CPU/CUDA), and
Torch-TensorRT (fp16 engine cached on disk); `auto` picks the fastest (backends/auto.py).
"""
from zs3_core.backends.base import BACKEND_NAMES, PRECISIONS, BackendError, ImageBackend
from zs3_core.backends.factory import available_backends, create_backend

__all__ = ["BACKEND_NAMES", "PRECISIONS", "BackendError", "ImageBackend", "available_backends", "create_backend"]
