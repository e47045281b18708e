"""Object detection, YOLO-style: MNIST digits placed at random positions and scales on 64x64 canvases (exact
boxes), one box per cell of an 8x8 grid. Reports mean average precision at IoU 0.5 (and 0.75) on held-out
canvases built from MNIST's test digits, and writes detections.png.

`jaxdl train experiments/digits_detect.py --workdir runs/digits_detect`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "digits_detect"
    config.data.name = "digit_canvases"
    config.data.image_size = 64
    config.data.grid = 8
    config.data.max_objects = 3
    config.data.train_limit = 6000
    config.data.eval_limit = 1000
    config.data.batch_size = 64
    config.data.eval_batch_size = 250
    config.model = dict(name="grid_detector", num_classes=10, widths=(16, 32, 64), head_width=64)
    config.loss.name = "yolo"
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 10
    config.train.early_stopping.monitor = "val_loss"
    config.train.early_stopping.restore_best = True
    return config
