"""Model output grid → labels, confidence and per-class summaries at frame resolution.

The labels are defined as the argmax over classes of the bilinearly upsampled class
probabilities (``F.interpolate``, ``align_corners=False``; ties go to the lowest class id),
as `postprocess_literal` computes them. Done literally that costs classes × pixels in time
and a ``(C, H, W)`` float32 tensor in memory (8.5 GB for 1,024 classes at 1920×1080).
`postprocess` gives the same labels at a cost set by the grid and the pixel count, with a
proof for every pixel.

Why a few candidates suffice. A pixel's value for class k is a convex mix of k's
probabilities at the four grid points (corners) around it: ``v_k(p) = Σ_i w_i(p) P_k(c_i)``,
``w_i ≥ 0``, ``Σ w_i = 1``. If class b leads class a at all four corners of a cell, it leads
at every pixel of the cell, so a cannot win there. The work is done at grid resolution first:

1. Cells. The frame's rows (and columns) fall into segments that mix the same two grid
   rows; rows whose second weight is zero (the border, rows exactly on a grid line) form
   their own segments, whose "cell" has just those grid points. Per cell, the candidates are
   the classes that no other class beats at all four corners (`_beats`; ties ranked as the
   argmax ranks them). Every class is first compared with the top few of each corner, then
   the few left with each other. A cell with one candidate is that class's.
2. Tiles. Inside a cell every value is bilinear in the pixel position, so the lead of one
   class over another is smallest at a corner of any rectangle of pixels. The candidates are
   evaluated at the corners of TILE × TILE tiles; a tile whose corners all show the same
   winner ahead of every other candidate is that winner's, and only its value (the
   confidence) is computed per pixel.
3. Pixels. In the other tiles (class borders) the candidates that survive the tile's own
   comparison are evaluated per pixel (memory: tile pixels × candidates, never ``C × H × W``).

Why the labels are identical, not merely close. Values computed here round differently
from ``F.interpolate``'s kernel (fused multiply-adds, border weights), each within 8·2⁻²⁴ of
its value for non-negative probabilities. A lead counts only where it exceeds a margin
ρ = 2⁻¹⁸ of the value (twice the largest possible disagreement), or where it is an exact
tie of classes equal at every corner with a nonzero weight (then the kernel ties too and
the lowest id wins, as here). The interpolation weights are read from ``F.interpolate``
itself (`axis_weights`). The rare pixels within the margin of a rival or of the unlabeled
threshold get their values from ``F.interpolate`` itself (`_settle_with_kernel`).

Confidence equals the literal method's within a few units in the last place (< 1e-6).
Small problems (classes × pixels up to `LITERAL_UP_TO`) and frames the size of the grid take
the literal method, which is as fast there (bench/postprocess.py).

On a GPU the candidate method's many small steps cost more in kernel launches and host
round trips than they save (an H200 took 124 ms for 171 classes at 1920×1080, the literal
method 25-29 ms), while upsampling is bound by memory bandwidth. There `postprocess` runs the
literal method a chunk of classes at a time (`postprocess_chunked`): the same values and
labels, memory bounded by one chunk (an H200: 29 ms at 171 classes, 39 ms at 1,024, 200 MiB
at most). `choose_method` holds the rule.

Every method runs on the device the probabilities are on; only the labels (uint8 or
uint16) and the confidence image come back to the host, where the per-class summaries are
counted.

Users: `Segmenter.segment`, hence the node, ``zs3 segment`` and bag evaluation. Training
evaluation (training/evaluate.py) keeps its own literal upsample-then-argmax of averaged
test-time scores: offline, at label-map size, and its metrics are defined on it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from zs3_core.preprocess import upsample_probabilities

UNLABELED_MONO8 = 255
UNLABELED_MONO16 = 65535

PROOF_MARGIN = 2.0 ** -18      # relative lead a label needs to be proved (see the module docstring)
LITERAL_UP_TO = 6_000_000      # classes × pixels up to which the literal method is as fast (bench/postprocess.py)
GPU_CHUNK_ELEMENTS = 1 << 25   # values per class chunk of `postprocess_chunked` (128 MiB of float32)
CHUNK_ELEMENTS = 1 << 22       # largest per-pixel × per-class work tensor (16 MiB of float32)
_VECTOR_SPAN = 64              # columns: a multiple of the vector widths of the kernel's row loop
BEATERS = 8                    # top classes per corner every class is first compared with (a pre-filter)
BATCHED_PAIRS = 64             # cells with more classes left than this are compared one by one
TILE = 8                       # pixels per side of the squares proved at once inside a cell
_EXCLUDED = -1e30              # value of an empty candidate slot: never the winner


def _label_dtype(num_classes: int) -> torch.dtype:
    """Smallest torch dtype that holds the class ids and the unlabeled value."""
    return torch.uint8 if num_classes <= 255 else torch.int32


def unlabeled_value_for(num_classes: int) -> int:
    """255 while the classes fit mono8 labels (ids 0..254), else 65535 for mono16."""
    return UNLABELED_MONO8 if num_classes <= 255 else UNLABELED_MONO16


class Axis(NamedTuple):
    """Bilinear sampling of one axis: output position → two input indices and their weights."""
    i0: torch.Tensor   # (N,) int64
    i1: torch.Tensor   # (N,) int64
    w0: torch.Tensor   # (N,) float32
    w1: torch.Tensor   # (N,) float32


def axis_weights(n_in: int, n_out: int, device) -> Axis:
    """The indices and weights ``F.interpolate`` (bilinear, align_corners=False) uses along
    one axis, read from the kernel by interpolating one-hot rows, so that they match it on
    this device and torch build. Where both indices are the last input (the border) the
    kernel's two weights apply to the same value and are returned summed."""
    eye = torch.eye(n_in, device=device).view(1, n_in, 1, n_in)
    table = F.interpolate(eye, size=(1, n_out), mode="bilinear", align_corners=False).view(n_in, n_out)
    i0 = (table != 0).to(torch.int8).argmax(dim=0)          # first input with weight: the kernel's i0
    i1 = (i0 + 1).clamp_max(n_in - 1)
    positions = torch.arange(n_out, device=device)
    w0 = table[i0, positions]
    w1 = torch.where(i1 != i0, table[i1, positions], torch.zeros_like(w0))
    return Axis(i0, i1, w0, w1)


