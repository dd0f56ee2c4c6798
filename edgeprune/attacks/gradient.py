"""Gradient attacks: FGSM, MIM and SPSA through CleverHans (tf2); BIM and PGD as one compiled loop.

CleverHans' PGD compiles only the gradient and runs the loop eagerly; here the whole loop
(gradient, step, projection, clipping) is one `tf.function` over the batch, the same
arithmetic as `cleverhans.tf2.attacks.projected_gradient_descent` (checked in the tests), with
the random start drawn from a seeded generator (CleverHans' has no seed).
All functions follow the contract in `edgeprune.attacks.registry`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.attacks.compiled import cached
from edgeprune.attacks.norms import Norm, clip_delta_tf, parse_norm, steepest_direction_tf

_ORD = {Norm.LINF: np.inf, Norm.L2: 2}


def default_step_size(eps: float, steps: int, step_size: float) -> float:
    """0 means Madry et al.'s 2.5 * eps / steps; never above eps (CleverHans' rule)."""
    return min(float(eps), step_size if step_size > 0 else 2.5 * float(eps) / steps)


def fgsm(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int) -> np.ndarray:
    """One signed (Linf) or normalised (L2) gradient step of size eps; deterministic."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    return fast_gradient_method(model_fn, x, eps, _ORD[parse_norm(norm)], clip_min=0.0, clip_max=1.0, y=y,
                                targeted=False).numpy()


def mim(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int, steps: int = 10,
        step_size: float = 0.0, decay: float = 1.0) -> np.ndarray:
    """Momentum iterative method (Dong et al. 2018); deterministic."""
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method

    return momentum_iterative_method(
        model_fn, x, eps=eps, eps_iter=default_step_size(eps, steps, step_size), nb_iter=steps,
        norm=_ORD[parse_norm(norm)], clip_min=0.0, clip_max=1.0, y=y, targeted=False, decay_factor=decay,
        sanity_checks=False).numpy()


def spsa(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int, steps: int = 10,
         samples: int = 128, delta: float = 0.01, learning_rate: float = 0.01) -> np.ndarray:
    """Gradient-free SPSA (Uesato et al. 2018) through CleverHans, one image at a time.

    A thin wrapper around CleverHans' `projected_optimization` + `SPSAAdam` instead of its
    `spsa()`: on Keras >= 2.11 `SPSAAdam(lr=...)` silently drops `lr` and runs at 0.001
    (measured: no image fooled at eps 0.3), so the learning rate is set after construction.
    """
    import tensorflow as tf
    from cleverhans.tf2.attacks.spsa import SPSAAdam, margin_logit_loss, projected_optimization

    samples += samples % 2  # SPSA draws +/- pairs

    def loss_fn(images, labels):  # untargeted: minimise (true logit - best other logit)
        logits = model_fn(images)
        return -margin_logit_loss(logits, labels, nb_classes=logits.shape[-1])

    out = []
    for i in range(int(x.shape[0])):
        tf.random.set_seed(int(seed) + i)  # CleverHans draws from the global generator
        optimizer = SPSAAdam(lr=learning_rate, delta=delta, num_samples=samples, num_iters=1)
        optimizer.learning_rate = learning_rate
        out.append(projected_optimization(loss_fn, x[i:i + 1], y[i:i + 1], eps, steps, optimizer,
                                          clip_min=0.0, clip_max=1.0, early_stop_loss_threshold=None
                                          ).numpy())
    return np.concatenate(out)


def bim(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int, steps: int = 10,
        step_size: float = 0.0) -> np.ndarray:
    """Basic iterative method (Kurakin et al. 2016): PGD from x itself."""
    return pgd(model_fn, x, y, eps=eps, norm=norm, seed=seed, steps=steps, step_size=step_size,
               random_start=False)


def pgd(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int, steps: int = 10,
        step_size: float = 0.0, random_start: bool = True) -> np.ndarray:
    """Projected gradient descent (Madry et al. 2018), cross-entropy loss, true labels."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int64)
    step = default_step_size(eps, steps, step_size)
    if random_start:
        start = random_ball(tf.shape(x), eps, norm, seed)
    else:
        start = tf.zeros_like(x)
    loop = _pgd_loop(model_fn, norm, tuple(x.shape[1:]))
    return loop(x, y, start, tf.constant(eps, tf.float32), tf.constant(step, tf.float32),
                tf.constant(steps, tf.int32)).numpy()




def random_ball(shape, eps: float, norm: str, seed: int):
    """Uniform draw from the eps-ball (CleverHans' `random_lp_vector`), from a seeded generator."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(int(seed))
    if parse_norm(norm) == Norm.LINF:
        return generator.uniform(shape, -eps, eps, dtype=tf.float32)
    dim = tf.reduce_prod(shape[1:])
    gauss = generator.normal((shape[0], dim), dtype=tf.float32)
    gauss /= tf.sqrt(tf.reduce_sum(tf.square(gauss), axis=-1, keepdims=True))
    radius = tf.pow(generator.uniform((shape[0], 1), dtype=tf.float32), 1.0 / tf.cast(dim, tf.float32))
    return tf.reshape(eps * radius * gauss, shape)


def _pgd_loop(model_fn: Callable, norm: str, image_shape: tuple) -> Callable:
    """One compiled PGD loop per (model_fn, norm, image shape): any batch size, any steps."""
    return cached(model_fn, ("pgd", parse_norm(norm), image_shape),
                  lambda weak_fn: _build_pgd_loop(weak_fn, parse_norm(norm), image_shape))


def _build_pgd_loop(model_fn: Callable, norm: Norm, image_shape: tuple) -> Callable:
    import tensorflow as tf

    images = tf.TensorSpec((None, *image_shape), tf.float32)
    scalar = tf.TensorSpec((), tf.float32)

    @tf.function(input_signature=[images, tf.TensorSpec((None,), tf.int64), images, scalar, scalar,
                                  tf.TensorSpec((), tf.int32)])
    def loop(x, y, start, eps, step, steps):
        x_adv = tf.clip_by_value(x + clip_delta_tf(start, eps, norm), 0.0, 1.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model_fn(x_adv))
            grad = tape.gradient(loss, x_adv)
            x_adv = tf.clip_by_value(x_adv + step * steepest_direction_tf(grad, norm), 0.0, 1.0)
            x_adv = tf.clip_by_value(x + clip_delta_tf(x_adv - x, eps, norm), 0.0, 1.0)
        return x_adv

    return loop
