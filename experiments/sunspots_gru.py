"""The sunspots forecaster of `sunspots_lstm.py` with a GRU cell (same data, baselines and budget)."""

import pathlib

from jaxdl.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("sunspots_lstm.py"))
    config.name = "sunspots_gru"
    config.model.cell = "gru"
    return config
