"""Movie-review sentiment with a small Transformer encoder: the data and split of `reviews_lstm.py`.

`jaxdl train experiments/reviews_transformer.py --workdir runs/reviews_transformer`
"""

import pathlib

from jaxdl.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("reviews_lstm.py"))
    config.name = "reviews_transformer"
    config.data.max_length = 192  # attention cost grows with length squared: keeps the run within 15 minutes
    config.model = dict(name="transformer_classifier", d_model=64, num_heads=4, num_layers=2, mlp_dim=128,
                        dropout_rate=0.2, positional="sinusoidal", pooling="mean", scan_layers=True)
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-2
    config.optimizer.warmup_epochs = 0.3
    return config
