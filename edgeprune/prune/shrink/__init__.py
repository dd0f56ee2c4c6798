"""Physically remove zeroed filters from a filter-pruned Keras model (model surgery).

NNCF and other filter pruners only *mask*: the pruned filters stay in the graph as zeros,
so a masked model is as large and nearly as slow as the base. Shrinking rebuilds the
functional graph from its config with fewer filters and sliced weights, in four passes
(`core.shrink_model`):

1. *Trace* (`graph`): every layer call with its input/output tensors, read from Keras'
   nodes; each call gets its rule from the table in `rules` (or becomes a barrier whose
   channels are all kept, with the reason), and the rules propagate which channels are the
   same constant at every position: a conv/dense filter whose kernel is all zero (its value
   is the bias), carried through BatchNorm (or made constant by gamma = 0), activations,
   pooling, elementwise TensorFlow ops.
2. *Group*: Torch-Pruning's "what must be cut together". Every (tensor, channel) pair is a
   node; layers that map channel c to channel c (BatchNorm, activations, pooling, both sides
   of an Add or Multiply, a squeeze-excite gate, the parts of a Concatenate at their
   offsets, a depthwise conv's inputs and outputs, Flatten) join their nodes into one group.
3. *Decide*: a group is cut only when every member is constant and every consumer that
   mixes channels can absorb the constant exactly: zero needs nothing; a nonzero constant
   is folded into the consumer's bias when it is a Dense layer or a conv without spatial
   padding effects (1x1 or `valid`). Otherwise the channels stay and the reason is recorded.
4. *Rebuild*: each rule edits its layer's config and slices its weights.
"""

from __future__ import annotations

from edgeprune.prune.shrink.core import shrink_model
from edgeprune.prune.shrink.rules import RULES, Rule

__all__ = ["RULES", "Rule", "shrink_model"]
