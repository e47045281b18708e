"""UCR GunPoint (gun-draw vs point, 150-step hand trajectories) with a bidirectional GRU, official split.

`jaxdl train experiments/gunpoint_rnn.py --workdir runs/gunpoint_rnn`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "gunpoint_rnn"
    config.data.name = "gunpoint"
    config.data.validation_fraction = 0.2
    config.data.batch_size = 8
    config.data.eval_batch_size = 150
    # Frames of 3 steps (150 -> 50) and first differences (the hand's velocity) as a second input channel.
    config.model = dict(name="rnn_classifier", cell="gru", hidden_size=32, bidirectional=True, pooling="mean_max",
                        dropout_rate=0.1, frame_stride=3, differences=True, difference_scale=5.0)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 100
    config.train.log_every = 5
    config.train.progress = False
    config.train.early_stopping.monitor = "val_loss"
    return config
