"""Experiment configs: ``ml_collections.ConfigDict`` with one schema, validated at the boundary.

An experiment file defines ``get_config()`` starting from `default_config()`; every section except
``model`` (whose fields are the model's hyperparameters, checked by the registry) must only use the keys
the schema names, so a typo fails at once with the valid keys listed instead of being silently ignored.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
from typing import Any, Sequence

import ml_collections

from jaxdl.util.counts import require_counts

ConfigDict = ml_collections.ConfigDict


def default_config() -> ConfigDict:
    """The full schema with defaults: ``data``, ``model``, ``loss``, ``optimizer``, ``train``, ``seed``."""
    config = ConfigDict()
    config.name = "experiment"
    config.seed = 0
    config.data = ConfigDict(dict(
        name="mnist", batch_size=128, eval_batch_size=1000, normalize=False, seed=0, augment=(), classes=(),
        # Fixed views whose predictions are averaged in the final evaluation and the predictions (jaxdl.data.test_time).
        test_time_augment=(),
        train_limit=ml_collections.FieldReference(None, field_type=int),
        eval_limit=ml_collections.FieldReference(None, field_type=int),
        validation_fraction=ml_collections.FieldReference(None, field_type=float),
        test_fraction=ml_collections.FieldReference(None, field_type=float),
        root=ml_collections.FieldReference(None, field_type=str),
        # Sequence data: tokenizer ("wordpiece"/"bpe", or a saved tokenizer_file), vocabulary size, ids per text and truncation side;
        # forecasting window and horizon and the held-out tail sizes. None = the data set's own default.
        tokenizer=ml_collections.FieldReference(None, field_type=str),
        tokenizer_file=ml_collections.FieldReference(None, field_type=str),
        special_tokens=False,  # wrap every text as [CLS] ... [SEP] (what BERT-style pretrained encoders expect)
        vocab_size=ml_collections.FieldReference(None, field_type=int),
        max_length=ml_collections.FieldReference(None, field_type=int),
        truncation=ml_collections.FieldReference(None, field_type=str),
        window=ml_collections.FieldReference(None, field_type=int),
        horizon=ml_collections.FieldReference(None, field_type=int),
        validation_size=ml_collections.FieldReference(None, field_type=int),
        test_size=ml_collections.FieldReference(None, field_type=int),
        text_augment=ml_collections.FieldReference(None, field_type=int),  # augmented copies of each training text
        # Generated images (shapes, digit_canvases): side in pixels, objects per image, detector grid cells a side.
        image_size=ml_collections.FieldReference(None, field_type=int),
        max_objects=ml_collections.FieldReference(None, field_type=int),
        grid=ml_collections.FieldReference(None, field_type=int),
        # Your own files and code (docs/data.md): data.name "csv" (path, target, features, target_kind),
        # "image_folder" (root, image_size, channels) or "own" (loader="my_data.py:load").
        path=ml_collections.FieldReference(None, field_type=str),
        target=ml_collections.FieldReference(None, field_type=str),
        features=(),
        target_kind="auto",
        channels="rgb",
        loader=ml_collections.FieldReference(None, field_type=str),
    ))
    config.model = ConfigDict(dict(name="mlp"))
    config.loss = ConfigDict(dict(name="softmax_cross_entropy", label_smoothing=0.0, ignore_label=-1, l1=0.0, l2=0.0,
                                  penalty_params="kernel"))
    config.optimizer = ConfigDict(dict(
        name="adam", learning_rate=1e-3, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8, decay=0.9,
        weight_decay=0.0, weight_decay_params="kernel", clip_norm=0.0,
        schedule="constant", warmup_epochs=0.0, decay_rate=0.1, decay_every_epochs=1.0, min_lr_fraction=0.0,
        # Reduce-on-plateau (optax.contrib), off at 0: scale the rate by plateau_factor after plateau_patience epochs
        # whose mean training loss did not improve by plateau_rtol (relative).
        plateau_patience=0, plateau_factor=0.1, plateau_rtol=1e-4, plateau_cooldown=0, plateau_min_scale=0.0,
    ))
    config.train = ConfigDict(dict(
        num_epochs=10, log_every=50, progress=True,
        # Devices (jaxdl.distributed.parallel): "auto" = "mesh" over every device when there are several, else "jit";
        # mesh_shape = (data, model), -1 = the rest; sharding_rules = ((param-path regex, spec), ...) for the model axis.
        strategy="auto", mesh_shape=(-1, 1), sharding_rules=(),
        # How convolutions are computed (jaxdl.nn.lowering): "auto" (XLA's own on GPU/TPU; on a CPU the lowering
        # measured fastest for each use, once per machine, before the first step compiles: oneDNN's kernels, XLA's
        # or the patches lowering), "xla", "patches" or "onednn".
        lowering="auto",
        # Compute dtype (float32, bfloat16, float16 with dynamic loss scaling); micro-batches per step.
        precision="float32", accumulation_steps=1,
        # The step's global gradient, update and parameter norms in the logs, measured on the step each log line
        # is written at (the other steps skip them); False leaves them out.
        step_norms=True,
        compilation_cache_dir=ml_collections.FieldReference(None, field_type=str),
        # Also evaluate the final model on the training split in inference mode (the honest train-validation gap).
        evaluate_train=False,
        tensorboard=False,  # also write TensorBoard event files to workdir/tensorboard (the tensorboard extra)
        # Also log params and metrics to MLflow (the mlflow extra): "" = the local file store in workdir/mlruns.
        mlflow=False, mlflow_tracking_uri="",
        profile="",  # "START:STOP": a jax.profiler trace of those optimizer steps in workdir/profile
        # GANs: the workdir of a classifier run that judges 1,000 samples after training ("" = no judge).
        judge_workdir="",
        # GANs: decay of the generator's moving average that samples come from (0 = sample the generator itself).
        generator_ema=0.0,
        # Decay of the weights' moving average that evaluation, prediction and the returned model use (0 = off).
        ema_decay=0.0,
        early_stopping=ConfigDict(dict(monitor="val_accuracy", mode="auto", min_delta=0.0,
                                       patience=ml_collections.FieldReference(None, field_type=int),
                                       restore_best=True)),
        # Orbax checkpoints in workdir/checkpoints (jaxdl.checkpoint.CheckpointPolicy): when to save, how many
        # newest and best (by best_metric, default the early-stopping monitor) to keep; written in the background.
        checkpoint=ConfigDict(dict(every_epochs=1, every_steps=0, keep_latest=2, keep_best=1,
                                   best_metric=ml_collections.FieldReference(None, field_type=str),
                                   asynchronous=True)),
    ))
    # Transfer learning (jaxdl.transfer): a backbone from the pretrained zoo (`pretrained`, e.g. "efficientnet-lite0")
    # or from an earlier run's workdir (`workdir`), under model.name="transfer" with a new head for this data.
    # mode: fine_tune (backbone at backbone_lr_scale x the rate), feature_extraction (backbone frozen),
    # freeze_first (input layers + first freeze_blocks blocks frozen), train_top (only the last top_blocks blocks of the
    # backbone train: a second stage from a transfer run's workdir), scratch (same network, random weights).
    # model.head: the head as a registered model and its fields (dict(name="dense_head", hidden_sizes=(256,),
    # dropout_rate=0.5)); unset, one Dense layer. A transfer run as transfer.workdir also gives its head when it fits.
    # backbone_batch_stats: "frozen" runs the pretrained backbone in inference mode while its weights train (BatchNorm
    # keeps the pretrained statistics: the usual choice for small data), "train" updates them; scratch always trains them.
    # cache_features (feature_extraction only): run the frozen backbone once per example, train the head on the vectors.
    # lora: the backbone frozen, low-rank adapters (lora_rank, lora_alpha; on the kernels whose parameter path matches
    # the regex lora_targets) trained at the head's rate and merged into the kernels for prediction and export.
    config.transfer = ConfigDict(dict(pretrained="", workdir="", mode="fine_tune", backbone_lr_scale=0.1, freeze_blocks=0,
                                      top_blocks=0, lora_rank=8, lora_alpha=16.0, lora_targets=r"^backbone/.*kernel$",
                                      backbone_batch_stats="frozen", cache_features=False,
                                      cache_dir=ml_collections.FieldReference(None, field_type=str)))
    # `jaxdl tune`: kind "grid" (space values are lists), "random" (space values are distributions such as
    # "loguniform(1e-4, 1e-2)", `trials` draws) or "kfold" (`k` folds); space = ((field path, values), ...).
    # schedule: how trials that share shapes train: "vmap" (one program), "sequential", or "auto" (time both).
    config.search = ConfigDict(dict(kind="", space=(), trials=8, seed=0, metric="val_accuracy", k=5, schedule="auto"))
    return config


def _check_keys(section: ConfigDict, schema: ConfigDict, where: str) -> None:
    for key in section.keys():
        if key not in schema:
            raise ValueError(f"config has no field {where}{key!r}; valid fields of {where or 'the config'} are {sorted(schema.keys())}")
        if isinstance(schema[key], ConfigDict) and key != "model":
            if not isinstance(section[key], ConfigDict):
                raise ValueError(f"config field {where}{key} must be a section with fields {sorted(schema[key].keys())}")
            _check_keys(section[key], schema[key], f"{where}{key}.")


def validate_config(config: ConfigDict) -> ConfigDict:
    """Raise ``ValueError`` naming the key and the valid ones when ``config`` uses a field outside the schema."""
    _check_keys(config, default_config(), "")
    if "name" not in config.model:
        raise ValueError("config.model.name is required (a registered model name)")
    require_counts({f"config.{key}": config[key.split(".")[0]][key.split(".")[1]] for key in (
        "data.batch_size", "data.eval_batch_size", "train.num_epochs", "train.log_every", "train.accumulation_steps")})
    return config


def parse_value(text: str) -> Any:
    """A config value from text: a Python literal, or the text itself for a bare word (adam, relu)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as adam or relu is a string


