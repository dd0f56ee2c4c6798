"""Datasets behind one spec string: `digits`, `cifar10`, `cifar100`, `npz:PATH`, `dir:PATH`,
`svhn:PATH`, and `folder:PATH` (class folders of real images, streamed: edgeprune.folders).

Images are kept as uint8 NHWC (0..255) and handed out as float32 in [0, 1] on request, the
input range every edgeprune model and attack assumes. Nothing here unpickles arbitrary
objects: `.npz` files load with `allow_pickle=False`, and the official CIFAR "python"
batches go through an unpickler that admits only the numpy array constructors they use.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from edgeprune.folders import FolderDataset, FolderOptions

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
SPLITS = ("train", "test")
DEFAULT_DATASET = "digits"


@dataclass(frozen=True)
class Dataset:
    """Both splits of one dataset, uint8 NHWC, with each kept image's index in its source split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    index_train: np.ndarray = field(default=None)  # type: ignore[arg-type]  # filled in __post_init__
    index_test: np.ndarray = field(default=None)  # type: ignore[arg-type]
    input_range: Any = None  # an edgeprune.inputrange.InputRange: float splits come in it

    def __post_init__(self) -> None:
        for split in SPLITS:
            if getattr(self, f"index_{split}") is None:
                n = len(getattr(self, f"y_{split}"))
                object.__setattr__(self, f"index_{split}", np.arange(n, dtype=np.int64))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, split: str, *, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one split; float32 in [0, 1] by default, uint8 0..255 on request."""
        if split not in SPLITS:
            raise EdgepruneError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        x = getattr(self, f"x_{split}")
        y = getattr(self, f"y_{split}")
        if len(y) == 0:
            raise EdgepruneError(f"dataset {self.name!r}: the {split} split is empty")
        return to_dtype(x, dtype, self.input_range), y

    def labels(self, split: str) -> np.ndarray:
        return getattr(self, f"y_{split}")

    def take(self, split: str, positions: Sequence[int] | np.ndarray, *,
             dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the images at `positions` of one split."""
        x, y = getattr(self, f"x_{split}"), self.labels(split)
        positions = np.asarray(positions, dtype=np.int64)
        return to_dtype(x[positions], dtype, self.input_range), y[positions]

    def batches(self, split: str, batch_size: int = 256, *,
                dtype: str = "float32") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) batches of one split in order (what a folder: dataset streams)."""
        count = len(self.split(split, dtype="uint8")[1])
        for begin in range(0, count, batch_size):
            yield self.take(split, np.arange(begin, min(begin + batch_size, count)), dtype=dtype)

    def record(self) -> dict:
        """What a report records of this dataset beyond its name and fingerprint."""
        return {"class_names": list(self.class_names)}

    def indices(self, split: str) -> np.ndarray:
        return getattr(self, f"index_{split}")

    def fingerprint(self, split: str = "test") -> str:
        """Short hash of one split's pixels and labels: ties a transfer set to its data."""
        x = getattr(self, f"x_{split}")
        y = getattr(self, f"y_{split}")
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y).astype(np.int64).tobytes())
        return digest.hexdigest()[:16]


def to_dtype(x: np.ndarray, dtype: str, input_range: Any = None) -> np.ndarray:
    """uint8 images as `dtype`: uint8 as they are, float32 in [0, 1] (or in `input_range`)."""
    if dtype == "uint8":
        return x
    if dtype == "float32":
        floats = x.astype(np.float32) / np.float32(255.0)
        return floats if input_range is None else input_range.to_model(floats)
    raise EdgepruneError(f"unknown dtype {dtype!r}; expected float32 or uint8")


