"""Your own data: a CSV file, a folder of images, a loader function of your own; read exactly, bad files named."""

import csv
import json
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.config import default_config
from jaxdl.data import image_folder
from jaxdl.data.csv_table import read_csv
from jaxdl.data.datasets import load_dataset
from jaxdl.data.image_folder import read_image_folder

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("pandas")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@settings(max_examples=10)
@given(rows=st.lists(st.tuples(st.floats(-1e3, 1e3, width=32), st.integers(-50, 50), st.sampled_from(["red", "blue", "green"]),
                               st.sampled_from(["yes", "no", "maybe"])), min_size=1, max_size=20))
def test_a_csv_reads_as_its_numbers_one_hot_categories_and_sorted_class_labels(tmp_path_factory, rows):
    path = _write_csv(tmp_path_factory.mktemp("csv") / "t.csv", ["size", "count", "colour", "answer"], rows)
    table = read_csv(path, "answer")
    colours = sorted({r[2] for r in rows})
    assert table.feature_names == ("size", "count", *(f"colour={c}" for c in colours))
    np.testing.assert_array_equal(table.x[:, 0], np.asarray([r[0] for r in rows], np.float32))
    np.testing.assert_array_equal(table.x[:, 1], [r[1] for r in rows])
    np.testing.assert_array_equal(table.x[:, 2:], [[float(r[2] == c) for c in colours] for r in rows])
    assert table.class_names == tuple(sorted({r[3] for r in rows}))
    assert [table.class_names[i] for i in table.y] == [r[3] for r in rows]
    values = read_csv(path, "size", features=["count"])
    assert values.class_names == () and values.y.dtype == np.float32 and values.feature_names == ("count",)


def test_a_bad_csv_is_refused_naming_the_row_column_or_columns(tmp_path):
    path = _write_csv(tmp_path / "t.csv", ["a", "b", "label"], [[1, 2, "x"], [3, "", "y"]])
    with pytest.raises(ValueError, match=r"row 3 \(line 3 of the file\), column 'b' has no value"):
        read_csv(path, "label")
    with pytest.raises(ValueError, match=r"has no column\(s\) \['target'\]; its columns are \['a', 'b', 'label'\]"):
        read_csv(path, "target")
    with pytest.raises(ValueError, match="holds text, which cannot be real values"):
        read_csv(path, "label", features=["a"], target_kind="values")
    with pytest.raises(FileNotFoundError, match="no CSV file at"):
        read_csv(tmp_path / "none.csv", "label")


def _config(**data):
    config = default_config()
    config.data.update(data)
    return config.data


def test_the_csv_data_set_splits_stratified_and_standardises_per_feature(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[float(rng.normal(100, 10)), float(rng.normal(0, 0.01)), ["a", "b"][i % 2]] for i in range(50)]
    path = _write_csv(tmp_path / "t.csv", ["big", "small", "kind"], rows)
    splits = load_dataset(_config(name="csv", path=str(path), target="kind", normalize=True))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 10, 10)
    assert splits.class_names == ("a", "b") and np.bincount(splits.test.y).tolist() == [5, 5]
    np.testing.assert_allclose(splits.train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(splits.train.x.std(0), 1, atol=1e-4)
    regression = load_dataset(_config(name="csv", path=str(path), target="big", features=("small",)))
    assert regression.num_classes == 0 and regression.train.y.shape == (30, 1) and regression.model_defaults == {"num_outputs": 1}


def _image_tree(root, classes, per_class, size=(5, 7), mode="RGB"):
    rng = np.random.default_rng(len(classes))
    arrays = {}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size[::-1], 3) if mode == "RGB" else size[::-1], dtype=np.uint8)
            PIL.fromarray(pixels, mode).save(root / name / f"{i}.png")
            arrays[(name, i)] = pixels
    return arrays


