"""What a GAN run shows: a sheet of samples from a fixed latent grid after every epoch, and a judge, a
classifier trained by another jaxdl run, saying how recognisable and how varied 1,000 samples are."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np

from jaxdl.models.gan import GAN
from jaxdl.report.plots import plot_image_grid
from jaxdl.training.gan import sample_grid
from jaxdl.training.hooks import Hook, Loop
from jaxdl.training.state import TrainState


class SampleSheets(Hook):
    """A `fit` hook: ``samples/epoch_NNN.png`` (and ``samples.png``, the latest) from the same 64 latents."""

    def __init__(self, model: GAN, workdir: str | pathlib.Path) -> None:
        self.model, self.directory = model, pathlib.Path(workdir) / "samples"

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Draw the epoch's sheet (the pictures are written at once: nothing to flush)."""
        images = sample_grid(self.model, loop.state)
        self.directory.mkdir(parents=True, exist_ok=True)
        plot_image_grid(images, self.directory / f"epoch_{loop.epoch:03d}.png", title=f"epoch {loop.epoch}")
        plot_image_grid(images, self.directory.parent / "samples.png", title=f"epoch {loop.epoch}")


class SampleJudge:
    """A classifier trained by another jaxdl run (``judge_workdir``) judging a generator's samples: of ``count``
    samples from fixed latents (``seed``), the fraction it assigns a class with probability >= ``confidence``
    (recognisable), and how those spread over the classes (``class_shares``; the smallest share shows a collapse
    onto a few classes). The classifier is loaded and compiled once, so judging every epoch costs a second."""

    def __init__(self, judge_workdir: str | pathlib.Path, count: int = 1000, confidence: float = 0.9, seed: int = 1) -> None:
        from jaxdl.config import config_from_json
        from jaxdl.data.datasets import load_dataset
        from jaxdl.transfer.backbone import load_run_model

        self.workdir, self.count, self.confidence, self.seed = str(judge_workdir), count, confidence, seed
        classifier, self.variables = load_run_model(judge_workdir)
        judge_config = config_from_json((pathlib.Path(judge_workdir) / "config.json").read_text())
        self.mean, self.std = 0.0, 1.0
        if judge_config.data.normalize:  # the judge saw standardised pixels: the same training mean and std
            raw = judge_config.data.to_dict()
            raw["normalize"] = False
            train_x = load_dataset(raw).train.x
            self.mean, self.std = float(train_x.mean()), float(train_x.std()) or 1.0
        self.probabilities = jax.jit(lambda v, x: jax.nn.softmax(classifier.apply(v, x), axis=-1))

    def __call__(self, model: GAN, state: TrainState) -> dict[str, Any]:
        """The judgement of ``count`` samples of ``state``'s generator (its average when it has one)."""
        images = (sample_grid(model, state, 1, self.count, seed=self.seed) - self.mean) / self.std
        probabilities = np.asarray(self.probabilities(self.variables, images))
        confident = probabilities.max(axis=-1) >= self.confidence
        classes = probabilities.argmax(axis=-1)[confident]
        shares = np.bincount(classes, minlength=probabilities.shape[-1]) / max(len(classes), 1)
        return {"judge": self.workdir, "samples": self.count, "confident_fraction": float(confident.mean()),
                "class_shares": [round(float(s), 4) for s in shares], "smallest_class_share": float(shares.min())}


class JudgeEachEpoch(Hook):
    """A `fit` hook: the `SampleJudge`'s verdict on the generator after every epoch, appended to
    ``samples/judge.jsonl`` (and printed), so a run shows how recognisable its samples grow epoch by epoch."""

    def __init__(self, model: GAN, judge: SampleJudge, workdir: str | pathlib.Path) -> None:
        self.model, self.judge = model, judge
        self.path = pathlib.Path(workdir) / "samples" / "judge.jsonl"

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Judge the epoch's generator; the verdict is appended at once (nothing to flush) and shown."""
        verdict = {"epoch": loop.epoch, "step": row.get("step"), **self.judge(self.model, loop.state)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(verdict) + "\n")
        loop.say(f"epoch {loop.epoch}: {verdict['confident_fraction']:.1%} of {verdict['samples']} samples judged "
                 f"confidently, smallest class share {verdict['smallest_class_share']:.1%}")

