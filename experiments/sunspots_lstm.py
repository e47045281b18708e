"""One-step forecasting of yearly sunspot numbers with an LSTM, against persistence and seasonal-naive baselines.

`jaxdl train experiments/sunspots_lstm.py --workdir runs/sunspots_lstm`; the GRU variant is
`experiments/sunspots_gru.py`, multi-step forecasting `--config.data.horizon=5`. The summary reports the test
tail's MAE/RMSE in sunspot units (``test_original_units``) beside the baselines.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "sunspots_lstm"
    config.data.name = "sunspots"
    config.data.window = 24
    config.data.horizon = 1
    config.data.test_size = 40
    config.data.validation_size = 40
    config.data.batch_size = 16
    config.data.eval_batch_size = 64
    config.model = dict(name="rnn_forecaster", cell="lstm", hidden_size=32, num_layers=1, dropout_rate=0.0)
    config.loss.name = "mse"
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 80
    config.train.log_every = 12
    config.train.progress = False
    config.train.early_stopping.monitor = "val_mae"
    return config
