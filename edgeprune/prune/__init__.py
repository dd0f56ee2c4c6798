"""Pruning stage: one module per method, plus the report they share.

- `tfmot`: unstructured magnitude pruning and N:M sparsity with TF-MOT, local / global / LAMP
  layer-wise sparsity (`lamp` computes the per-layer targets).
- `nncf_filter`: NNCF filter pruning; `shrink`: removes zeroed filters by model surgery.
- `report`: the `edgeprune.prune/1` record, its markdown table and CSV.

Modules import TensorFlow/NNCF inside their functions, so importing this package is cheap.
"""

from __future__ import annotations

METHODS = ("tfmot", "nncf-filter")
