"""The GZS3 split of the synthetic world: unseen classes are held-out compositions.

A model trained on the seen classes has met every colour and every shape, just never
these pairings, so segmenting an unseen class needs compositional transfer through the
text encoder, which is what zero-shot segmentation claims. The split is a transversal
(one unseen class per colour and per shape, drawn from a seeded permutation) plus optional
extra pairs, and is validated so each colour and shape also stays in some seen class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SplitError(ValueError):
    """The requested split cannot satisfy the GZS3 coverage rules."""


@dataclass(frozen=True)
class CompositionSplit:
    """Seen / unseen class ids over a colours × shapes grid (id = colour * n_shapes + shape)."""

    num_colours: int
    num_shapes: int
    unseen_ids: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return self.num_colours * self.num_shapes

    @property
    def seen_ids(self) -> tuple[int, ...]:
        unseen = set(self.unseen_ids)
        return tuple(i for i in range(self.num_classes) if i not in unseen)


def make_split(num_colours: int, num_shapes: int, num_unseen: int, seed: int = 0
               ) -> CompositionSplit:
    """Deterministic split with `num_unseen` held-out compositions.

    Needs max(num_colours, num_shapes) <= num_unseen, so every colour and shape can occur
    in an unseen class, and every colour and shape must keep at least one seen class.
    """
    need = max(num_colours, num_shapes)
    if num_unseen < need:
        raise SplitError(f"{num_unseen} unseen classes cannot cover {num_colours} colours and "
                         f"{num_shapes} shapes; use at least {need}")
    rng = np.random.default_rng([seed, num_colours, num_shapes])
    # A transversal of the colour × shape grid: colour c pairs with shape perm[c mod S], and
    # shapes beyond the colour count get colours from a second permutation.
    shape_perm = rng.permutation(num_shapes)
    colour_perm = rng.permutation(num_colours)
    pairs = {(c, int(shape_perm[c % num_shapes])) for c in range(num_colours)}
    pairs |= {(int(colour_perm[s % num_colours]), int(shape_perm[s])) for s in range(num_shapes)
              if s >= num_colours}
    unseen = {c * num_shapes + s for c, s in pairs}
    rest = [i for i in rng.permutation(num_colours * num_shapes).tolist() if i not in unseen]
    for cid in rest:
        if len(unseen) >= num_unseen:
            break
        c, s = divmod(cid, num_shapes)
        colour_left = sum(1 for x in range(num_shapes) if c * num_shapes + x not in unseen)
        shape_left = sum(1 for x in range(num_colours) if x * num_shapes + s not in unseen)
        if colour_left > 1 and shape_left > 1:
            unseen.add(cid)
    if len(unseen) < num_unseen:
        raise SplitError(f"cannot hold out {num_unseen} of {num_colours}x{num_shapes} classes "
                         "and keep every colour and shape in some seen class")
    split = CompositionSplit(num_colours, num_shapes, tuple(sorted(unseen)))
    seen_colours = {i // num_shapes for i in split.seen_ids}
    seen_shapes = {i % num_shapes for i in split.seen_ids}
    if len(seen_colours) < num_colours or len(seen_shapes) < num_shapes:
        raise SplitError(f"a {num_colours}x{num_shapes} grid leaves some colour or shape with no "
                         "seen class; use at least 2 colours and 2 shapes")
    return split
