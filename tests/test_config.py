"""Model configs: every shipped YAML loads, and mistakes are named precisely."""
from pathlib import Path

import pytest

from zs3_core.config import ConfigError, ModelConfig, load_model_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "models"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_model_config_loads(path):
    config = load_model_config(path)
    assert isinstance(config, ModelConfig)
    assert config.input_size % 16 == 0


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: clip_baseline\n  input_sise: 512\n")
    with pytest.raises(ConfigError, match="input_sise"):
        load_model_config(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  input_size: big\n")
    with pytest.raises(ConfigError, match="model.input_size: expected an integer"):
        load_model_config(path)


def test_missing_and_broken_files_say_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_model_config(bad)


def test_clip_weights_resolve_relative_to_the_config_file(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  clip_weights: w.safetensors\n")
    assert load_model_config(path).clip_weights == str((tmp_path / "w.safetensors").resolve())
