"""Training: the state pytree, pure steps, compilation for devices, and the fit loop."""

from jaxdl.train.early_stopping import EarlyStopping
from jaxdl.train.loop import FitResult, evaluate, fit
from jaxdl.train.parallel import Parallel, make_parallel
from jaxdl.train.state import InputSpec, TrainState, count_params, create_train_state
from jaxdl.train.step import (
    make_eval_step,
    make_predict_step,
    make_train_step,
)

__all__ = [
    "EarlyStopping", "FitResult", "InputSpec", "TrainState", "count_params", "create_train_state", "evaluate",
    "Parallel", "fit", "make_eval_step", "make_parallel", "make_predict_step", "make_train_step",
]
