"""Training: the state pytree, pure steps, precision, the weights' average, evaluation and the fit loop."""

from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.evaluation import evaluate
from jaxdl.training.loop import FitResult, fit
from jaxdl.training.state import InputSpec, TrainState, count_params, create_train_state
from jaxdl.training.step import (
    make_eval_step,
    make_predict_step,
    make_train_step,
)

__all__ = [
    "EarlyStopping", "FitResult", "InputSpec", "TrainState", "count_params", "create_train_state", "evaluate",
    "fit", "make_eval_step", "make_predict_step", "make_train_step",
]
