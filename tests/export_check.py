"""Shared check for the models' tests: `predict` exports with a dynamic class count C."""
import torch
import torch.nn.functional as F
from torch.export import Dim


class Predict(torch.nn.Module):
    """The exported graph: `model.predict(image, class_embeddings)`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, class_embeddings):
        return self.model.predict(image, class_embeddings)


def assert_predict_exports_with_dynamic_classes(model, image: torch.Tensor, dim: int, counts=(1, 7)) -> None:
    """Export with C in [1, 256] traced at C = 3, then compare with eager at other C."""
    exported = torch.export.export(Predict(model), (image, F.normalize(torch.randn(3, dim), dim=-1)),
                                   dynamic_shapes={"image": None, "class_embeddings": {0: Dim("C", min=1, max=256)}})
    with torch.no_grad():
        for count in counts:
            classes = F.normalize(torch.randn(count, dim), dim=-1)
            torch.testing.assert_close(exported.module()(image, classes), model.predict(image, classes))
