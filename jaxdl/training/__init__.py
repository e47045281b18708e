"""Training: the state pytree, pure steps, compilation for devices, and the fit loop."""

from jaxdl.distributed.parallel import Parallel, make_parallel
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.loop import FitResult, evaluate, fit
from jaxdl.training.state import InputSpec, TrainState, count_params, create_train_state
from jaxdl.training.step import (
    make_eval_step,
    make_predict_step,
    make_train_step,
)

__all__ = [
    "EarlyStopping", "FitResult", "InputSpec", "TrainState", "count_params", "create_train_state", "evaluate",
    "Parallel", "fit", "make_eval_step", "make_parallel", "make_predict_step", "make_train_step",
]
