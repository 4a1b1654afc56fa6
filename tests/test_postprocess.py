"""The candidate postprocess gives the literal method's exact labels: upsample-then-argmax
(`postprocess_literal`) is the oracle, on the shipped model's outputs (probabilities rounded
to bf16 and saturated at 1 for names it was not trained on: many exact ties) and on
constructed ties and thresholds. `method="candidate"` makes every vocabulary take the candidate
method, which small ones would otherwise skip; the chunked method (a GPU's) is checked alike."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zs3_core import Segmenter
from zs3_core.postprocess import axis_weights, choose_method, postprocess, postprocess_chunked, postprocess_literal
from zs3_core.preprocess import to_model_input
from zs3_core.synthetic import SyntheticWorld
from zs3_core.synthetic.vocabularies import sized_vocabulary


@pytest.fixture(scope="module")
def shipped():
    return Segmenter.from_config(), SyntheticWorld()


def trained_probabilities(shipped, num_classes: int, scene: int) -> torch.Tensor:
    seg, world = shipped
    vocab = seg.encode_vocabulary(sized_vocabulary(num_classes, world.class_names))
    image = world.scene(scene).image
    with torch.inference_mode():
        return seg.backend(to_model_input(image, seg.config.input_size, seg.config.pixel_mean,
                                          seg.config.pixel_std), vocab.embeddings)


def assert_same_as_reference(probs, height, width, threshold):
    new = postprocess(probs, height, width, threshold, method="candidate")
    old = postprocess_literal(probs, height, width, threshold)
    np.testing.assert_array_equal(new[0], old[0])
    assert new[0].dtype == old[0].dtype and new[4] == old[4]
    np.testing.assert_allclose(new[1], old[1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(new[2], old[2], rtol=0, atol=1e-4)      # per-class confidence
    np.testing.assert_allclose(new[3], old[3], rtol=0, atol=1e-4)      # pixel shares
    return new


@pytest.mark.parametrize("num_classes,height,width,scene", [
    (6, 480, 640, 0), (20, 360, 640, 1), (171, 240, 320, 2), (171, 97, 131, 0), (300, 120, 160, 1),
    (1024, 90, 200, 0)])
def test_labels_equal_the_literal_method_on_trained_outputs(shipped, num_classes, height, width, scene):
    probs = trained_probabilities(shipped, num_classes, scene)
    labels = assert_same_as_reference(probs, height, width, 0.0)[0]
    assert labels.dtype == (np.uint8 if num_classes <= 255 else np.uint16)
    assert len(np.unique(labels)) > 1


@pytest.mark.parametrize("threshold", [0.3, 0.9])
def test_unlabeled_threshold_matches(shipped, threshold):
    probs = trained_probabilities(shipped, 36, 0)
    labels = assert_same_as_reference(probs, 200, 300, threshold)[0]
    assert (labels == 255).any()


def test_mono16_vocabulary_with_threshold_matches(shipped):
    probs = trained_probabilities(shipped, 300, 2)
    labels = assert_same_as_reference(probs, 150, 200, 0.5)[0]
    assert labels.dtype == np.uint16 and (labels == 65535).any()


def test_exact_and_one_ulp_ties_go_to_the_lowest_class_id():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(1, 8, 8, 8, generator=g) ** 2
    probs[0, 3] = probs[0, 1]                                               # identical maps
    probs[0, 5] = torch.nextafter(probs[0, 1], torch.tensor(2.0))           # one ulp above
    probs[0, 6] = torch.where(torch.arange(8) < 4, probs[0, 2], probs[0, 2] * 0.5)   # equal on half
    labels = assert_same_as_reference(probs, 333, 517, 0.0)[0]
    assert 3 not in labels


def test_uniform_maps_fall_back_to_every_class_and_stay_exact():
    probs = torch.full((1, 20, 8, 8), 0.05)
    probs[0, 7, 2:4, 2:4] = 0.05 + 2 ** -20
    assert_same_as_reference(probs, 60, 90, 0.0)


def test_frame_size_equal_to_the_grid_and_single_cell_grids():
    g = torch.Generator().manual_seed(2)
    assert_same_as_reference(torch.rand(1, 5, 8, 8, generator=g), 8, 8, 0.0)
    assert_same_as_reference(torch.rand(1, 4, 1, 1, generator=g), 5, 7, 0.0)
    assert_same_as_reference(torch.rand(1, 4, 8, 8, generator=g), 5, 7, 0.0)   # downsampling


def test_axis_weights_reproduce_the_interpolation_kernel():
    g = torch.Generator().manual_seed(3)
    grid = torch.rand(1, 3, 8, 11, generator=g)
    rows, cols = axis_weights(8, 61, "cpu"), axis_weights(11, 97, "cpu")
    p = grid[0]
    mine = ((p[:, rows.i0][:, :, cols.i0] * cols.w0 + p[:, rows.i0][:, :, cols.i1] * cols.w1) * rows.w0[:, None]
            + (p[:, rows.i1][:, :, cols.i0] * cols.w0 + p[:, rows.i1][:, :, cols.i1] * cols.w1) * rows.w1[:, None])
    kernel = F.interpolate(grid, size=(61, 97), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(mine, kernel, rtol=1e-6, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["candidate", "chunked", "auto"])
def test_on_cuda_labels_match_and_only_results_come_back(shipped, method):
    probs = trained_probabilities(shipped, 171, 0).cuda()
    new = postprocess(probs, 1080, 1920, 0.0, method=method)
    old = postprocess_literal(probs, 1080, 1920, 0.0)
    np.testing.assert_array_equal(new[0], old[0])
    np.testing.assert_allclose(new[1], old[1], rtol=0, atol=1e-6)
    assert isinstance(new[0], np.ndarray) and isinstance(new[1], np.ndarray)


@pytest.mark.parametrize("num_classes,height,width,threshold", [
    (6, 480, 640, 0.0), (171, 240, 320, 0.0), (36, 200, 300, 0.5), (300, 120, 160, 0.5)])
def test_the_chunked_method_gives_the_literal_labels_and_confidence(shipped, num_classes, height, width, threshold):
    """A chunk of 3 frames' worth of values: many chunks, so pixels change hands between them."""
    probs = trained_probabilities(shipped, num_classes, 1)
    new = postprocess_chunked(probs, height, width, threshold, chunk_elements=3 * height * width)
    old = postprocess_literal(probs, height, width, threshold)
    np.testing.assert_array_equal(new[0], old[0])
    np.testing.assert_array_equal(new[1], old[1])
    np.testing.assert_array_equal(new[2], old[2])
    assert new[4] == old[4]


