"""5-fold stratified cross-validation of a small CNN on scikit-learn's 8x8 digits, the folds trained at once.

`jaxdl tune experiments/digits_kfold.py --workdir runs/digits_kfold` (cross-validation: per-fold and mean ± std);
`jaxdl train experiments/digits_kfold.py --workdir runs/digits` trains the same model once on the train split.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "digits_kfold"
    config.data.name = "digits"
    config.data.batch_size = 32
    config.data.eval_batch_size = 512
    config.model = dict(name="convnet", channels=(32, 64), kernel_size=3, padding="SAME", pool="max",
                        dense=(128,), dropout_rate=0.3)
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 30
    config.search.kind = "kfold"
    config.search.k = 5
    return config
