"""Training many models at once: k-fold cross-validation, hyperparameter search and the learning-rate range test,
vmapped over trials."""

from jaxdl.tune.ensemble import EnsembleResult, ensemble_probabilities, train_ensemble
from jaxdl.tune.kfold import KFoldResult, cross_validate, fold_splits, stratified_kfold
from jaxdl.tune.lr_find import RangeTest, find_learning_rate
from jaxdl.tune.search import SearchResult, grid_trials, parse_grid, random_trials, run_search
from jaxdl.tune.stacked import SCHEDULES, StackedResult, fit_stacked, stack, unstack

__all__ = [
    "EnsembleResult", "KFoldResult", "RangeTest", "find_learning_rate", "SearchResult", "ensemble_probabilities", "train_ensemble", "StackedResult", "cross_validate", "fit_stacked", "fold_splits", "grid_trials",
    "SCHEDULES", "parse_grid", "random_trials", "run_search", "stack", "stratified_kfold", "unstack",
]