def test_ties_across_chunks_go_to_the_lowest_class_id():
    probs = torch.full((1, 7, 4, 4), 0.25)
    probs[0, 5] = 0.5
    probs[0, 2] = 0.5                 # ties class 5, in an earlier chunk
    labels = postprocess_chunked(probs, 9, 9, 0.0, chunk_elements=2 * 81)[0]
    assert (labels == 2).all()


def test_the_method_is_chosen_by_problem_size_and_device():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_method(6, (12, 12), 480, 640, cpu) == "literal"           # small
    assert choose_method(171, (12, 12), 12, 12, cpu) == "literal"           # grid-sized frame
    assert choose_method(171, (12, 12), 1080, 1920, cpu) == "candidate"
    assert choose_method(171, (12, 12), 1080, 1920, gpu) == "chunked"
    assert choose_method(1024, (12, 12), 1080, 1920, gpu) == "chunked"
    with pytest.raises(ValueError, match="method"):
        postprocess(torch.rand(1, 3, 4, 4), 9, 9, 0.0, method="fastest")


def test_small_vocabularies_and_grid_sized_frames_take_the_literal_method(shipped):
    probs = trained_probabilities(shipped, 3, 0)
    for args in ((probs, 100, 150, 0.0), (probs, 8, 8, 0.0)):
        new, old = postprocess(*args), postprocess_literal(*args)
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])                   # the same computation
