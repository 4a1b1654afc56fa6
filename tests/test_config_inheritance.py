"""Config inheritance (`_base_`) in the one YAML loader: variants are short deltas over a
base, the merged mapping is checked as strictly as a plain file, and every shipped config
loads to exactly the dataclasses it loaded to when each file still spelled out every value.
"""
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from training.config import load_run_config
from training.pretrain import load_pretrain_config
from zs3_core.config import ConfigError, ModelConfig, load_model_config, load_yaml

ROOT = Path(__file__).resolve().parent.parent

# The LDVC COCO-Stuff model as its full 53-line YAML defined it before it became a delta.
LDVC_COCOSTUFF = ModelConfig(
    name="ldvc", clip="vitb16", clip_weights=None, checkpoint=None, input_size=512,
    pixel_mean=(123.675, 116.28, 103.53), pixel_std=(58.395, 57.12, 57.375), prompt_template="{}.",
    unlabeled_threshold=0.0,
    options={"visual_prompt_tokens": 100, "visual_prompt_dropout": 0.1, "prompt_norm": True,
             "text_prompt_tokens": 6, "text_prompt_init": "a photo of a", "tap_layers": [7, 10],
             "decoder_blocks": 2, "decoder_heads": 8, "decoder_mlp_ratio": 4.0, "windows_per_side": 8,
             "route_top_k": 16, "focal_weight": 100.0, "dice_weight": 1.0, "focal_alpha": 0.25,
             "focal_gamma": 2.0, "focal_normalization": "present_pairs"})

# sha256 of every section each config loads to (paths reduced to their last component, so
# the digest does not depend on where the checkout lies), taken from the files as they were
# before inheritance and the default pixel statistics were factored out.
DIGESTS = {
    "checkpoints/synthetic/clip_baseline.yaml": "f8338691bba9b916",
    "checkpoints/synthetic/deop.yaml": "8e79aa740e14db05",
    "checkpoints/synthetic/ldvc.yaml": "80bcf2bdb53f4a72",
    "checkpoints/synthetic/pretrain.yaml": "0a80584ea3d36f62",
    "config/models/clip_baseline_synthetic.yaml": "a30aaca786248ae3",
    "config/models/clip_baseline_tiny.yaml": "87ec25ea04f3e22e",
    "config/models/clip_baseline_vitb16.yaml": "0c71817b4ed2fa55",
    "config/models/deop_synthetic.yaml": "68b9dbccb0c874ae",
    "config/models/deop_vitb16_cocostuff.yaml": "0a916c2d02558e80",
    "config/models/deop_vitb16_voc.yaml": "c9689898f6c38181",
    "config/models/ldvc_synthetic.yaml": "deaeb4a6f8469e4e",
    "config/models/ldvc_vitb16_cocostuff.yaml": "2a4382bd3673b727",
    "config/models/ldvc_vitb16_voc.yaml": "2564314b3caff5b0",
    "config/pretrain/tiny_clip_synthetic.yaml": "1a827814f37fa087",
}


def sections_digest(path: str) -> str:
    config = load_pretrain_config(ROOT / path) if "pretrain" in path else load_run_config(ROOT / path)
    sections = {f.name: dataclasses.asdict(config)[f.name] for f in dataclasses.fields(config) if f.name != "raw"}

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, str) and "/" in value:
            return value.rsplit("/", 1)[-1]
        return value
    text = json.dumps(plain(sections), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_ldvc_cocostuff_is_a_short_delta_that_loads_to_the_same_model_config():
    path = ROOT / "config" / "models" / "ldvc_vitb16_cocostuff.yaml"
    assert load_model_config(path) == LDVC_COCOSTUFF
    assert len(path.read_text().splitlines()) <= 20
    run = load_run_config(path)
    assert (run.data.dataset, run.train.iterations, run.train.out_dir) == ("cocostuff", 80000, "runs/ldvc_vitb16_cocostuff")
    assert run.train.lr == 0.0002 and run.eval.seen_score_offset == 0.1      # inherited from VOC


@pytest.mark.parametrize("path", sorted(DIGESTS))
def test_every_config_loads_as_before(path):
    assert sections_digest(path) == DIGESTS[path]


def test_every_config_file_is_covered():
    files = {str(p.relative_to(ROOT)) for pattern in ("config/models/*.yaml", "config/pretrain/*.yaml",
                                                       "checkpoints/synthetic/*.yaml") for p in ROOT.glob(pattern)}
    assert files == set(DIGESTS)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_child_overrides_nested_keys_and_keeps_the_rest(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  name: ldvc\n  input_size: 512\n  options: {a: 1, b: [1, 2]}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel:\n  input_size: 256\n  options: {b: [3]}\n")
    assert load_yaml(child) == {"model": {"name": "ldvc", "input_size": 256, "options": {"a": 1, "b": [3]}}}


def test_bases_in_a_list_merge_in_order(tmp_path):
    write(tmp_path / "one.yaml", "model: {name: ldvc, input_size: 64}\n")
    write(tmp_path / "two.yaml", "model: {input_size: 128}\n")
    child = write(tmp_path / "child.yaml", "_base_: [one.yaml, two.yaml]\n")
    assert load_model_config(child).input_size == 128 and load_model_config(child).name == "ldvc"


def test_an_unknown_key_in_a_child_is_still_an_error_naming_it(tmp_path):
    write(tmp_path / "base.yaml", "model: {name: ldvc}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel: {input_sise: 256}\n")
    with pytest.raises(ConfigError, match="input_sise"):
        load_model_config(child)


def test_missing_and_circular_bases_are_clear_errors(tmp_path):
    missing = write(tmp_path / "missing.yaml", "_base_: nowhere.yaml\nmodel: {}\n")
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist .*a _base_ of"):
        load_yaml(missing)
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_yaml(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="_base_ must be a file name"):
        load_yaml(write(tmp_path / "bad.yaml", "_base_: {x: 1}\n"))
