"""`edgeprune train`: train a zoo model from scratch."""

from __future__ import annotations

import click

from edgeprune.cli.adversarial import adversarial_options
from edgeprune.cli.common import (dataset_option, force_option, input_range_option, limit_options, quiet_option,
                                  seed_option)
from edgeprune.cli.folders import folder_options
from edgeprune.vocab import ARCHITECTURE_NAMES, AUGMENTATIONS, RECIPES

ARCH_HELP = ", ".join(ARCHITECTURE_NAMES)


@click.command("train")
@click.argument("arch", metavar="ARCH")
@dataset_option()
@limit_options
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the trained model (.h5); a .json report goes beside it.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=0.1, show_default=True,
              help="Initial SGD learning rate (momentum 0.9, Nesterov).")
@click.option("--milestones", default="10,20,30", show_default=True,
              help="Epochs at which the learning rate is multiplied by --gamma.")
@click.option("--gamma", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--augment", type=click.Choice(AUGMENTATIONS), default="auto",
              show_default=True, help="auto: flip+crop for natural images, crop for SVHN, none for 8x8 digits.")
@click.option("--recipe", type=click.Choice(RECIPES), default="vora2023", show_default=True,
              help="vora2023: the paper's step decay (--milestones, --gamma); cpu: warm-up + cosine, "
                   "label smoothing 0.1, for short budgets (benchmarks/results/train.md).")
@click.option("--width", type=float, default=1.0, show_default=True,
              help="Channel width multiplier (0.25 gives a CPU-sized variant).")
@seed_option()
@input_range_option
@folder_options
@adversarial_options
@force_option
@quiet_option
def command(arch, dataset, limit_train, limit_test, output, epochs, batch_size, learning_rate,
            milestones, gamma, weight_decay, augment, recipe, width, seed, input_range, folder, adversarial, force,
            quiet):
    """Train ARCH from scratch and save it as a Keras .h5 with a JSON report.

    ARCH is one of: smallcnn, resnet8, resnet20, resnet18, resnet50, vgg16, vgg19,
    densenet121, mobilenet. Defaults follow the first paper's recipe: batch 128, SGD lr 0.1,
    momentum 0.9, Nesterov, x0.1 at epochs 10/20/30.

    \b
    Example:
      edgeprune train smallcnn --dataset digits --epochs 5 -o digits.h5
    """
    from edgeprune.api import TrainOptions, train
    from edgeprune.errors import EdgepruneError

    try:
        milestone_epochs = tuple(int(m) for m in milestones.split(",") if m.strip())
    except ValueError:
        raise EdgepruneError(f"--milestones must be comma-separated epochs, got {milestones!r}") from None
    options = TrainOptions(arch=arch, dataset=dataset, limit_train=limit_train, limit_test=limit_test,
                           epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                           milestones=milestone_epochs, gamma=gamma, weight_decay=weight_decay,
                           augment=augment, recipe=recipe, width=width, seed=seed, input_range=input_range,
                           **folder, **adversarial)
    result = train(options, output, force=force, progress=not quiet)
    record = result.record
    click.echo(f"{arch} on {record['dataset']}: test accuracy {record['test_accuracy']:.4f} "
               f"({record['test_samples']} images), {record['params']:,} params, "
               f"{record['train_seconds']:.0f} s -> {output}")
