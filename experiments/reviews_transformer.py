"""Movie-review sentiment with a small Transformer encoder over WordPiece tokens (IMDB + Rotten Tomatoes).

`jaxdl train experiments/reviews_transformer.py --workdir runs/reviews_transformer`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "reviews_transformer"
    config.data.name = "movie_reviews"
    config.data.tokenizer = "wordpiece"
    config.data.vocab_size = 20000
    config.data.max_length = 256
    config.data.truncation = "head_tail"
    config.data.batch_size = 64
    config.data.eval_batch_size = 256
    config.model = dict(name="transformer_classifier", d_model=64, num_heads=4, num_layers=2, mlp_dim=128,
                        dropout_rate=0.2, positional="sinusoidal", pooling="mean", scan_layers=True)
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-2
    config.optimizer.clip_norm = 1.0
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.3
    config.train.num_epochs = 3
    return config
