"""`zs3 segment IMAGE --classes "a,b" --out labels.png [--overlay overlay.png]`."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2

from zs3_core.backends.base import BACKEND_NAMES, PRECISIONS
from zs3_core.config import DEFAULT_MODEL_CONFIG

log = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that builds a Segmenter shares."""
    parser.add_argument("--config", default=str(DEFAULT_MODEL_CONFIG), help="model config YAML")
    parser.add_argument("--checkpoint", default=None, help="trained checkpoint (.safetensors)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="image-path executor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)


def add_templates_argument(parser: argparse.ArgumentParser) -> None:
    """`--templates`: a prompt-template ensemble, one template or built-in set name per use."""
    parser.add_argument("--templates", action="append", default=[], metavar="TEMPLATE_OR_SET",
                        help='a prompt template with one "{}", or a built-in set such as "imagenet" '
                             "(CLIP's 80); repeat to average several; instead of --template")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment one image into the given classes")
    p.add_argument("image", help="input image (any format OpenCV reads)")
    p.add_argument("--classes", required=True, help='comma-separated class names, each with optional '
                   '"|"-separated synonyms, e.g. "person|pedestrian,forklift"')
    p.add_argument("--template", default=None, help='prompt template with one "{}" (default: the config\'s)')
    add_templates_argument(p)
    p.add_argument("--out", required=True, help="label PNG to write (pixel = class index)")
    p.add_argument("--overlay", default=None, help="colour overlay PNG to write")
    p.add_argument("--confidence", default=None, help="confidence map (16-bit PNG, 65535 = 1.0)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zs3_core import Segmenter, VocabularyError
    from zs3_core.visualize import legend, overlay, write_label_png, write_rgb_png
    from zs3_core.prompt_templates import describe_templates
    from zs3_core.vocabulary import parse_class_list

    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        log.error("cannot read image %s", args.image)
        return 2
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    seg = Segmenter.from_config(args.config, checkpoint=args.checkpoint, backend=args.backend,
                                device=args.device, precision=args.precision)
    try:
        vocab = seg.set_vocabulary(parse_class_list(args.classes), args.template, args.templates)
    except VocabularyError as err:
        log.error("vocabulary refused: %s", err)
        return 2
    for note in vocab.notes:
        log.warning("%s", note)
    result = seg.segment(rgb)
    write_label_png(args.out, result.labels)
    if args.overlay:
        present = [i for i, f in enumerate(result.class_fraction) if f > 0]
        image = overlay(rgb, result.labels, len(vocab.names), result.unlabeled_value)
        write_rgb_png(args.overlay, legend(image, vocab.names, present))
    if args.confidence:
        write_label_png(args.confidence, (result.confidence * 65535).round().astype("uint16"))
    summary = {name: {"fraction": round(float(f), 4), "confidence": round(float(c), 4)}
               for name, f, c in zip(vocab.names, result.class_fraction, result.class_confidence)}
    print(json.dumps({"labels": str(Path(args.out)), "backend": seg.backend_name,
                      "templates": describe_templates(vocab.templates),
                      "ms": round(result.timings["total"], 1), "classes": summary}, indent=2))
    return 0
