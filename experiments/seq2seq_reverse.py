"""Reverse strings of symbols with an encoder-decoder Transformer (data generated locally from a seed).

`jaxdl train experiments/seq2seq_reverse.py --workdir runs/seq2seq_reverse`. The test ``exact_match`` is the
share of test strings whose whole reversal (and EOS) is right; with teacher forcing that equals what greedy
decoding produces, which the suite checks.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "seq2seq_reverse"
    config.data.name = "reverse"
    config.data.vocab_size = 23  # 20 symbols + PAD, BOS, EOS
    config.data.max_length = 12
    config.data.batch_size = 128
    config.data.eval_batch_size = 500
    config.model = dict(name="seq2seq_transformer", d_model=64, num_heads=4, num_layers=2, mlp_dim=128,
                        dropout_rate=0.0, positional="sinusoidal", scan_layers=True)
    config.loss.name = "sequence_cross_entropy"
    config.loss.ignore_label = -1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.clip_norm = 1.0
    config.train.num_epochs = 10
    config.train.early_stopping.monitor = "val_exact_match"
    return config
