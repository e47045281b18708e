"""Semantic segmentation with a U-Net on generated shapes (circles, squares, triangles on noisy gradients;
exact masks, made from the seed: nothing to download). Loss: per-pixel cross-entropy + Dice; metrics: pixel
accuracy, per-class IoU, mean IoU; writes segmentation.png (images, true and predicted masks).

`jaxdl train experiments/shapes_unet.py --workdir runs/shapes_unet`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "shapes_unet"
    config.data.name = "shapes"
    config.data.image_size = 64
    config.data.max_objects = 3
    config.data.train_limit = 2000
    config.data.eval_limit = 500
    config.data.batch_size = 32
    config.data.eval_batch_size = 100
    config.model = dict(name="unet", widths=(16, 32, 64), upsample="transpose", batch_norm=True)
    config.loss.name = "cross_entropy_dice"
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 6
    config.train.early_stopping.monitor = "val_mean_iou"
    config.train.early_stopping.restore_best = True
    return config
