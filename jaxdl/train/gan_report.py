"""What a GAN run shows: a sheet of samples from a fixed latent grid after every epoch, and a judge, a
classifier trained by another jaxdl run, saying how recognisable and how varied 1,000 samples are."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from jaxdl.models.gan import GAN
from jaxdl.plots import plot_image_grid
from jaxdl.train.gan import sample_grid
from jaxdl.train.state import TrainState


class SampleSheets:
    """A `fit` callback: ``samples/epoch_NNN.png`` (and ``samples.png``, the latest) from the same 64 latents."""

    def __init__(self, model: GAN, workdir: str | pathlib.Path) -> None:
        self.model, self.directory = model, pathlib.Path(workdir) / "samples"

    def __call__(self, epoch: int, row: dict[str, Any], state: TrainState) -> None:
        images = sample_grid(self.model, state)
        self.directory.mkdir(parents=True, exist_ok=True)
        plot_image_grid(images, self.directory / f"epoch_{epoch:03d}.png", title=f"epoch {epoch}")
        plot_image_grid(images, self.directory.parent / "samples.png", title=f"epoch {epoch}")

    def close(self) -> None:
        """Nothing to flush (the pictures are written at once)."""


def judge_samples(model: GAN, state: TrainState, judge_workdir: str | pathlib.Path, count: int = 1000,
                  confidence: float = 0.9, seed: int = 1) -> dict[str, Any]:
    """Classify ``count`` samples with the classifier that the run in ``judge_workdir`` trained: the fraction
    it assigns a class with probability >= ``confidence`` (recognisable), and how those spread over the
    classes (``class_shares``; the smallest share shows a collapse onto a few classes)."""
    from jaxdl.config import config_from_json
    from jaxdl.data.datasets import load_dataset
    from jaxdl.transfer.backbone import load_run_model

    classifier, variables = load_run_model(judge_workdir)
    images = sample_grid(model, state, 1, count, seed=seed)
    judge_config = config_from_json((pathlib.Path(judge_workdir) / "config.json").read_text())
    if judge_config.data.normalize:  # the judge saw standardised pixels: the same training mean and std
        raw = judge_config.data.to_dict()
        raw["normalize"] = False
        train_x = load_dataset(raw).train.x
        images = (images - float(train_x.mean())) / (float(train_x.std()) or 1.0)
    probabilities = np.asarray(jax.jit(lambda v, x: jax.nn.softmax(classifier.apply(v, x), axis=-1))(variables, images))
    confident = probabilities.max(axis=-1) >= confidence
    classes = probabilities.argmax(axis=-1)[confident]
    shares = np.bincount(classes, minlength=probabilities.shape[-1]) / max(len(classes), 1)
    return {"judge": str(judge_workdir), "samples": count, "confident_fraction": float(confident.mean()),
            "class_shares": [round(float(s), 4) for s in shares], "smallest_class_share": float(shares.min())}
