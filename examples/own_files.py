"""Your own files: a CSV table and a folder of images (one sub-folder per class), read and trained on.

The files are written first from scikit-learn's wine table and 8x8 digits, as a user's own would be laid out:
``wine.csv`` with a text ``cultivar`` column, ``digits/<class>/<n>.png``. The same files train from a config
with ``data.name="csv"`` (``data.path``, ``data.target``) or ``data.name="image_folder"`` (``data.root``).

    python -m examples.own_files [DIRECTORY]
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import flax.linen as nn
import numpy as np

import jaxdl as jd
from jaxdl.data.csv_table import read_csv
from jaxdl.data.image_folder import read_image_folder


def write_files(directory: pathlib.Path, images_per_class: int) -> tuple[pathlib.Path, pathlib.Path]:
    """``wine.csv`` and ``digits/`` under ``directory``, made from scikit-learn's data sets."""
    from PIL import Image
    from sklearn.datasets import load_digits, load_wine

    wine = load_wine(as_frame=True)
    table = wine.frame.drop(columns="target").assign(cultivar=[wine.target_names[t] for t in wine.target])
    table.to_csv(directory / "wine.csv", index=False)
    digits = load_digits()
    for label in range(10):
        folder = directory / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for n, image in enumerate(digits.images[digits.target == label][:images_per_class]):
            Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{n}.png")
    return directory / "wine.csv", directory / "digits"


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def main(quick: bool = False, directory: str | None = None) -> dict[str, dict[str, float]]:
    """Write the files (into ``directory`` or a temporary one), read them back and train a model on each."""
    with tempfile.TemporaryDirectory() as scratch:
        where = pathlib.Path(directory or scratch)
        where.mkdir(parents=True, exist_ok=True)
        csv_path, image_root = write_files(where, 20 if quick else 170)
        table = read_csv(csv_path, target="cultivar")
        rows = np.random.default_rng(0).permutation(len(table.y))  # the file is sorted by cultivar; the split takes the end
        x, y = ((table.x - table.x.mean(0)) / table.x.std(0))[rows], table.y[rows]
        print(f"{csv_path}: {len(table.y)} rows, features {table.feature_names[:3]}..., classes {table.class_names}")
        wine = jd.fit(nn.Sequential([nn.Dense(32), nn.relu, nn.Dense(len(table.class_names))]), (x, y),
                      loss="sparse_categorical_crossentropy", epochs=5 if quick else 60, batch_size=16,
                      validation_split=0.25, progress=False)
        images, names = read_image_folder(image_root, channels="grey")
        print(f"{image_root}: {len(images)} images of shape {images.x.shape[1:]}, classes {names}")
        order = np.random.default_rng(0).permutation(len(images))
        digits = jd.fit(SmallCNN(), images.take(order), loss="sparse_categorical_crossentropy", epochs=3 if quick else 20,
                        batch_size=32, validation_split=0.2, progress=False)
    result = {"wine": {k: v[-1] for k, v in wine.history.items()}, "digits": {k: v[-1] for k, v in digits.history.items()}}
    print({name: round(r["val_accuracy"], 3) for name, r in result.items()})
    return result


if __name__ == "__main__":
    main(directory=sys.argv[1] if len(sys.argv) > 1 else None)
