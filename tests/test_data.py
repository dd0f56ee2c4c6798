"""Dataset loaders: real data, safe parsing, stratified subsets, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgeprune.data import load_dataset, stratified_indices
from edgeprune.errors import EdgepruneError


def test_digits_is_real_embedded_data(digits):
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert len(digits.y_train) + len(digits.y_test) == 1797
    x, y = digits.split("test")
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    assert digits.split("test", dtype="uint8")[0].dtype == np.uint8


def test_cifar_sample_npz_loads_in_keras_layout(cifar_sample_path):
    data = load_dataset(f"npz:{cifar_sample_path}")
    assert data.x_train.shape == (5085, 32, 32, 3) and data.x_test.shape == (817, 32, 32, 3)
    assert data.class_names[0] == "airplane" and data.num_classes == 10


def test_limit_is_class_stratified_and_keeps_source_indices(cifar_sample_path):
    full = load_dataset(f"npz:{cifar_sample_path}")
    small = load_dataset(f"npz:{cifar_sample_path}", limit_train=100, limit_test=50)
    assert len(small.y_train) == 100 and len(small.y_test) == 50
    assert np.bincount(small.y_train, minlength=10).tolist() == [10] * 10
    # The kept images are the source images at the recorded indices.
    np.testing.assert_array_equal(small.x_test, full.x_test[small.indices("test")])
    np.testing.assert_array_equal(small.y_test, full.y_test[small.indices("test")])


def test_stratified_indices_deterministic():
    labels = np.repeat(np.arange(3), 10)
    first = stratified_indices(labels, 7, seed=3)
    np.testing.assert_array_equal(first, stratified_indices(labels, 7, seed=3))
    assert np.bincount(labels[first]).max() - np.bincount(labels[first]).min() <= 1


def test_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    objects = np.empty(2, dtype=object)
    np.savez(path, x_train=objects, y_train=np.zeros(2), x_test=objects, y_test=np.zeros(2))
    with pytest.raises(EdgepruneError, match="object arrays"):
        load_dataset(f"npz:{path}")


def test_npz_missing_keys_named(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(EdgepruneError, match="missing keys"):
        load_dataset(f"npz:{path}")


def _write_cifar_batch(path, images, labels):
    record = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), b"labels": labels}
    path.write_bytes(pickle.dumps(record, protocol=2))


def test_dir_reads_official_cifar_batches(tmp_path, cifar_sample_path):
    sample = load_dataset(f"npz:{cifar_sample_path}", limit_train=60, limit_test=20)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(5):
        part = slice(i * 12, (i + 1) * 12)
        _write_cifar_batch(folder / f"data_batch_{i + 1}", sample.x_train[part], [int(v) for v in sample.y_train[part]])
    _write_cifar_batch(folder / "test_batch", sample.x_test, [int(v) for v in sample.y_test])
    data = load_dataset(f"dir:{tmp_path}")
    np.testing.assert_array_equal(data.x_train, sample.x_train)
    np.testing.assert_array_equal(data.y_test, sample.y_test)


def test_dir_refuses_pickles_with_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Exploit:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(EdgepruneError, match="refusing to load"):
        load_dataset(f"dir:{tmp_path}")


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {
            "X": rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8),
            "y": np.array([[10], [1], [2], [3], [10], [9]], dtype=np.uint8),
        })
    data = load_dataset(f"svhn:{tmp_path}")
    assert data.x_train.shape == (6, 32, 32, 3)
    assert data.y_test.tolist() == [0, 1, 2, 3, 0, 9]


@pytest.mark.parametrize("spec, message", [
    ("mnist", "unknown dataset"),
    ("npz:", "needs a path"),
    ("npz:/nonexistent/file.npz", "no such file"),
    ("dir:/nonexistent", "found no CIFAR batches"),
    ("svhn:/nonexistent", "missing"),
])
def test_bad_specs_give_clear_errors(spec, message):
    with pytest.raises(EdgepruneError, match=message):
        load_dataset(spec)


def test_fingerprint_ties_data_to_split(digits, cifar_small):
    assert digits.fingerprint("test") != cifar_small.fingerprint("test")
    assert digits.fingerprint("test") == load_dataset("digits").fingerprint("test")
