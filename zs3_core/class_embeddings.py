"""Class text embeddings from a vocabulary: the normalised mean over synonyms × templates.

CLIP's prompt ensembling (Radford et al. 2021, Sec. 3.1.4, and its ImageNet notebook): every
sentence (a template filled with a class name) is encoded and L2-normalised, a class's
sentences are averaged and the mean is L2-normalised again. Synonyms join the same mean, so
"person|pedestrian" is one class whose embedding lies between both phrasings. A class with a
single sentence keeps that sentence's embedding exactly as the model returned it.

Which templates a model takes is the model's to say (`prompt_ensembles` on the model class):
the training-free baseline and DeOP average any ensemble; LDVC's learned deep prompts stand
in for a hand-written template at every text layer, so it keeps its one template and the
caller is told so (`templates_for_model`), never left to assume the ensemble applied.
Every model takes synonyms.

One module for the Segmenter (node, CLI, bag evaluation) and training evaluation, so an
ensemble means the same everywhere.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from zs3_core.prompt_templates import describe_templates
from zs3_core.vocabulary import Vocabulary

ENCODE_CHUNK = 64    # sentences per text-encoder call: bounds activation memory, and a 5 Hz stream kept
                     # smaller output gaps than with 256 while 20 x 80 sentences encoded (docs/benchmarks.md)

EncodeSentences = Callable[[list[str]], torch.Tensor]


def templates_for_model(model, templates: Sequence[str], configured: str) -> tuple[tuple[str, ...], str]:
    """The templates `model` encodes with for a request of `templates`, and a note saying what
    was used instead ("" when the request applies as given). `configured` is the model
    config's own template, the one a model without ensembles was trained with."""
    templates = tuple(templates)
    if len(templates) > 1 and not getattr(model, "prompt_ensembles", True):
        why = getattr(model, "prompt_ensemble_note", "")
        return (configured,), (f"{type(model).__name__} takes no template ensemble{' (' + why + ')' if why else ''}: "
                               f"used its template {configured!r} instead of {describe_templates(templates)}")
    return templates, ""


def sentence_encoder(model) -> EncodeSentences:
    """Sentences → (N, D) float embeddings on the CPU, through the model's own text side
    (`encode_classes` with the template "{}" is the sentence itself), in chunks."""
    def encode(sentences: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            parts = [model.encode_classes(sentences[i:i + ENCODE_CHUNK], "{}").float().cpu()
                     for i in range(0, len(sentences), ENCODE_CHUNK)]
        return torch.cat(parts)
    return encode


def class_embeddings(vocabulary: Vocabulary, encode: EncodeSentences) -> torch.Tensor:
    """(C, D): per class, the normalised mean of its sentences' normalised embeddings; each
    distinct sentence is encoded once."""
    per_class = vocabulary.class_prompts()
    unique = list(dict.fromkeys(s for sentences in per_class for s in sentences))
    encoded = encode(unique)
    row = {s: i for i, s in enumerate(unique)}
    rows = []
    for sentences in per_class:
        if len(sentences) == 1:
            rows.append(encoded[row[sentences[0]]])
        else:
            members = F.normalize(encoded[[row[s] for s in sentences]], dim=-1)
            rows.append(F.normalize(members.mean(dim=0), dim=-1))
    return torch.stack(rows)
