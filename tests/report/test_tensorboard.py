import struct

from tensorboardX.proto.event_pb2 import Event

from jaxdl.report.tensorboard import TensorBoardLogger


def scalar_metrics(directory):
    """Every (tag, step, value) in the TFRecord event files under ``directory``."""
    out = []
    for path in directory.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_epoch_rows_become_scalars_grouped_by_metric(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger(1, {"epoch": 1, "step": 10, "train_loss": 0.5, "val_loss": 0.7, "epoch_seconds": 2.0}, None)
    logger(2, {"epoch": 2, "step": 20, "train_loss": 0.25, "val_loss": 0.6, "epoch_seconds": 1.5}, None)
    logger.close()
    scalars = scalar_metrics(tmp_path)
    assert ("loss/train", 20, 0.25) in scalars and ("loss/val", 10, 0.699999988079071) in scalars
    assert ("epoch_seconds", 10, 2.0) in scalars and len(scalars) == 6
