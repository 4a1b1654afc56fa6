"""Compiled and exported forms of a model's image path (`predict(image, class_embeddings)`).

One graph per format, all with the image size fixed and the class count C dynamic
(1..max_classes), so a vocabulary change never recompiles and the text encoder stays in
PyTorch: `exported_program` (torch.export, what Torch-TensorRT's dynamo path consumes),
`onnx` (ONNX Runtime), `tensorrt` (Torch-TensorRT fp16 with an on-disk engine cache), and
`verify` (does a compiled backend still label like eager fp32?).
"""
from zs3_core.export.image_path import DEFAULT_MAX_CLASSES, ExportError, ImagePath, example_inputs

__all__ = ["DEFAULT_MAX_CLASSES", "ExportError", "ImagePath", "example_inputs"]