def test_an_image_folder_reads_each_pixel_exactly_with_classes_in_sorted_order(tmp_path):
    arrays = _image_tree(tmp_path, ["dog", "cat", "bird"], 3)
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"not an image")  # dot files are skipped
    (tmp_path / "cat" / "notes.txt").write_text("not an image either")
    data, names = read_image_folder(tmp_path)
    assert names == ("bird", "cat", "dog") and data.x.shape == (9, 7, 5, 3) and data.x.dtype == np.float32
    for index, (label, i) in enumerate((label, i) for label in range(3) for i in range(3)):
        assert data.y[index] == label
        np.testing.assert_array_equal(data.x[index], arrays[(names[label], i)] / np.float32(255))
    grey, _ = read_image_folder(tmp_path, size=4, channels="grey")
    assert grey.x.shape == (9, 4, 4, 1) and 0 <= grey.x.min() and grey.x.max() <= 1


def test_bad_images_and_folders_are_named(tmp_path, monkeypatch):
    _image_tree(tmp_path / "a", ["x", "y"], 2)
    (tmp_path / "a" / "y" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"cannot read the image .*broken.png"):
        read_image_folder(tmp_path / "a")
    _image_tree(tmp_path / "b", ["x"], 1, size=(4, 4))
    PIL.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "b" / "x" / "big.png")
    with pytest.raises(ValueError, match=r"different sizes .* set a size"):
        read_image_folder(tmp_path / "b")
    monkeypatch.setattr(image_folder, "MAX_PIXELS", 20)
    with pytest.raises(ValueError, match=r"big.png is 6x6 pixels, over the 20-pixel limit"):
        read_image_folder(tmp_path / "b", size=4)
    with pytest.raises(ValueError, match="has no class sub-folders"):
        read_image_folder(tmp_path / "b" / "x")


def test_an_image_folder_with_train_and_test_folders_keeps_that_split(tmp_path):
    _image_tree(tmp_path / "train", ["a", "b"], 5)
    _image_tree(tmp_path / "test", ["b"], 2)  # a test split may lack a class; its labels follow the training classes
    splits = load_dataset(_config(name="image_folder", root=str(tmp_path)))
    assert splits.class_names == ("a", "b") and len(splits.test) == 2 and splits.test.y.tolist() == [1, 1]
    assert len(splits.train) + len(splits.validation) == 10
    _image_tree(tmp_path / "other" / "train", ["a"], 2)
    _image_tree(tmp_path / "other" / "test", ["c"], 1)
    with pytest.raises(ValueError, match=r"class folders \['c'\] that the training classes \['a'\] do not"):
        load_dataset(_config(name="image_folder", root=str(tmp_path / "other")))


OWN_DATA = '''
import numpy as np

def load(config):
    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    return {"train": (x[:160], y[:160]), "test": (x[160:], y[160:]), "class_names": ("negative", "positive")}
'''


def test_an_experiment_with_its_own_loader_trains_and_evaluate_reloads_the_same_data(tmp_path, capsys):
    from jaxdl.cli import main

    (tmp_path / "my_data.py").write_text(OWN_DATA)
    (tmp_path / "experiment.py").write_text(
        "from jaxdl.config import default_config\n\n"
        "def get_config():\n"
        "    config = default_config()\n"
        f"    config.data.update(name='own', loader={str(tmp_path / 'my_data.py')!r} + ':load', batch_size=32)\n"
        "    config.model = dict(name='mlp', hidden_sizes=(16,))\n"
        "    config.train.num_epochs = 2\n"
        "    config.train.progress = False\n"
        "    return config\n")
    splits = load_dataset(_config(name="own", loader=f"{tmp_path / 'my_data.py'}:load"))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (128, 32, 40)  # validation split from train
    assert splits.class_names == ("negative", "positive")
    workdir = tmp_path / "run"
    assert main(["train", str(tmp_path / "experiment.py"), "--workdir", str(workdir)]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(workdir)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)
    with pytest.raises(ValueError, match="must look like 'my_data.py:load'"):
        load_dataset(_config(name="own", loader="my_data.py"))
    with pytest.raises(ValueError, match="has no function 'nothing'"):
        load_dataset(_config(name="own", loader=f"{pathlib.Path(tmp_path / 'my_data.py')}:nothing"))
