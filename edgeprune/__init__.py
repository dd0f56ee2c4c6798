"""edgeprune: prune, convert, attack and profile Keras models for edge devices.

Importing this package is cheap on purpose: no TensorFlow, so the device-side commands run
on boards that only have the `[device]` extra.
"""

__version__ = "0.1.0"