def choose_method(num_classes: int, grid: tuple[int, int], height: int, width: int,
                  device: torch.device) -> str:
    """Which exact method `postprocess` runs: "literal" for small problems (classes × pixels up
    to `LITERAL_UP_TO`, a (C, H, W) tensor of 24 MB) and frames the size of the grid, where it
    is as fast; "chunked" on a GPU, where upsampling is bound by memory bandwidth and beats the
    candidate method's many small steps at every vocabulary size measured (up to the 1,024-class
    limit); else (a CPU) "candidate"."""
    if num_classes * height * width <= LITERAL_UP_TO or tuple(grid) == (height, width):
        return "literal"
    return "chunked" if torch.device(device).type == "cuda" else "candidate"


def postprocess(probs: torch.Tensor, height: int, width: int, threshold: float, method: str = "auto"):
    """(1, C, h, w) probabilities → (labels, confidence, class_confidence, class_fraction,
    unlabeled_value) at height × width, equal to `postprocess_literal`'s; see the module
    docstring. Labels are uint8 numpy (uint16 above 255 classes), unlabeled where the
    confidence is below `threshold` (when > 0); class summaries count the labelled pixels.
    `method` "auto" lets `choose_method` pick; "literal", "chunked" or "candidate" force one
    (tests and bench/postprocess.py compare them)."""
    if method not in ("auto", "literal", "chunked", "candidate"):
        raise ValueError(f"postprocess method {method!r}: choose auto, literal, chunked or candidate")
    p = probs[0].float()
    num_classes, h, w = p.shape
    if method == "auto":
        method = choose_method(num_classes, (h, w), height, width, p.device)
    if method == "literal" or (h, w) == (height, width):
        return postprocess_literal(probs, height, width, threshold)
    if method == "chunked":
        return postprocess_chunked(probs, height, width, threshold)
    rows, cols = axis_weights(h, height, p.device), axis_weights(w, width, p.device)
    labels, confidence = _label_bounded(p, rows, cols, threshold)
    return _finish(labels, confidence, num_classes, threshold)


