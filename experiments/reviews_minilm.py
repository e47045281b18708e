"""Movie-review sentiment by fine-tuning a pretrained sentence encoder: MiniLM-L6 (all-MiniLM-L6-v2, 22.6M
parameters) with a new 2-way head on mean-pooled token states.

Texts are tokenized by MiniLM's own WordPiece vocabulary and wrapped as [CLS] ... [SEP]; the encoder is
restored from the Orbax cache (`jaxdl pretrained import minilm-l6`, automatic on first use) and fine-tuned
at half the head's learning rate. Reviews keep 128 tokens (the first 31 and the last 95 between [CLS] and
[SEP]): one epoch over the 26,746 training reviews is then about an hour on 2 CPU cores, where 256 tokens
would take two (see the README).
The limited-label variant, against the LSTM on the same 2,000 reviews:
  jaxdl train experiments/reviews_minilm.py --workdir runs/reviews_minilm_2k --config.data.train_limit=2000 --config.train.num_epochs=2
  jaxdl train experiments/reviews_lstm.py --workdir runs/reviews_lstm_2k --config.data.train_limit=2000
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "reviews_minilm"
    config.data.name = "movie_reviews"
    config.data.tokenizer = "minilm-l6"
    config.data.special_tokens = True
    config.data.max_length = 128
    config.data.truncation = "head_tail"
    config.data.batch_size = 32
    config.data.eval_batch_size = 128
    config.model = dict(name="transfer", head_dropout=0.1)
    config.transfer.pretrained = "minilm-l6"
    config.transfer.mode = "fine_tune"
    config.transfer.backbone_lr_scale = 0.5
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-4
    config.optimizer.weight_decay = 0.01
    config.optimizer.clip_norm = 1.0
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.1
    config.train.num_epochs = 1
    config.train.log_every = 25
    return config
