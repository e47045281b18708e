"""Data augmentation on a small training set: Fashion-MNIST with 5,000 training images, with and without.

`jaxdl train experiments/fashion_augment.py --workdir runs/fashion_aug` trains with flips, small affine
jitter and cutout, all inside the compiled step; the baseline is the same run without them:
`jaxdl train experiments/fashion_augment.py --workdir runs/fashion_plain --config.data.augment="()"`.
`jaxdl tune experiments/fashion_augment.py --workdir runs/fashion_grid` compares the two on validation.
"""

import pathlib

from jaxdl.config import load_config

AUGMENT = ("random_flip", "random_affine(degrees=8, translate=0.06, zoom=0.08)", "cutout(size=8, probability=0.5)")


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("fashion_cnn.py"))
    config.name = "fashion_augment"
    config.data.train_limit = 5000
    config.data.augment = AUGMENT
    config.train.num_epochs = 30
    config.search.kind = "grid"
    config.search.space = (("data.augment", [(), AUGMENT]),)
    return config