def apply_override(config: ConfigDict, assignment: str) -> None:
    """Apply ``"optimizer.learning_rate=3e-4"`` to ``config`` in place (a leading ``config.`` is allowed).

    The path must exist, except under ``model`` where new hyperparameters may be set (the model registry
    validates them). Values are Python literals; bare words are strings.
    """
    path, sep, text = assignment.partition("=")
    if not sep:
        raise ValueError(f"override {assignment!r} must look like field.path=value")
    path = path.removeprefix("config.")
    keys = path.split(".")
    node = config
    for depth, key in enumerate(keys[:-1]):
        if key not in node or not isinstance(node[key], ConfigDict):
            where = ".".join(keys[:depth]) or "the config"
            raise ValueError(f"config has no section {'.'.join(keys[:depth + 1])!r}; sections of {where} are "
                             f"{sorted(k for k in node.keys() if isinstance(node[k], ConfigDict))}")
        node = node[key]
    leaf = keys[-1]
    if leaf not in node and keys[0] != "model":
        where = ".".join(keys[:-1]) or "the config"
        raise ValueError(f"config has no field {path!r}; valid fields of {where} are {sorted(node.keys())}")
    value = parse_value(text)
    try:
        if leaf in node and isinstance(node[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        node[leaf] = value
    except TypeError as exc:
        raise ValueError(f"cannot set {path} to {value!r}: {exc}") from exc


def load_config(experiment: str | pathlib.Path, overrides: Sequence[str] = ()) -> ConfigDict:
    """Import ``experiment`` (a path to a file with ``get_config()``), apply ``overrides`` and validate."""
    path = pathlib.Path(experiment)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {str(path)!r} does not exist (expected e.g. experiments/mnist_cnn.py)")
    spec = importlib.util.spec_from_file_location(f"jaxdl_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except SyntaxError as error:
        raise ValueError(f"{path}, line {error.lineno}: {error.msg}: the experiment file is not valid Python") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config() returning an ml_collections.ConfigDict")
    config = module.get_config()
    if not isinstance(config, ConfigDict):
        raise TypeError(f"{path}: get_config() returned {type(config).__name__}, not an ml_collections.ConfigDict; "
                        "start it from jaxdl.config.default_config()")
    for assignment in overrides:
        apply_override(config, assignment)
    return validate_config(config)


def config_to_json(config: ConfigDict) -> str:
    """The config as JSON text (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def as_tuples(value: Any) -> Any:
    """``value`` with every list (at any depth) turned into a tuple: JSON and ``ConfigDict`` give lists where
    Linen fields and mesh shapes need hashable tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v) for v in value)
    return value


def model_arguments(config: ConfigDict) -> dict[str, Any]:
    """The keyword arguments ``config.model`` gives its constructor (every field but ``name``, lists as tuples)."""
    return {k: as_tuples(v) for k, v in config.model.to_dict().items() if k != "name"}


def config_from_json(text: str) -> ConfigDict:
    """Rebuild a config written by `config_to_json`, validated against the schema."""
    data = json.loads(text)
    config = default_config()
    config.model = ConfigDict()
    merged = _merge(config.to_dict(), data)
    return validate_config(ConfigDict(merged))


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flat_config(config: ConfigDict) -> dict[str, Any]:
    """Every leaf of ``config`` under its dotted path (``{"optimizer.learning_rate": 1e-3, ...}``), the form
    experiment trackers take parameters in."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(config.to_dict(), "")
    return flat
