"""A folder of your own images as a data set: one sub-folder per class (``root/cat/*.jpg``, ``root/dog/*.png``).

Decoded with Pillow, with its decompression-bomb limit kept (an image of more than ``MAX_PIXELS`` pixels is
refused, not decoded); a file Pillow cannot read is an error naming it, never a silent skip. Images become
float32 in [0, 1], RGB or grey (``channels``), resized to ``size`` x ``size`` when given (they must share one
size otherwise). Classes are the sub-folders in sorted order; files whose names start with a dot are skipped.

``data.name="image_folder"`` with ``data.root`` (and ``data.image_size``, ``data.channels``) loads it for
``jaxdl train``: a root holding ``train/`` and ``test/`` (and ``validation/``) folders of classes keeps that
split; a plain root is split seeded and stratified (``validation_fraction``, ``test_fraction``: 0.2 each).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, MissingDataError, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.images import finish_splits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.split import split_indices

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 64_000_000  # per image; Pillow's own default warns at 89M and refuses at twice that
MAX_FILE_BYTES = 256 * 2**20


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as error:
        raise MissingDataError("reading image folders needs Pillow: pip install 'jaxdl[files]'") from error
    return Image


def class_folders(root: pathlib.Path) -> list[pathlib.Path]:
    """The class sub-folders of ``root``, sorted by name (``ValueError`` when there are none)."""
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root} has no class sub-folders; put each class's images in a folder named after it")
    return folders


def read_image(path: pathlib.Path, size: int | None, channels: str) -> np.ndarray:
    """One image file as ``[h, w, 1 or 3]`` float32 in [0, 1] (resized to ``size`` x ``size`` when given)."""
    image_module = _pillow()
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, over the {MAX_FILE_BYTES}-byte limit for one image")
    try:
        with image_module.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{path} is {image.width}x{image.height} pixels, over the {MAX_PIXELS}-pixel limit")
            image = image.convert("L" if channels == "grey" else "RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), image_module.Resampling.BILINEAR, reducing_gap=None)
            array = np.asarray(image, np.float32) / 255.0
    except (OSError, SyntaxError, image_module.DecompressionBombError) as error:  # what Pillow raises on bad files
        raise ValueError(f"cannot read the image {path}: {error}") from error
    return array[..., None] if array.ndim == 2 else array


def read_image_folder(root: str | pathlib.Path, size: int | None = None, channels: str = "rgb",
                      class_names: tuple[str, ...] | None = None) -> tuple[ArrayDataset, tuple[str, ...]]:
    """``(ArrayDataset(x [n, h, w, c], y [n]), class names)`` of the images under ``root``'s class folders;
    ``class_names`` fixes the classes (and their order), as a test split must use the training split's."""
    if channels not in ("rgb", "grey"):
        raise ValueError(f"channels must be 'rgb' or 'grey', got {channels!r}")
    root = pathlib.Path(root)
    folders = {p.name: p for p in class_folders(root)}
    names = tuple(class_names) if class_names is not None else tuple(folders)
    unexpected = sorted(set(folders) - set(names))
    if unexpected:
        raise ValueError(f"{root} has class folders {unexpected} that the training classes {list(names)} do not")
    images, labels = [], []
    for label, name in enumerate(names):
        if name not in folders:
            continue
        files = sorted(p for p in folders[name].iterdir()
                       if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        images += [read_image(p, size, channels) for p in files]
        labels += [label] * len(files)
    if not images:
        raise ValueError(f"{root}'s class folders hold no images ({', '.join(EXTENSIONS)})")
    shapes = sorted({a.shape for a in images})
    if len(shapes) > 1:
        raise ValueError(f"the images under {root} have different sizes {shapes[:5]}; set a size (data.image_size) to "
                         "resize them all")
    return ArrayDataset(np.stack(images), np.asarray(labels, np.int32)), names


@register_dataset("image_folder")
def load_image_folder(config: Any) -> DatasetSplits:
    """``data.root``'s images: its own train/validation/test folders, or a seeded stratified split."""
    root = option(config, "root", None)
    if not root:
        raise ValueError("data.name='image_folder' needs data.root: a folder with one sub-folder of images per class")
    root = pathlib.Path(root)
    size, channels = option(config, "image_size", None), option(config, "channels", "rgb")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, names = read_image_folder(root / "train", size, channels)
        test, _ = read_image_folder(root / "test", size, channels, names)
        if (root / "validation").is_dir():
            validation, _ = read_image_folder(root / "validation", size, channels, names)
        else:
            val_idx, train_idx = split_indices(len(train), (float(option(config, "validation_fraction", 0.2)),),
                                               int(option(config, "seed", 0)), train.y)
            train, validation = train.take(train_idx), train.take(val_idx)
    else:
        full, names = read_image_folder(root, size, channels)
        val_idx, test_idx, train_idx = split_indices(
            len(full), (float(option(config, "validation_fraction", 0.2)), float(option(config, "test_fraction", 0.2))),
            int(option(config, "seed", 0)), full.y)
        train, validation, test = (full.take(i) for i in (train_idx, val_idx, test_idx))
    return finish_splits(train, validation, test, config, len(names), names, "image_folder")
