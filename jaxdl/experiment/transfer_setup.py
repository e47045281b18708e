"""A transfer experiment's model, optimizer and state: a backbone (from the pretrained zoo or an earlier run)
under a new head, an optimizer per parameter group (frozen, backbone at a lower rate, head), the pretrained
variables restored, and optionally the frozen backbone's features computed once for a head trained alone."""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdl.data.datasets import DatasetSplits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.models import DenseHead
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import TrainState, abstract_variables, create_train_state, initialise_missing, train_state_from
from jaxdl.transfer.backbone import build_transfer_model, frozen_model, load_backbone, restore_backbone, restore_head
from jaxdl.transfer.features import extract_features
from jaxdl.transfer.freeze import BACKBONE, LABELS, Freeze, check_mode, parameter_labels, transfer_optimizer


def transfer_setup(config: ml_collections.ConfigDict, data: DatasetSplits, model_kwargs: dict[str, Any], sample: Any,
                    steps_per_epoch: int, average: bool) -> tuple[Any, Any, Any, TrainState, dict[str, Any], DatasetSplits]:
    """Backbone + new head, per-group optimizer, initial state with the pretrained backbone restored (and, with
    ``average``, the weights' moving average starting from them).

    With ``transfer.cache_features`` (feature extraction only) the frozen backbone runs once over every
    split, and the returned model is the head alone, trained on the cached features (the returned data)."""
    transfer = config.transfer
    mode = check_mode(transfer.mode)
    if config.model.name != "transfer":
        raise ValueError(f"transfer.pretrained/transfer.workdir need model.name='transfer', got {config.model.name!r}")
    backbone = load_backbone(transfer.pretrained or None, transfer.workdir or None, transfer.cache_dir)
    if transfer.backbone_batch_stats not in ("frozen", "train"):
        raise ValueError(f"transfer.backbone_batch_stats must be 'frozen' or 'train', got {transfer.backbone_batch_stats!r}")
    freeze = Freeze(mode, transfer.freeze_blocks, transfer.top_blocks, transfer.backbone_lr_scale,
                    transfer.lora_rank, transfer.lora_alpha, transfer.lora_targets)
    # One rule with jaxdl.fit(freeze=...): which backbone blocks run in inference mode, and whether it trains its statistics.
    model = frozen_model(build_transfer_model(config, model_kwargs), freeze,
                         {BACKBONE: backbone.variables.get("params", {})}, transfer.backbone_batch_stats)
    reference = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
                                                  sample, train=False))
    labels = parameter_labels(reference["params"], mode, transfer.freeze_blocks, transfer.top_blocks)

    schedules: dict[float, Any] = {}  # the head's (at the configured rate) is the one logged

    def make_tx(learning_rate: float) -> Any:
        optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
        optimizer.learning_rate = learning_rate
        group_tx, schedules[learning_rate] = make_optimizer(optimizer, steps_per_epoch, config.train.num_epochs)
        return group_tx

    tx = transfer_optimizer(make_tx, config.optimizer.learning_rate, transfer.backbone_lr_scale, labels)
    schedule = schedules[config.optimizer.learning_rate]
    dropped: list[str] = []
    head_restored = False
    if mode == "scratch":
        state = create_train_state(model, tx, sample, config.seed, config.train.precision, average)
    else:  # the backbone's weights are given: only the rest is initialised
        variables, dropped = restore_backbone(abstract_variables(model, sample), backbone.variables)
        variables, head_restored = restore_head(variables, backbone.head_variables)
        state = train_state_from(initialise_missing(model, sample, config.seed, variables), tx, config.seed,
                                 config.train.precision, average)
    sizes = {label: 0 for label in LABELS}
    for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(state.params)):
        sizes[label] += int(np.size(leaf))
    notes = {"transfer": {"backbone": backbone.source, "mode": mode, "restored": mode != "scratch",
                          "dropped_from_source": dropped, "parameters": sizes,
                          "head": "restored from the source run" if head_restored else "new"}}
    if transfer.cache_features:
        if mode != "feature_extraction":
            raise ValueError(f"transfer.cache_features needs transfer.mode='feature_extraction' (a frozen backbone), got {mode!r}")
        if config.data.augment:
            raise ValueError(f"transfer.cache_features computes each example's features once, so data.augment "
                             f"{tuple(config.data.augment)} cannot apply; set data.augment=() or turn caching off")
        start = time.perf_counter()
        variables = state.variables()
        # The variables are an argument: closed over, 3.4M backbone weights would be baked into the program.
        run_backbone = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.features(x, False)))
        features = functools.partial(run_backbone, variables)
        batch = config.data.eval_batch_size

        def cached(split: ArrayDataset) -> ArrayDataset:
            return extract_features(features, split, batch)

        data = dataclasses.replace(data, train=cached(data.train), validation=cached(data.validation), test=cached(data.test),
                                   test_parts={k: cached(v) for k, v in data.test_parts.items()})
        model = DenseHead(hidden_sizes=(), num_outputs=data.num_classes, dropout_rate=model_kwargs.get("head_dropout", 0.0))
        tx, schedule = make_optimizer(config.optimizer, steps_per_epoch, config.train.num_epochs)
        state = create_train_state(model, tx, data.train.x[:1], config.seed, config.train.precision, average)
        notes["transfer"].update(features_cached=True, feature_dim=int(data.train.x.shape[1]),
                                 feature_seconds=time.perf_counter() - start)
    return model, tx, schedule, state, notes, data
