"""Imported once by the local executor's fork server, so every worker starts with TensorFlow
loaded. Importing runs no TensorFlow op and starts no runtime threads pools that a fork would
break; each worker configures its own thread pools on its first cell."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow  # noqa: E402,F401

import edgeprune.bench.stages  # noqa: E402,F401
