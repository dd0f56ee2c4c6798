"""The names edgeprune accepts, one place each: the library validates against them, the CLI's
`click.Choice` lists them and the bench suite schema checks a YAML file against them.

Light on purpose (no TensorFlow, no click): `edgeprune --help` and the suite loader import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeprune.errors import EdgepruneError

# The model zoo (edgeprune.models builds them; its registry is keyed by these names).
ARCHITECTURE_NAMES = ("smallcnn", "resnet8", "resnet20", "resnet18", "resnet50", "vgg16", "vgg19",
                      "densenet121", "mobilenet")
# Datasets: loadable by name, or KIND:PATH.
DATASETS_BY_NAME = ("digits", "cifar10", "cifar100")
DATASET_PATH_KINDS = ("npz", "dir", "svhn", "folder")
SPLITS = ("test", "train")
AUGMENTATIONS = ("auto", "none", "crop", "flip-crop")
RECIPES = ("vora2023", "cpu")  # training recipes (edgeprune.recipes)

PRUNE_METHODS = ("tfmot", "nncf-filter", "hydra")
# Adversarial training recipes (edgeprune.adversarial), for `train` and every fine-tune of `prune`.
ADVERSARIAL_KINDS = ("none", "fgsm-rs", "pgd", "trades")
TFMOT_SCHEDULES = ("constant", "polynomial")
TFMOT_SCOPES = ("local", "global", "lamp")
NNCF_CRITERIA = ("l1", "l2", "gm")

# Conversion: target format -> the precisions it offers.
CONVERT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "tflite": ("fp32", "fp16", "dynamic", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
}
CONVERT_TARGETS = tuple(CONVERT_PRECISIONS)
CONVERTED_SUFFIXES = {"tflite": ".tflite", "openvino": ".xml"}
SWITCHES = ("auto", "on", "off")

# Runtimes a model file runs on, and the file suffix that says which.
RUNTIME_FORMATS = ("keras", "tflite", "openvino")
# Keras model files edgeprune reads (Keras 2 or 3 .h5, a Keras 3 .keras archive: edgeprune.keras3).
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
RUNTIME_BY_SUFFIX = {**{suffix: "keras" for suffix in KERAS_SUFFIXES}, ".tflite": "tflite", ".xml": "openvino"}

# The pixel ranges a model may take (edgeprune.inputrange); data and eps stay in [0, 1].
INPUT_RANGES = ("0,1", "0,255", "-1,1")

# How a runtime computes (not the file's conversion precision): `--inference-precision` of
# profile, evaluate and convert verification; what each runtime accepts (edgeprune.runtime).
INFERENCE_PRECISIONS = ("default", "f32", "bf16", "f16", "none")
RUNTIME_INFERENCE_PRECISIONS: dict[str, tuple[str, ...]] = {
    "keras": ("default", "f32"),
    "tflite": ("default", "f32", "none"),  # the Interpreter API has no XNNPACK fp16 switch
    "openvino": ("default", "f32", "bf16", "f16"),
}

NORMS = ("linf", "l2")
ATTACK_PRESETS = ("vora2023",)
AUTOATTACK_VERSIONS = ("standard", "fast", "torchattacks")
PROFILE_ISOLATIONS = ("process", "none")
COMPARE_OUTPUT_FORMATS = ("md", "json")
BENCH_EXECUTORS = ("local", "ray")


def check_choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    """Refuse a value not in `allowed` (None passes: the default applies), naming the option."""
    if value is not None and value not in allowed:
        raise EdgepruneError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")


def check_fit(dataset: Any, *, input_shape: Any, num_classes: int, model: str,
              trained_on: str | None = None, hint: str = "") -> None:
    """The one model-vs-dataset fit check: image shape, number of classes and, where the model
    records it, the dataset it was trained on. Raises a one-line EdgepruneError naming `model`."""
    shape = tuple(int(d) for d in input_shape)
    if shape != tuple(dataset.input_shape):
        raise EdgepruneError(f"{model}: takes images of shape {shape}, dataset {dataset.name!r} has "
                             f"{tuple(dataset.input_shape)}{hint}")
    if int(num_classes) != int(dataset.num_classes):
        raise EdgepruneError(f"{model}: has {int(num_classes)} outputs, dataset {dataset.name!r} has "
                             f"{dataset.num_classes} classes{hint}")
    if trained_on and trained_on != dataset.name:
        raise EdgepruneError(f"{model}: trained on {trained_on!r}, not on {dataset.name!r}")
