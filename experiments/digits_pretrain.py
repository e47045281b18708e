"""The backbone for `digits_transfer`: the `mnist_cnn` network and recipe, trained on MNIST digits 0-4 only.

Run first: `jaxdl train experiments/digits_pretrain.py --workdir runs/digits_pretrain`. Its Orbax checkpoint
(the returned state) becomes the backbone of `digits_transfer`, which learns digits 5-9 from few labels.
"""

import pathlib

from jaxdl.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("mnist_cnn.py"))  # configs are code: reuse, then change
    config.name = "digits_pretrain"
    config.data.classes = (0, 1, 2, 3, 4)
    config.train.num_epochs = 4
    return config
