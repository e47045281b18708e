"""Generative adversarial training (loss name ``gan``, model ``gan``): a generator and a discriminator, each
with its own copy of the configured optimizer, trained by one pure step (`jaxdl.training.gan`); labels are
not used. Sample sheets are drawn every epoch and, with ``train.judge_workdir``, a classifier of an earlier
run judges how recognisable the samples are."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import optax

from jaxdl.losses import LossFn
from jaxdl.metrics import MetricsFn
from jaxdl.report.gan import JudgeEachEpoch, SampleJudge, SampleSheets
from jaxdl.tasks.base import Task
from jaxdl.training.gan import create_gan_state, make_gan_eval_step, make_gan_train_step
from jaxdl.training.step_norms import LogWindows
from jaxdl.training.weight_average import check_decay


class AdversarialGeneration(Task):
    """A GAN: the discriminator's and the generator's losses live in the step, not in a per-example loss."""

    losses = ("gan",)
    label_smoothing = True  # one-sided: the discriminator's targets for real images

    def loss(self) -> LossFn:
        """Not one function: `make_steps` builds both networks' losses into the step."""
        raise TypeError("a GAN trains two networks with two losses inside its step; it has no per-example loss")

    def metrics(self) -> MetricsFn:
        """Not per example: the GAN's eval step computes both losses and the discriminator's accuracy."""
        raise TypeError("a GAN's metrics come from its own eval step (jaxdl.training.gan.make_gan_eval_step)")

    def model_defaults(self, sample: Any) -> dict[str, Any]:
        """The generated images' shape is the data's."""
        return {"image_shape": tuple(int(d) for d in sample.shape[1:])}

    def check_config(self, config: ml_collections.ConfigDict, strategy: str) -> None:
        """A GAN needs model ``gan`` and runs on one device in float32 without accumulation; its generator's
        average is ``train.generator_ema``, not ``train.ema_decay``."""
        if config.model.name != "gan":
            raise ValueError(f"loss.name='gan' trains a generator against a discriminator: it needs model.name='gan', "
                             f"got {config.model.name!r}")
        if strategy != "jit" or config.train.precision != "float32" or config.train.accumulation_steps != 1:
            raise ValueError("GAN training runs on one device in float32 without accumulation: set train.strategy='jit', "
                             "train.precision='float32', train.accumulation_steps=1")
        if config.train.ema_decay:
            raise ValueError("train.ema_decay averages a classifier's weights; a GAN averages its generator with "
                             "train.generator_ema")
        if config.transfer.pretrained or config.transfer.workdir:
            raise ValueError("a GAN trains from scratch: leave transfer.pretrained and transfer.workdir empty")

    def create_state(self, model: Any, tx: optax.GradientTransformation, sample: Any, config: ml_collections.ConfigDict,
                     average: bool) -> Any:
        """Both networks' parameters and optimizer states, and the generator's average with ``generator_ema``."""
        ema = check_decay(config.train.generator_ema, "train.generator_ema")
        return create_gan_state(model, tx, tx, jnp.asarray(sample), config.seed, generator_ema=ema > 0)

    def make_steps(self, model: Any, tx: optax.GradientTransformation, config: ml_collections.ConfigDict, *,
                   axis_name: str | None, augment: Callable | None, ema_decay: float,
                   test_time: Callable | None = None, norms_at: LogWindows | None = None,
                   ) -> tuple[Callable, Callable, Callable | None]:
        """A discriminator then a generator update per step (no norms: ``norms_at`` is unused); evaluation scores
        both on held-out images."""
        ema = check_decay(config.train.generator_ema, "train.generator_ema")
        train_step = make_gan_train_step(model, tx, tx, ema_decay=ema or None, label_smoothing=self.smoothing)
        return train_step, make_gan_eval_step(model), None

    def hooks(self, model: Any, config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[Any]:
        """A sample sheet each epoch and, with ``train.judge_workdir``, the judge's verdict each epoch."""
        hooks: list[Any] = [SampleSheets(model, workdir)]
        if config.train.judge_workdir:
            hooks.append(JudgeEachEpoch(model, SampleJudge(config.train.judge_workdir), workdir))
        return hooks

    def write_outputs(self, model: Any, state: Any, data: Any, workdir: pathlib.Path, batch_size: int,
                      test_time: Callable | None, hooks: list[Any]) -> dict[str, Any]:
        """The judge's verdict on the final generator (``summary["samples"]``) when a judge watched the run."""
        judges = [hook.judge for hook in hooks if isinstance(hook, JudgeEachEpoch)]
        return {"samples": judges[0](model, state)} if judges else {}