def stratified_indices(labels: np.ndarray, limit: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `limit` samples, drawn evenly across classes (deterministic)."""
    if limit <= 0:
        raise EdgepruneError(f"limit must be a positive number of samples, got {limit}")
    if limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    picked: list[int] = []
    rank = 0
    # Round-robin over classes so every class gets floor/ceil(limit / classes) samples.
    while len(picked) < limit:
        for c in classes:
            if rank < len(per_class[c]) and len(picked) < limit:
                picked.append(int(per_class[c][rank]))
        rank += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


def subset(dataset: Dataset | FolderDataset, *, limit_train: int | None = None, limit_test: int | None = None,
           seed: int = 0) -> Dataset | FolderDataset:
    """A class-stratified subset of each split, keeping source indices (a folder: chosen from its
    file list, nothing decoded)."""
    if not isinstance(dataset, Dataset):
        return dataset.subset(limit_train=limit_train, limit_test=limit_test, seed=seed)
    parts = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        x, y, idx = (getattr(dataset, f"{a}_{split}") for a in ("x", "y", "index"))
        if limit is not None:
            keep = stratified_indices(y, limit, seed=seed)
            x, y, idx = x[keep], y[keep], idx[keep]
        parts.update({f"x_{split}": x, f"y_{split}": y, f"index_{split}": idx})
    return Dataset(name=dataset.name, class_names=dataset.class_names, input_range=dataset.input_range, **parts)


def load_dataset(spec: str = DEFAULT_DATASET, *, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0, folder: FolderOptions | None = None,
                 input_shape: Sequence[int] | None = None,
                 class_names: Sequence[str] | None = None) -> Dataset | FolderDataset:
    """Load a dataset by spec; see the module docstring for the forms accepted.

    `folder` (--val-split, --image-size, --strict), the model's `input_shape` (what a folder's
    images are resized to) and the `class_names` the model records (a folder's must match)
    apply to `folder:PATH`; the array datasets refuse `folder` settings and ignore the rest.
    """
    kind, _, arg = spec.partition(":")
    if kind == "folder":
        return _load_folder(spec, arg, limit_train=limit_train, limit_test=limit_test, seed=seed, folder=folder,
                            input_shape=input_shape, class_names=class_names)
    if folder is not None and not folder.folder_settings.is_default:
        raise EdgepruneError(f"--val-split, --image-size and --strict apply to folder:PATH datasets, not {spec!r}")
    loaders = {
        "digits": _load_digits,
        "cifar10": lambda _: _load_keras("cifar10"),
        "cifar100": lambda _: _load_keras("cifar100"),
        "npz": _load_npz,
        "dir": _load_cifar_dir,
        "svhn": _load_svhn,
    }
    if kind not in loaders:
        raise EdgepruneError(
            f"unknown dataset {spec!r}; expected digits, cifar10, cifar100, npz:PATH, "
            "dir:PATH, svhn:PATH or folder:PATH"
        )
    if kind in ("npz", "dir", "svhn") and not arg:
        raise EdgepruneError(f"dataset {spec!r} needs a path, e.g. {kind}:/data/...")
    dataset = loaders[kind](arg)
    _check_arrays(dataset)
    if limit_train is not None or limit_test is not None:
        return subset(dataset, limit_train=limit_train, limit_test=limit_test, seed=seed)
    return dataset


def _load_folder(spec: str, path: str, *, limit_train: int | None, limit_test: int | None, seed: int,
                 folder: FolderOptions | None, input_shape: Sequence[int] | None,
                 class_names: Sequence[str] | None) -> FolderDataset:
    from edgeprune.folders import load_folder

    if not path:
        raise EdgepruneError(f"dataset {spec!r} needs a path, e.g. folder:/data/images")
    dataset = load_folder(path, folder, seed=seed, input_shape=input_shape)
    if class_names and len(class_names) == dataset.num_classes and tuple(class_names) != dataset.class_names:
        differ = [f"{a}/{b}" for a, b in zip(class_names, dataset.class_names, strict=True) if a != b]
        raise EdgepruneError(f"dataset {dataset.name!r}: its classes differ from the model's (model/folder: "
                             f"{', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''})")
    if limit_train is not None or limit_test is not None:
        dataset = dataset.subset(limit_train=limit_train, limit_test=limit_test, seed=seed)
    return dataset


def _check_arrays(dataset: Dataset) -> None:
    for split in SPLITS:
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if x.ndim != 4 or x.dtype != np.uint8:
            raise EdgepruneError(
                f"dataset {dataset.name!r}: x_{split} must be uint8 NHWC, got {x.dtype} {x.shape}"
            )
        if len(x) != len(y):
            raise EdgepruneError(
                f"dataset {dataset.name!r}: x_{split} has {len(x)} images but y_{split} "
                f"{len(y)} labels"
            )
        if len(y) and (y.min() < 0 or y.max() >= dataset.num_classes):
            raise EdgepruneError(
                f"dataset {dataset.name!r}: y_{split} labels must lie in 0..{dataset.num_classes - 1}"
            )


def _labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int64)


def _images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and x.max() <= 1.0:
            x = np.round(x * 255.0)
        x = np.clip(x, 0, 255).astype(np.uint8)
    return x


def _load_digits(_: str) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: real data with no download."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EdgepruneError(
            "dataset 'digits' needs scikit-learn: pip install 'edgeprune[full]'"
        ) from None
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    # A fixed stratified 80/20 split: every 5th sample of each class goes to test.
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test_mask[members[::5]] = True
    return Dataset(
        name="digits",
        x_train=images[~test_mask], y_train=labels[~test_mask],
        x_test=images[test_mask], y_test=labels[test_mask],
        class_names=tuple(str(d) for d in range(10)),
    )


def _load_keras(which: str) -> Dataset:
    try:
        import tensorflow as tf
    except ImportError:
        raise EdgepruneError(
            f"dataset {which!r} needs TensorFlow's Keras loader: pip install 'edgeprune[full]'"
        ) from None
    loader = getattr(tf.keras.datasets, which)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # network errors come in many types
        folder = "cifar-10-batches-py" if which == "cifar10" else "cifar-100-python"
        raise EdgepruneError(
            f"dataset {which!r}: the Keras loader could not download or read it "
            f"({type(exc).__name__}); it looks in ~/.keras/datasets/{folder}. Fix: go online "
            f"once, or pass dir:PATH (folder with {folder}) or npz:PATH, or use 'digits'"
        ) from None
    classes = CIFAR10_CLASSES if which == "cifar10" else tuple(f"class_{i}" for i in range(100))
    return Dataset(name=which, x_train=_images(x_train, which), y_train=_labels(y_train),
                   x_test=_images(x_test, which), y_test=_labels(y_test), class_names=classes)


def _load_npz(path: str) -> Dataset:
    file = Path(path)
    name = f"npz:{file.name}"
    if not file.is_file():
        raise EdgepruneError(f"dataset {name!r}: no such file {path}")
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = {"x_train", "y_train", "x_test", "y_test"} - keys
            if missing:
                raise EdgepruneError(
                    f"dataset {name!r}: missing keys {sorted(missing)}; expected Keras layout "
                    "x_train, y_train, x_test, y_test"
                )
            arrays = {k: archive[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            class_names = (tuple(str(c) for c in archive["class_names"])
                           if "class_names" in keys else None)
    except EdgepruneError:
        raise
    except ValueError as exc:
        raise EdgepruneError(f"dataset {name!r}: refused ({exc}); object arrays are not loaded") from None
    except Exception as exc:
        raise EdgepruneError(f"dataset {name!r}: not a readable .npz ({exc})") from None
    from edgeprune.validate import check_dataset_arrays

    check_dataset_arrays(name, arrays, class_names)  # finite, in range, labels, shapes (one line)
    y_train, y_test = _labels(arrays["y_train"]), _labels(arrays["y_test"])
    if class_names is None:
        count = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
        class_names = CIFAR10_CLASSES if count == 10 and arrays["x_train"].shape[1:] == (32, 32, 3) \
            else tuple(str(i) for i in range(count))
    return Dataset(name=name, x_train=_images(arrays["x_train"], name), y_train=y_train,
                   x_test=_images(arrays["x_test"], name), y_test=y_test, class_names=class_names)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR batches contain: dicts, lists, bytes, numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle_batch(path: Path) -> dict:
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()


def _cifar_python_batches(folder: Path, name: str) -> Dataset:
    def read(batch_names: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for batch in batch_names:
            record = _unpickle_batch(folder / batch)
            xs.append(np.asarray(record[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(record[label_key]))
        return np.concatenate(xs).transpose(0, 2, 3, 1), _labels(np.concatenate(ys))

    if (folder / "data_batch_1").exists():
        x_train, y_train = read([f"data_batch_{i}" for i in range(1, 6)], b"labels")
        x_test, y_test = read(["test_batch"], b"labels")
        classes = CIFAR10_CLASSES
    else:
        x_train, y_train = read(["train"], b"fine_labels")
        x_test, y_test = read(["test"], b"fine_labels")
        meta = _unpickle_batch(folder / "meta")
        classes = tuple(c.decode() for c in meta[b"fine_label_names"])
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   class_names=classes)


def _load_cifar_dir(path: str) -> Dataset:
    root = Path(path)
    name = f"dir:{root.name}"
    candidates = [root, root / "cifar-10-batches-py", root / "cifar-100-python"]
    for folder in candidates:
        if (folder / "data_batch_1").exists() or (folder / "train").exists():
            try:
                return _cifar_python_batches(folder, name)
            except (OSError, KeyError, pickle.UnpicklingError, ValueError) as exc:
                raise EdgepruneError(f"dataset {name!r}: unreadable CIFAR batches in {folder} ({exc})") from None
    raise EdgepruneError(
        f"dataset {name!r}: found no CIFAR batches in {root} (looked for data_batch_1 or train "
        "in it and in cifar-10-batches-py/ and cifar-100-python/)"
    )


def _load_svhn(path: str) -> Dataset:
    root = Path(path)
    name = f"svhn:{root.name}"
    files = {split: root / f"{split}_32x32.mat" for split in SPLITS}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise EdgepruneError(f"dataset {name!r}: missing {', '.join(missing)} (the official SVHN files)")
    from scipy.io import loadmat  # MATLAB v5 files: plain arrays, no code

    parts: dict[str, np.ndarray] = {}
    for split, file in files.items():
        try:
            record = loadmat(file)
        except Exception as exc:
            raise EdgepruneError(f"dataset {name!r}: unreadable {file} ({exc})") from None
        parts[f"x_{split}"] = np.ascontiguousarray(record["X"].transpose(3, 0, 1, 2)).astype(np.uint8)
        parts[f"y_{split}"] = _labels(record["y"]) % 10  # SVHN stores digit 0 as label 10
    return Dataset(name=name, class_names=tuple(str(d) for d in range(10)), **parts)
