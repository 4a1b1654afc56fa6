"""The node at camera resolution with a COCO-Stuff-sized vocabulary, over real DDS: a
1920x1080 frame with 171 classes gets labels, confidence and info, the labels equal to the
literal upsample-then-argmax of the same model output."""
import numpy as np
import torch

from zs3_core.bags.conversions import image_to_numpy
from zs3_core.postprocess import postprocess_literal
from zs3_core.preprocess import to_model_input
from zs3_core.synthetic import SyntheticWorld
from zs3_core.synthetic.vocabularies import sized_vocabulary
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter

H, W = 1080, 1920


def test_1080p_frame_with_171_classes_publishes_every_output():
    names = sized_vocabulary(171, SyntheticWorld().class_names)
    frame = next(iter(moving_shapes(1, size=(H, W))))
    with running_segmenter(parameters={"classes": names, "qos_reliability": "reliable"}) as (node, client):
        key = client.publish(frame)
        outputs = client.wait_outputs(key, timeout=180, kinds=("labels", "confidence", "info"))
        assert outputs is not None, "no labels, confidence and info for the 1080p frame"
        vocabulary = node.vocabulary
        segmenter = node._segmenter
        config = segmenter.config
        with torch.inference_mode():
            probs = segmenter.backend(to_model_input(frame, config.input_size, config.pixel_mean, config.pixel_std),
                                      vocabulary.embeddings)
    labels = image_to_numpy(outputs.labels)
    assert labels.shape == (H, W) and outputs.labels.encoding == "mono8"
    expected = postprocess_literal(probs, H, W, segmenter.unlabeled_threshold)[0]
    np.testing.assert_array_equal(labels, expected)
    confidence = image_to_numpy(outputs.confidence)
    assert confidence.shape == (H, W) and np.isfinite(confidence).all()
    assert len(outputs.info.class_names) == 171
    assert abs(sum(outputs.info.pixel_fraction) + outputs.info.unlabeled_fraction - 1.0) < 1e-3
