"""`folder:PATH` datasets: class sub-folders of real images at any size, decoded in batches.

Layouts: `PATH/train/CLASS/*` with `PATH/val/CLASS/*` (or `test/`: it wins over `val/` when both
exist) as the test split; or one tree `PATH/CLASS/*`, split per class by `--val-split FRACTION`
(deterministic for a `--seed`), or, without it, all of it the test split (evaluate, attack, verify).
Class names are the train tree's sub-folder names, sorted: that order is the label map, recorded
in every report.

Only the file list (paths, byte sizes, labels) and each image's header are held; pixels are
decoded by Pillow when a batch is asked for (`batches`, `take`, `tf_images`), converted to the
model's channels (grayscale / RGBA / palette -> L or RGB, alpha dropped) and resized with
Pillow's bilinear filter to the model's input size (or `--image-size H,W`). Pillow also runs on
the `[device]` install, so a `.tflite` is evaluated on the same pixels TensorFlow trained on.
The fingerprint hashes the split's file list, sizes and labels with the label map, so a transfer
set crafted on one folder is refused on another.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    import tensorflow as tf

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RESIZE_METHOD = "bilinear"  # Pillow's Image.BILINEAR (area-aware when shrinking)
SPLITS = ("train", "test")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# A streamed batch holds at most this many bytes of float32 pixels (224x224x3: 111 images), so
# memory stays flat whatever --batch-size says (256 such images are 154 MB, and a Keras model's
# activations on them several times that: measured 1.67 GB peak, benchmarks/folder_rss.py).
STREAM_BATCH_BYTES = 64 * 2**20


@dataclass(frozen=True, kw_only=True)
class FolderOptions:
    """How a `folder:PATH` dataset is split and decoded (ignored by no other dataset: giving them
    with one is refused). Stage options inherit these fields, so they are CLI flags and suite args."""

    val_split: float | None = None  # one class tree: this fraction of each class is the test split
    image_size: tuple[int, ...] | None = None  # H,W (or one size for square); default: the model's
    strict: bool = False  # refuse a file that is not an image instead of skipping it

    def __post_init__(self) -> None:
        if self.val_split is not None and not 0.0 < self.val_split < 1.0:
            raise EdgepruneError(f"--val-split must be in (0, 1), got {self.val_split}")
        if self.image_size is not None:
            size = tuple(int(v) for v in self.image_size)
            if len(size) == 1:
                size = size * 2
            if len(size) != 2 or min(size) < 1:
                raise EdgepruneError(f"--image-size must be H,W (positive), got {self.image_size}")
            object.__setattr__(self, "image_size", size)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    @property
    def folder_settings(self) -> FolderOptions:
        return FolderOptions(val_split=self.val_split, image_size=self.image_size, strict=self.strict)

    @property
    def is_default(self) -> bool:
        return self.val_split is None and self.image_size is None and not self.strict


def note(message: str) -> None:
    """A line the user should see (stderr): what was skipped or resized."""
    print(f"note: {message}", file=sys.stderr)


@dataclass(frozen=True)
class FolderDataset:
    """A `folder:` dataset: per split the image files (relative to `root`), their byte sizes, labels
    and index in the full split; `image_shape` (H, W, C) is what `batches` / `take` hand out."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    sizes: dict[str, np.ndarray]
    label_arrays: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    image_shape: tuple[int, int, int]
    info: dict = field(default_factory=dict)
    input_range: Any = None  # an edgeprune.inputrange.InputRange: float batches come in it

    # --- what every dataset offers (edgeprune.data.Dataset has the same) --------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.image_shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def y_train(self) -> np.ndarray:
        return self.label_arrays["train"]

    @property
    def y_test(self) -> np.ndarray:
        return self.label_arrays["test"]

    def labels(self, split: str) -> np.ndarray:
        _check_split(split)
        return self.label_arrays[split]

    def indices(self, split: str) -> np.ndarray:
        return self.index[split]

    def fingerprint(self, split: str = "test") -> str:
        """Hash of the split's file list (relative paths), byte sizes and labels, and the label map."""
        digest = hashlib.sha256(self.label_map_sha256().encode())
        for path, size, label in zip(self.files[split], self.sizes[split], self.label_arrays[split], strict=True):
            digest.update(f"{path}\t{int(size)}\t{int(label)}\n".encode())
        return digest.hexdigest()[:16]

    def label_map_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.class_names).encode()).hexdigest()[:16]

    def split(self, split: str, *, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """The whole split decoded (x, y): for bounded subsets (attack --limit); stream the rest."""
        self._nonempty(split)
        return self.take(split, np.arange(len(self.files[split])), dtype=dtype)

    def take(self, split: str, positions: Sequence[int] | np.ndarray, *,
             dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the images at `positions` of the split, decoded now (threads)."""
        from edgeprune.data import to_dtype

        self._nonempty(split)
        positions = np.asarray(positions, dtype=np.int64)
        with ThreadPoolExecutor(_workers()) as pool:
            images = list(pool.map(lambda i: self.decode(split, int(i)), positions))
        x = np.stack(images) if images else np.zeros((0, *self.image_shape), np.uint8)
        return to_dtype(x, dtype, self.input_range), self.label_arrays[split][positions]

    def batches(self, split: str, batch_size: int = 256, *,
                dtype: str = "float32") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) batches in split order, of at most `batch_size` images and STREAM_BATCH_BYTES of
        float32 pixels; the next batch decodes while the caller uses this one."""
        from edgeprune.data import to_dtype

        self._nonempty(split)
        count, labels = len(self.files[split]), self.label_arrays[split]
        batch_size = max(1, min(batch_size, STREAM_BATCH_BYTES // (4 * int(np.prod(self.image_shape)))))
        with ThreadPoolExecutor(_workers()) as pool:
            def start(begin: int) -> list:
                return [pool.submit(self.decode, split, i) for i in range(begin, min(begin + batch_size, count))]

            pending = start(0)
            for begin in range(0, count, batch_size):
                futures, pending = pending, (start(begin + batch_size) if begin + batch_size < count else [])
                x = np.stack([f.result() for f in futures])
                yield to_dtype(x, dtype, self.input_range), labels[begin:begin + len(futures)]

    # --- folder-only ------------------------------------------------------------------------
    def path(self, split: str, position: int) -> Path:
        return self.root / self.files[split][position]

    def decode(self, split: str, position: int) -> np.ndarray:
        """One image as uint8 H x W x C: the model's channels, resized to `image_shape`."""
        return decode_image(self.path(split, position), self.image_shape)

    def tf_images(self, split: str, *, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """tf.data of (uint8 image, int64 label), files shuffled each epoch when `shuffle_seed` is
        given and decoded by Pillow in parallel map calls (nothing held beyond the prefetch)."""
        import tensorflow as tf

        self._nonempty(split)
        count = len(self.files[split])
        data = tf.data.Dataset.from_tensor_slices((np.arange(count, dtype=np.int64),
                                                   self.label_arrays[split].astype(np.int64)))
        if shuffle_seed is not None:
            data = data.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)

        def load(position: np.ndarray) -> np.ndarray:
            return self.decode(split, int(position))

        def decode(position: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image = tf.numpy_function(load, [position], tf.uint8, stateful=False)
            return tf.ensure_shape(image, self.image_shape), label

        return data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def subset(self, *, limit_train: int | None = None, limit_test: int | None = None,
               seed: int = 0) -> FolderDataset:
        """Class-stratified subset of each split, chosen from the file list (nothing decoded)."""
        from edgeprune.data import stratified_indices

        files, sizes, labels, index = {}, {}, {}, {}
        for split, limit in (("train", limit_train), ("test", limit_test)):
            keep = np.arange(len(self.files[split]))
            if limit is not None:
                keep = stratified_indices(self.label_arrays[split], limit, seed=seed)
            files[split] = tuple(self.files[split][i] for i in keep)
            sizes[split], labels[split] = self.sizes[split][keep], self.label_arrays[split][keep]
            index[split] = self.index[split][keep]
        return replace(self, files=files, sizes=sizes, label_arrays=labels, index=index)

    def resized(self, input_shape: Sequence[int]) -> FolderDataset:
        """The same files handed out at `input_shape` (H, W, C), said once on stderr."""
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or shape[2] not in (1, 3):
            raise EdgepruneError(f"dataset {self.name!r}: a model input of shape {shape} is not an image "
                                 "(H, W, 1 or 3)")
        if shape == self.image_shape:
            return self
        return replace(self, image_shape=shape, info={**self.info, "image_size": list(shape[:2]),
                                                      "channels": shape[2]})

    def record(self) -> dict:
        """What a report records of this dataset beyond its name and fingerprint."""
        return {"class_names": list(self.class_names), "folder": {
            **self.info, "label_map_sha256": self.label_map_sha256(), "resize": RESIZE_METHOD,
            "image_size": list(self.image_shape[:2]), "channels": self.image_shape[2],
            "files": {split: len(self.files[split]) for split in SPLITS}}}

    def _nonempty(self, split: str) -> None:
        _check_split(split)
        if not self.files[split]:
            hint = (" (one class tree without --val-split is all test split: give --val-split FRACTION, "
                    "or train/ and val/ sub-folders)" if split == "train" else "")
            raise EdgepruneError(f"dataset {self.name!r}: the {split} split is empty{hint}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise EdgepruneError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def decode_image(path: Path, shape: Sequence[int]) -> np.ndarray:
    """Pillow decode of one file to uint8 H x W x C (C 1 or 3), bilinear-resized to `shape`."""
    from PIL import Image

    height, width, channels = (int(d) for d in shape)
    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.mode == "P":  # palette (maybe with transparency): through RGBA, alpha dropped
                image = image.convert("RGBA")
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise EdgepruneError(f"{path}: cannot decode ({exc})") from None
    return pixels[..., None] if channels == 1 else pixels


def _header(path: Path) -> tuple[tuple[int, int], str] | None:
    """((width, height), mode) from the file's header, or None when Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _class_dirs(tree: Path) -> list[Path]:
    return sorted((d for d in tree.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _list_class(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.as_posix())


def _layout(root: Path, val_split: float | None) -> tuple[str, dict[str, Path | None]]:
    """(layout name, split -> tree) for the folder."""
    train, test = root / "train", next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        if val_split is not None:
            raise EdgepruneError(f"dataset folder:{root.name}: it has its own train/ and {test.name}/ splits; "
                                 "--val-split applies to one class tree")
        return f"train/{test.name}", {"train": train, "test": test}
    tree = train if train.is_dir() else root
    return ("tree" if val_split is None else "tree+val-split"), {"train": tree, "test": None}


def load_folder(path: str, options: FolderOptions | None = None, *, seed: int = 0,
                input_shape: Sequence[int] | None = None) -> FolderDataset:
    """List and check the folder (headers only), split it and fix the image shape handed out:
    --image-size, else the model's `input_shape`, else the most common size of the files."""
    options = options or FolderOptions()
    root = Path(path)
    if not root.is_dir():
        raise EdgepruneError(f"dataset folder:{path}: no such folder")
    label = f"folder:{root.resolve().name}"
    layout, trees = _layout(root, options.val_split)
    train_tree = trees["train"]
    assert train_tree is not None
    classes = _class_dirs(train_tree)
    if not classes:
        raise EdgepruneError(f"dataset {label!r}: no class sub-folders in {train_tree}")
    class_names = tuple(d.name for d in classes)
    by_split: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    skipped: list[Path] = []
    headers: dict[Path, tuple[tuple[int, int], str]] = {}

    def gather(tree: Path, split: str, names: Sequence[str]) -> None:
        for label_id, class_name in enumerate(class_names):
            if class_name not in names:
                continue
            folder = tree / class_name
            candidates = _list_class(folder)
            images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
            skipped.extend(p for p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES)
            with ThreadPoolExecutor(_workers()) as pool:
                found = list(pool.map(_header, images))
            kept = 0
            for image, header in zip(images, found, strict=True):
                if header is None:
                    skipped.append(image)
                    continue
                headers[image] = header
                by_split[split].append((image, label_id))
                kept += 1
            if not kept:
                raise EdgepruneError(f"dataset {label!r}: class folder {folder.relative_to(root)} has no images")

    gather(train_tree, "train", class_names)
    if trees["test"] is not None:
        test_names = [d.name for d in _class_dirs(trees["test"])]
        unknown = sorted(set(test_names) - set(class_names))
        if unknown:
            raise EdgepruneError(f"dataset {label!r}: {trees['test'].name}/ has classes {unknown} that "
                                 f"{train_tree.name}/ lacks")
        gather(trees["test"], "test", test_names)
    if skipped:
        examples = ", ".join(str(p.relative_to(root)) for p in skipped[:3])
        if options.strict:
            raise EdgepruneError(f"dataset {label!r}: {len(skipped)} file(s) are not images (e.g. {examples}); "
                                 "remove them, or drop --strict to skip them")
        note(f"dataset {label!r}: skipped {len(skipped)} file(s) that are not images (e.g. {examples}); "
             "--strict refuses them")
    if trees["test"] is None:
        by_split = _split_tree(by_split["train"], options.val_split, seed=seed, classes=len(class_names))
    if options.val_split is not None:
        label += f" (val-split {options.val_split:g}, seed {seed})"

    sizes_seen = Counter(headers[p][0] for items in by_split.values() for p, _ in items)
    modes = Counter(headers[p][1] for items in by_split.values() for p, _ in items)
    (common_w, common_h), _ = sizes_seen.most_common(1)[0]
    colour = any(mode not in GRAY_MODES for mode in modes)
    if options.image_size is not None:
        height, width = options.image_size
    elif input_shape is not None:
        height, width = (int(d) for d in tuple(input_shape)[:2])
    else:
        height, width = common_h, common_w
    channels = int(tuple(input_shape)[2]) if input_shape is not None and len(tuple(input_shape)) == 3 \
        else (3 if colour else 1)
    if len(sizes_seen) > 1:
        note(f"dataset {label!r}: images come in {len(sizes_seen)} sizes (most common {common_w}x{common_h}); "
             f"all are resized to {width}x{height} ({RESIZE_METHOD})")
    elif (common_h, common_w) != (height, width):
        note(f"dataset {label!r}: {common_w}x{common_h} images are resized to {width}x{height} ({RESIZE_METHOD})")

    files, sizes, labels, index = {}, {}, {}, {}
    for split, items in by_split.items():
        files[split] = tuple(p.relative_to(root).as_posix() for p, _ in items)
        sizes[split] = np.array([p.stat().st_size for p, _ in items], dtype=np.int64)
        labels[split] = np.array([c for _, c in items], dtype=np.int64)
        index[split] = np.arange(len(items), dtype=np.int64)
    info = {"root": str(root.resolve()), "layout": layout,
            "splits": {"train": train_tree.name if layout.startswith("train/") else ".",
                       "test": trees["test"].name if trees["test"] is not None else "."},
            "val_split": options.val_split, "split_seed": seed if options.val_split is not None else None,
            "skipped_files": len(skipped),
            "sizes_seen": {f"{w}x{h}": n for (w, h), n in sizes_seen.most_common(5)},
            "distinct_sizes": len(sizes_seen), "modes_seen": dict(modes)}
    return FolderDataset(name=label, root=root, class_names=class_names, files=files, sizes=sizes,
                         label_arrays=labels, index=index, image_shape=(height, width, channels), info=info)


def _split_tree(items: list[tuple[Path, int]], val_split: float | None, *, seed: int,
                classes: int) -> dict[str, list[tuple[Path, int]]]:
    """One tree -> splits: per class (files sorted), a seeded permutation puts round(fraction x n)
    files (at least 1, leaving at least 1) in test; without a fraction all of it is test."""
    if val_split is None:
        return {"train": [], "test": items}
    rng = np.random.default_rng(seed)
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    by_class: dict[int, list[tuple[Path, int]]] = {c: [] for c in range(classes)}
    for item in items:
        by_class[item[1]].append(item)
    for members in by_class.values():
        order = rng.permutation(len(members))
        n_test = min(max(1, round(val_split * len(members))), len(members) - 1) if len(members) > 1 else 0
        chosen = set(order[:n_test].tolist())
        for position, item in enumerate(members):
            (test if position in chosen else train).append(item)
    return {"train": train, "test": test}
