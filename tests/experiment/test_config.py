import pathlib

import pytest

from jaxdl.config import (
    apply_override,
    config_from_json,
    config_to_json,
    default_config,
    load_config,
    validate_config,
)

EXPERIMENTS = sorted((pathlib.Path(__file__).parents[2] / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_config_is_valid_and_round_trips(path):
    config = load_config(path)
    assert config.name == path.stem
    again = config_from_json(config_to_json(config))
    assert config_to_json(again) == config_to_json(config)


def test_overrides_set_typed_values():
    config = default_config()
    apply_override(config, "optimizer.learning_rate=3e-4")
    apply_override(config, "config.train.num_epochs=3")
    apply_override(config, "optimizer.learning_rate=1")  # an int where a float is expected is widened
    apply_override(config, "optimizer.name=sgd")
    apply_override(config, "model.hidden_sizes=(32, 16)")
    apply_override(config, "data.train_limit=100")
    assert config.optimizer.learning_rate == 1.0 and isinstance(config.optimizer.learning_rate, float)
    assert config.train.num_epochs == 3 and config.optimizer.name == "sgd"
    assert config.model.hidden_sizes == (32, 16) and config.data.train_limit == 100


@pytest.mark.parametrize("assignment, message", [
    ("optimizer.learing_rate=1e-3", "no field 'optimizer.learing_rate'.*learning_rate"),
    ("optimiser.learning_rate=1e-3", "no section 'optimiser'.*optimizer"),
    ("train.num_epochs=three", "cannot set train.num_epochs"),
    ("learning_rate", "field.path=value"),
])
def test_bad_overrides_name_the_valid_fields(assignment, message):
    with pytest.raises(ValueError, match=message):
        apply_override(default_config(), assignment)


def test_unknown_keys_written_in_a_config_file_are_rejected(tmp_path):
    config = default_config()
    config.optimizer.momentun = 0.9
    with pytest.raises(ValueError, match="no field optimizer.'momentun'.*momentum"):
        validate_config(config)
    path = tmp_path / "x.py"
    path.write_text("def get_config():\n    return 1\n")
    with pytest.raises(TypeError, match=r"get_config\(\) returned int, not an ml_collections.ConfigDict"):
        load_config(path)
    path.write_text("def get_config(:\n    return 1\n")
    with pytest.raises(ValueError, match=r"x.py, line 1: .*not valid Python"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.py")