def postprocess_literal(probs: torch.Tensor, height: int, width: int, threshold: float):
    """The literal method: upsample every class map to height × width, then argmax. Exact by
    definition; costs ``C × H × W`` time and memory. The reference for tests and the bench."""
    num_classes = probs.shape[1]
    confidence, labels = upsample_probabilities(probs.float(), height, width).max(dim=0)
    return _finish(labels, confidence, num_classes, threshold)


def postprocess_chunked(probs: torch.Tensor, height: int, width: int, threshold: float,
                        chunk_elements: int = GPU_CHUNK_ELEMENTS):
    """The literal method a chunk of classes at a time: the kernel computes each class map on
    its own, so every value is the literal one; a later chunk takes a pixel only with a
    strictly larger value (the argmax's first maximum). Labels and confidence are therefore the
    literal method's, while memory holds one chunk of at most `chunk_elements` values plus the
    running maximum, whatever the class count. Time stays classes × pixels: the method for a
    GPU, whose memory bandwidth makes that cheap (bench/postprocess.py --device cuda)."""
    p = probs.float()
    num_classes = p.shape[1]
    chunk = max(1, chunk_elements // (height * width))
    best = labels = None
    for c0 in range(0, num_classes, chunk):
        value, index = upsample_probabilities(p[:, c0:c0 + chunk], height, width).max(dim=0)
        if best is None:
            best, labels = value, index
        else:
            better = value > best
            best = torch.where(better, value, best)
            labels = torch.where(better, index + c0, labels)
    return _finish(labels, best, num_classes, threshold)


class _Cells(NamedTuple):
    """Per grid cell (indexed by its top-left corner): the classes that can win in it."""
    ids: torch.Tensor       # (h, w, S) candidate class ids, ascending (padding: 0, with _EXCLUDED values)
    values: torch.Tensor    # (4, h, w, S) the candidates' values at the cell's four corners
    equal: torch.Tensor     # (h, w, S, S) int: bit i set where two candidates are equal at corner i
    settled: torch.Tensor   # (h, w) bool: a single candidate, which wins at every pixel of the cell


class _Segments(NamedTuple):
    """Runs of output positions along one axis that mix the same two grid indices: `lo` and
    `hi` (equal where the second weight is zero, on the border or exactly on a grid line:
    there only one grid index matters, which lets exact ties there be settled at grid level)."""
    of: torch.Tensor       # (N,) segment of each output position
    lo: torch.Tensor       # (G,) first grid index (the kernel's i0)
    hi: torch.Tensor       # (G,) second grid index (i0 + 1, or i0 where its weight is zero)
    counts: torch.Tensor   # (G,) output positions per segment


def _segments(axis: Axis) -> _Segments:
    flat = (axis.w1 == 0) | (axis.i1 == axis.i0)
    key = axis.i0 * 2 + flat.long()
    new = torch.ones_like(flat)
    new[1:] = key[1:] != key[:-1]
    of = torch.cumsum(new.long(), dim=0) - 1
    lo = axis.i0[new]
    hi = torch.where(flat[new], lo, axis.i1[new])
    return _Segments(of, lo, hi, torch.bincount(of, minlength=lo.shape[0]))


def _margin(values: torch.Tensor, scale) -> torch.Tensor:
    """Lead over a rival that outlasts any difference in rounding: relative to the value for
    non-negative probabilities (`scale` None), else to the largest magnitude `scale`."""
    return PROOF_MARGIN * (values.abs() if scale is None else torch.full_like(values, scale))


def _beats(values_b, ids_b, values_a, ids_a, scale) -> torch.Tensor:
    """[..., b, a]: class b takes every pixel of the cell from class a. Values (4, ..., n) at
    the corners, ids (..., n). Either b leads by the margin at all four corners (a convex
    mix then keeps the lead), or b is at least as large at all four and has the lower id:
    rounding is monotone, so the computed values keep that order and a tie goes to b."""
    lead = values_b.unsqueeze(-1) - values_a.unsqueeze(-2)
    margin = _margin(values_b.amax(dim=0).clamp_min(0), scale).unsqueeze(-1)
    lower = ids_b.unsqueeze(-1) < ids_a.unsqueeze(-2)
    return (lead > margin).all(dim=0) | ((lead >= 0).all(dim=0) & lower)


def _cells(p: torch.Tensor, scale, rows: _Segments, cols: _Segments) -> _Cells:
    """The classes that can win somewhere in each grid cell: those no other class beats at
    all four corners (`_beats`). Found in two steps: every class against the top `BEATERS`
    of each corner (ranked by value, then the lower id first, as the argmax ranks ties),
    then the few left against each other."""
    num_classes = p.shape[0]
    h, w = rows.lo.shape[0], cols.lo.shape[0]         # cells: row segments × column segments
    corners = [(rows.lo, cols.lo), (rows.lo, cols.hi), (rows.hi, cols.lo), (rows.hi, cols.hi)]

    def at_corners(grid: torch.Tensor) -> torch.Tensor:    # (n, h, w) → (4, h, w, n)
        return torch.stack([grid[:, r][:, :, c].permute(1, 2, 0) for r, c in corners])

    ranked_ids = p.sort(dim=0, descending=True, stable=True).indices[:BEATERS]
    top = at_corners(ranked_ids).permute(1, 2, 0, 3).reshape(h, w, -1)         # (h, w, 4 BEATERS)
    every_value = at_corners(p)                                                    # (4, h, w, C)
    every_id = torch.arange(num_classes, device=p.device).expand(h, w, -1)
    top_values = every_value.gather(-1, top.unsqueeze(0).expand(4, -1, -1, -1))
    left = ~_beats(top_values, top, every_value, every_id, scale).any(dim=-2)      # (h, w, C)
    # The few left against each other: cells with up to BATCHED_PAIRS left as one batch (padded),
    # others one by one (their pairs grow with the square of what is left).
    counts = left.sum(dim=-1)
    few = counts <= BATCHED_PAIRS
    survive = torch.zeros_like(left)
    width_ = int(counts.masked_fill(~few, 0).max())
    if width_:
        order = (~left).to(torch.int8).argsort(dim=-1, stable=True)[..., :width_]     # left first, by id
        values = every_value.gather(-1, order.unsqueeze(0).expand(4, -1, -1, -1))
        values = values.masked_fill(~left.gather(-1, order), _EXCLUDED)
        won = ~_beats(values, order, values, order, scale).any(dim=-2) & (values[0] > _EXCLUDED)
        survive.scatter_(-1, order, won & few.unsqueeze(-1))
    for i, j in (~few).nonzero().tolist():
        ids_ = left[i, j].nonzero()[:, 0]
        values = every_value[:, i, j, ids_]
        survive[i, j, ids_] = ~_beats(values, ids_, values, ids_, scale).any(dim=-2)
    slots = max(2, int(survive.sum(dim=-1).max()))     # two at least: a runner-up (maybe empty) per tile
    order = (~survive).to(torch.int8).argsort(dim=-1, stable=True)[..., :slots]       # survivors first, by id
    empty = ~survive.gather(-1, order)
    ids = order.masked_fill(empty, 0)
    values = every_value.gather(-1, order.unsqueeze(0).expand(4, -1, -1, -1)).masked_fill(empty, _EXCLUDED)
    bits = (2 ** torch.arange(4, device=p.device)).view(4, 1, 1, 1, 1)
    equal = ((values.unsqueeze(-1) == values.unsqueeze(-2)).long() * bits).sum(dim=0)   # (h, w, S, S)
    return _Cells(ids, values, equal, survive.sum(dim=-1) == 1)


def _label_bounded(p: torch.Tensor, rows: Axis, cols: Axis, threshold: float):
    """(H, W) labels (int64) and confidence (float32) from the candidates of each cell."""
    height, width = rows.i0.shape[0], cols.i0.shape[0]
    scale = None if bool((p >= 0).all()) else float(p.abs().max())
    row_segments, col_segments = _segments(rows), _segments(cols)
    cells = _cells(p, scale, row_segments, col_segments)
    cells = cells._replace(ids=cells.ids.to(_label_dtype(p.shape[0])))
    labels = torch.empty((height, width), dtype=_label_dtype(p.shape[0]), device=p.device)
    confidence = torch.empty((height, width), dtype=torch.float32, device=p.device)
    cell = col_segments.of
    breaks = torch.ones_like(cell, dtype=torch.bool)
    breaks[1:] = cell[1:] != cell[:-1]
    col_tiles = _tiles(breaks, TILE)
    # Along the row, for every row segment at once: the candidates at the segment's upper and
    # lower grid row, interpolated to every column: (row segments, S, W) each.
    at_columns = cells.values.permute(0, 1, 3, 2).index_select(3, cell)               # (4, h, S, W)
    upper = at_columns[0] * cols.w0 + at_columns[1] * cols.w1
    lower = at_columns[2] * cols.w0 + at_columns[3] * cols.w1
    ids = cells.ids.permute(0, 2, 1).index_select(2, cell)                             # (h, S, W)
    ties: list = []
    y0 = 0
    for band, count in enumerate(row_segments.counts.tolist()):
        if count:
            _label_band(cells, band, upper[band], lower[band], ids[band], y0, y0 + count, cell, col_tiles,
                        rows, cols, threshold, scale, labels, confidence, ties)
        y0 += count
    ties = [t for t in ties if t[0].numel()]
    if ties:
        most = max(t[2].shape[1] for t in ties)
        ys, xs = torch.cat([t[0] for t in ties]), torch.cat([t[1] for t in ties])
        tied = torch.cat([F.pad(t[2], (most - t[2].shape[1], 0), value=-1) for t in ties])
        _settle_with_kernel(p, ys, xs, tied, labels, confidence, height, width)
    return labels, confidence


def _tiles(breaks: torch.Tensor, size: int):
    """Runs of at most `size` consecutive positions that start anew where `breaks` is True:
    (tile of each position, first position, last position and length of each tile)."""
    n, device = breaks.shape[0], breaks.device
    position = torch.arange(n, device=device)
    run_start = torch.cummax(torch.where(breaks, position, 0), dim=0).values
    new = breaks | ((position - run_start) % size == 0)
    tile = torch.cumsum(new.long(), dim=0) - 1
    first = position[new]
    last = torch.cat([first[1:] - 1, torch.tensor([n - 1], device=device)])
    return tile, first, last, last - first + 1


def _label_band(cells: _Cells, band: int, upper, lower, ids, y0: int, y1: int, cell, col_tiles, rows: Axis,
                cols: Axis, threshold: float, scale, labels, confidence, ties: list) -> None:
    """Rows y0..y1-1 (one row segment), every column (`cell`: column segment of each);
    `upper`, `lower`: (S, W) candidate values along the segment's two grid rows, `ids` theirs.

    The candidates are evaluated separably (along the row at the segment's two grid rows,
    then down the column). Within a tile of at most TILE × TILE pixels of one cell every
    value is bilinear in the position, so a difference of two classes is extreme at the
    tile's corners: a tile whose corners all show the same winner ahead by the margin is that
    winner's, and only its value is computed per pixel. The other tiles (class borders)
    evaluate their remaining candidates per pixel; near ties are appended to `ties`."""
    device = labels.device
    col_tile, col_first, col_last, _ = col_tiles
    row_w0, row_w1 = rows.w0[y0:y1], rows.w1[y0:y1]
    row_first = torch.arange(0, y1 - y0, TILE, device=device)
    row_last = (row_first + TILE - 1).clamp_max(y1 - y0 - 1)
    # Tile corners: (S, 2 * row tiles, 2 * column tiles).
    ty = torch.stack([row_first, row_last], dim=1).reshape(-1)
    tx = torch.stack([col_first, col_last], dim=1).reshape(-1)
    corner = (upper.index_select(1, tx).unsqueeze(1) * row_w0.index_select(0, ty).view(1, -1, 1)
              + lower.index_select(1, tx).unsqueeze(1) * row_w1.index_select(0, ty).view(1, -1, 1))
    two = corner.topk(2, dim=0)
    lead = two.values[0] - two.values[1] > _margin(two.values[0], scale)
    won = two.indices[0].view(ty.shape[0] // 2, 2, tx.shape[0] // 2, 2)
    ok = lead.view_as(won).all(dim=3).all(dim=1) & (won == won[:, :1, :, :1]).all(dim=3).all(dim=1)
    if threshold > 0:
        best = two.values[0].view_as(won)
        m = _margin(best, scale)
        ok &= ((best - threshold > m).all(dim=3).all(dim=1)) | ((threshold - best > m).all(dim=3).all(dim=1))
    # Every tile first as if it had one winner (its value per pixel, a batched product of the
    # rows' weights and the winner's two row values); open tiles are redone below.
    slot = won[:, 0, :, 0].index_select(1, col_tile)                                    # (row tiles, W)
    pair = torch.stack([upper.gather(0, slot), lower.gather(0, slot)], dim=1)           # (row tiles, 2, W)
    weights = torch.stack([row_w0, row_w1], dim=1)                                      # (R, 2)
    winner_ids = ids.gather(0, slot)
    full, rest = divmod(y1 - y0, TILE)
    if full:
        torch.bmm(weights[:full * TILE].view(full, TILE, 2), pair[:full],
                  out=confidence[y0:y0 + full * TILE].view(full, TILE, -1))
        labels[y0:y0 + full * TILE].view(full, TILE, -1).copy_(winner_ids[:full].unsqueeze(1).expand(-1, TILE, -1))
    if rest:
        confidence[y0 + full * TILE:y1] = weights[full * TILE:] @ pair[full]
        labels[y0 + full * TILE:y1] = winner_ids[full]
    # The other tiles (class borders): per tile, the candidates no tile-corner winner beats at
    # all four tile corners by the margin, each evaluated per pixel.
    open_r, open_c = (~ok).nonzero(as_tuple=True)
    if not open_r.numel():
        return
    at_tile = corner.view(-1, ok.shape[0], 2, ok.shape[1], 2)[:, open_r, :, open_c, :]   # (U, S, 2, 2)
    at_tile = at_tile.reshape(open_r.shape[0], -1, 4)                                   # (U, S, 4)
    leaders = at_tile.gather(1, won[open_r, :, open_c, :].reshape(-1, 4, 1).expand(-1, -1, 4))   # (U, 4, 4)
    lead = leaders.unsqueeze(2) - at_tile.unsqueeze(1)                                  # (U, 4, S, 4)
    beaten = (lead > _margin(leaders.amax(dim=-1), scale).unsqueeze(-1).unsqueeze(-1)).all(dim=-1).any(dim=1)
    alive = (~beaten).sum(dim=1)
    order = beaten.to(torch.int8).argsort(dim=1, stable=True)[:, :int(alive.max())]     # (U, A) by id
    padded = torch.arange(order.shape[1], device=order.device) >= alive.unsqueeze(1)
    offsets = torch.arange(TILE, device=device)
    ry = (row_first[open_r].view(-1, 1, 1) + offsets.view(1, -1, 1)).expand(-1, TILE, TILE)
    cx = (col_first[open_c].view(-1, 1, 1) + offsets.view(1, 1, -1)).expand(-1, TILE, TILE)
    inside = (ry <= row_last[open_r].view(-1, 1, 1)) & (cx <= col_last[open_c].view(-1, 1, 1))
    u = torch.arange(open_r.shape[0], device=device).view(-1, 1, 1).expand(-1, TILE, TILE)[inside]
    r, q = ry[inside], cx[inside]
    slots = order[u]                                                                    # (m, A)
    v = upper[slots, q.unsqueeze(1)] * row_w0[r].unsqueeze(1) + lower[slots, q.unsqueeze(1)] * row_w1[r].unsqueeze(1)
    v = v.masked_fill(padded[u], _EXCLUDED)
    best, pick = v.max(dim=1)                          # the first maximum: the lowest id
    slot = slots.gather(1, pick.unsqueeze(1))[:, 0]
    labels[y0 + r, q] = ids[slot, q]
    confidence[y0 + r, q] = best
    margin = _margin(best, scale)
    tied = v >= (best - margin).unsqueeze(1)                                            # (m, A)
    near = tied.sum(dim=1) > 1
    if bool(near.any()):
        # A tie is exact (and goes to the lowest id, as computed) where the two classes are
        # equal at every corner with a nonzero weight at that pixel: only other ties need the kernel.
        row_bits = (row_w0[r] > 0).long() * 0b0011 + (row_w1[r] > 0).long() * 0b1100
        col_bits = (cols.w0[q] > 0).long() * 0b0101 + (cols.w1[q] > 0).long() * 0b1010
        equal = cells.equal[band, cell[q].unsqueeze(1), slot.unsqueeze(1), slots]      # (m, A)
        inexact = ((row_bits & col_bits).unsqueeze(1) & ~equal) != 0
        near = (tied & inexact).any(dim=1)
    if threshold > 0:
        near |= (best - threshold).abs() <= margin
    if bool(near.any()):
        tied_ids = torch.where(tied, ids[slots, q.unsqueeze(1)].long(), -1)[near]                 # (k, A)
        ties.append((y0 + r[near], q[near], tied_ids.sort(dim=1).values))


def _settle_with_kernel(p, ys, xs, tied, labels, confidence, height: int, width: int) -> None:
    """Near ties at pixels (ys, xs) among class ids `tied` (n, k; ascending, -1 = none): their
    values from ``F.interpolate`` itself, class by class: grid rows to the frame width, then
    the columns holding such pixels to the frame height. Bilinear is separable, and this
    reproduces the kernel's arithmetic provided each column takes the same code path as in
    the whole frame: the kernel's row loop is vectorised, with scalar tails and alignment
    peeling (other rounding) where a row is not a whole number of vectors. So for frame
    widths that are a multiple of `_VECTOR_SPAN` (640, 1280, 1920, ...) the chosen columns
    are padded to such a multiple; for other widths every column is computed. The tests
    check it against the literal method. The first maximum is the lowest id, as in its argmax."""
    exact = torch.full(tied.shape, float("-inf"), device=p.device)
    for c in torch.unique(tied[tied >= 0]).tolist():
        at = (tied == c).nonzero(as_tuple=True)
        along_rows = F.interpolate(p[c].view(1, 1, p.shape[1], p.shape[2]), size=(p.shape[1], width),
                                   mode="bilinear", align_corners=False)                   # (1, 1, h, W)
        if width % _VECTOR_SPAN:
            columns = torch.arange(width, device=p.device)
        else:
            columns = torch.unique(xs[at[0]])
            columns = torch.cat([columns, columns[-1:].expand(-columns.shape[0] % _VECTOR_SPAN)])
        position = torch.full((width,), -1, dtype=torch.long, device=p.device)
        position[columns.flip(0)] = torch.arange(columns.shape[0] - 1, -1, -1, device=p.device)   # first occurrence
        part = F.interpolate(along_rows[..., columns], size=(height, columns.shape[0]), mode="bilinear",
                             align_corners=False)[0, 0]                                     # (H, U)
        exact[at] = part[ys[at[0]], position[xs[at[0]]]]
    best, first = exact.max(dim=1)
    labels[ys, xs] = tied.gather(1, first.unsqueeze(1))[:, 0].to(labels.dtype)
    confidence[ys, xs] = best


def _finish(labels: torch.Tensor, confidence: torch.Tensor, num_classes: int, threshold: float):
    """Threshold, the copy to the host and per-class summaries: (labels uint8/uint16 numpy,
    confidence float32 numpy, class_confidence (C,), class_fraction (C,), unlabeled value).
    Summaries count the labelled pixels (confidence at least the threshold)."""
    unlabeled = unlabeled_value_for(num_classes)
    confidence = confidence.clamp_(0.0, 1.0)
    labels = labels.to(_label_dtype(num_classes))
    if threshold > 0:
        labels = labels.masked_fill_(confidence < threshold, unlabeled)
    labels_np = labels.cpu().numpy()
    if labels_np.dtype != np.uint8:
        labels_np = labels_np.astype(np.uint16)
    confidence_np = confidence.cpu().numpy()
    bins = unlabeled + 1                               # the unlabeled pixels land in the last bin
    counts = np.bincount(labels_np.ravel(), minlength=bins)[:num_classes].astype(np.float64)
    sums = np.bincount(labels_np.ravel(), weights=confidence_np.ravel(), minlength=bins)[:num_classes]
    class_confidence = np.divide(sums, counts, out=np.zeros(num_classes), where=counts > 0).astype(np.float32)
    class_fraction = (counts / labels_np.size).astype(np.float32)
    return labels_np, confidence_np, class_confidence, class_fraction, unlabeled
