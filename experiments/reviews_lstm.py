"""Movie-review sentiment with a bidirectional LSTM over WordPiece tokens (IMDB + Rotten Tomatoes).

`jaxdl train experiments/reviews_lstm.py --workdir runs/reviews_lstm`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "reviews_lstm"
    config.data.name = "movie_reviews"
    config.data.tokenizer = "wordpiece"
    config.data.vocab_size = 20000
    config.data.max_length = 256
    config.data.truncation = "head_tail"  # reviews often state the verdict at the end
    config.data.batch_size = 64
    config.data.eval_batch_size = 256
    config.model = dict(name="rnn_classifier", cell="lstm", hidden_size=64, embed_dim=96, bidirectional=True,
                        pooling="mean_max", dropout_rate=0.3)
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.clip_norm = 1.0
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.2
    config.train.num_epochs = 3
    config.train.log_every = 50
    return config
