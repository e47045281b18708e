"""Random search over learning rate x weight decay x dropout for the MNIST MLP, on 10,000 training images.

`jaxdl tune experiments/mnist_search.py --workdir runs/mnist_search` writes search.csv, search.json and
search.png (best validation accuracy against each hyperparameter). Trials with the same dropout rate differ
only in optimizer values kept in the optimizer state, so each dropout group trains as one vmapped program.
"""

import pathlib

from jaxdl.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("mnist_mlp.py"))
    config.name = "mnist_search"
    config.data.train_limit = 10000
    config.train.num_epochs = 5
    config.search.kind = "random"
    config.search.trials = 12
    config.search.seed = 0
    config.search.space = (
        ("optimizer.learning_rate", "loguniform(1e-4, 1e-2)"),
        ("optimizer.weight_decay", "loguniform(1e-6, 1e-1)"),
        ("model.dropout_rate", "choice(0.0, 0.2, 0.5)"),
    )
    return config
