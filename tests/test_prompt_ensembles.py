"""Class synonyms and prompt-template ensembles: a class's embedding is the normalised mean of
its sentences' normalised embeddings, and each model says whether it takes an ensemble."""
import numpy as np
import pytest
import torch

from zs3_core import Segmenter, VocabularyError
from zs3_core.config import REPO_ROOT
from zs3_core.prompt_templates import IMAGENET_TEMPLATES
from zs3_core.synthetic import SyntheticWorld, WorldConfig

SHIPPED = REPO_ROOT / "checkpoints" / "synthetic"


@pytest.fixture(scope="module")
def baseline():
    """The training-free baseline on the pre-trained tiny CLIP shipped with the synthetic models."""
    return Segmenter.from_config(SHIPPED / "clip_baseline.yaml", backend="torch")


def independent_mean(model, synonyms, templates):
    """CLIP's ensembling written out: encode each sentence, L2-normalise, average, L2-normalise."""
    rows = [model.encode_classes([synonym], template)[0] for synonym in synonyms for template in templates]
    rows = [r / r.norm() for r in rows]
    mean = torch.stack(rows).mean(dim=0)
    return mean / mean.norm()


def test_synonyms_times_templates_embed_as_the_normalised_mean(baseline):
    templates = ["a photo of a {}.", "a rendering of the {}.", "a {} on the floor."]
    vocab = baseline.encode_vocabulary(["red circle|red disc|scarlet ring", "green square"], templates=templates)
    assert vocab.names == ("red circle", "green square") and vocab.templates == tuple(templates)
    with torch.inference_mode():
        expected = [independent_mean(baseline.model, ["red circle", "red disc", "scarlet ring"], templates),
                    independent_mean(baseline.model, ["green square"], templates)]
    torch.testing.assert_close(vocab.embeddings, torch.stack(expected), rtol=1e-5, atol=1e-6)


def test_the_imagenet_set_by_name_averages_its_80_templates(baseline):
    vocab = baseline.encode_vocabulary(["blue triangle"], templates=["imagenet"])
    assert vocab.templates == IMAGENET_TEMPLATES and not vocab.notes
    with torch.inference_mode():
        expected = independent_mean(baseline.model, ["blue triangle"], IMAGENET_TEMPLATES)
    torch.testing.assert_close(vocab.embeddings[0], expected, rtol=1e-5, atol=1e-6)


def test_a_class_whose_synonym_repeats_its_name_gives_identical_labels(baseline):
    world = SyntheticWorld(WorldConfig(seed=3, image_size=(96, 128), objects=(3, 4)))
    frame = next(iter(world.camera_stream(1, seed=3))).image
    names = ["red circle", "green square", "blue triangle", "background"]
    plain = baseline.encode_vocabulary(names)
    repeated = baseline.encode_vocabulary(["red circle|red circle"] + names[1:])
    assert repeated.names == plain.names
    a, b = baseline.segment(frame, plain), baseline.segment(frame, repeated)
    assert np.array_equal(a.labels, b.labels)
    assert len(np.unique(a.labels)) > 1, "the frame should hold more than one label"


def test_ldvc_keeps_its_template_for_an_ensemble_and_says_so():
    ldvc = Segmenter.from_config(SHIPPED / "ldvc.yaml", backend="torch")
    vocab = ldvc.encode_vocabulary(["red circle|red disc", "green square"], templates=["imagenet"])
    assert vocab.templates == (ldvc.config.prompt_template,)
    assert vocab.synonyms[0] == ("red circle", "red disc")
    assert len(vocab.notes) == 1 and "LDVC takes no template ensemble" in vocab.notes[0]
    assert "imagenet set (80 templates)" in vocab.notes[0]
    single = ldvc.encode_vocabulary(["green square"], "a photo of a {}.")   # one template still applies
    assert single.templates == ("a photo of a {}.",) and not single.notes


def test_a_refused_ensemble_keeps_the_vocabulary_in_force(baseline):
    current = baseline.set_vocabulary(["red circle", "green square"])
    for bad in (dict(templates=["a {} and {}."]), dict(templates=["a {}.", "a {}."]),
                dict(template="a {}.", templates=["imagenet"])):
        with pytest.raises(VocabularyError):
            baseline.set_vocabulary(["red circle|red disc"], **bad)
    with pytest.raises(VocabularyError, match="repeats a name of class 0"):
        baseline.set_vocabulary(["red circle|red disc", "red disc"])
    assert baseline.vocabulary is current


def test_cached_sentences_are_not_encoded_again(baseline):
    baseline.encode_vocabulary(["cyan star"], templates=["imagenet"])
    misses = baseline.text_cache.misses
    baseline.encode_vocabulary(["cyan star|turquoise star"], templates=["imagenet"])
    assert baseline.text_cache.misses - misses == len(IMAGENET_TEMPLATES)   # only the new synonym's sentences


def test_cli_segment_takes_synonyms_and_a_template_set(tmp_path, capsys):
    import json

    import cv2

    from zs3.cli import main as zs3
    world = SyntheticWorld(WorldConfig(seed=1, image_size=(64, 64)))
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), next(iter(world.camera_stream(1, seed=1))).image[..., ::-1])
    code = zs3(["segment", str(image), "--classes", "red circle|red disc,background", "--templates", "imagenet",
                "--out", str(tmp_path / "labels.png"), "--config", str(SHIPPED / "clip_baseline.yaml")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["classes"]) == ["red circle", "background"]
    assert report["templates"] == "the imagenet set (80 templates)"
    assert zs3(["segment", str(image), "--classes", "red circle|", "--out", str(tmp_path / "x.png"),
                "--config", str(SHIPPED / "clip_baseline.yaml")]) == 2


def test_training_evaluation_asks_for_dataset_classes_with_synonyms_in_the_model_templates():
    from training.config import load_run_config
    from training.evaluate import gzs3_vocabulary, inference_protocol
    from zs3_core.models import build_model
    run = load_run_config(SHIPPED / "ldvc.yaml")
    model = build_model(run.model)
    classes = ["red circle", "green square"]
    vocabulary, note = gzs3_vocabulary(model, run, classes, ["imagenet"], ["red circle|red disc"])
    assert vocabulary.synonyms == (("red circle", "red disc"), ("green square",))
    assert vocabulary.templates == (run.model.prompt_template,) and "LDVC takes no template ensemble" in note
    assert inference_protocol(run, vocabulary)["synonyms"] == ["red circle|red disc"]
    with pytest.raises(VocabularyError, match="does not have"):
        gzs3_vocabulary(model, run, classes, (), ["forklift|pallet truck"])
