"""The optimisation passes over a program's listing, and the placement of its slots.

Each pass keeps the results bit for bit: it drops repeated work, merges chains of additions in
their order, places slots in an arena, or lays out a linear map's weights for faster loops.
"""
from __future__ import annotations

import numpy as np

from nas_cntk.kernels.fused.graph.instructions import ADD, LINEAR, READS, RELU, RESULTS, Listing, reads, writes

# Tiled weights pay below this many entries a tensor (8 x 8 with every shift): there a row is short
# and one loop over the whole tensor beats a loop per row; above it a tiled diagonal (a tensor's
# size) pushes the tensors out of the L2 cache, measured 1.4x slower at 16 x 16.
TILED_ENTRIES = 4096


def shared(listing: Listing) -> None:
    """Each computation once: an instruction that repeats an earlier one on the same inputs (the
    ReLU and the conv moments of two edges out of one cell node, or a second zero tensor) is dropped,
    and what read its outputs reads the earlier one's."""
    same: dict[int, int] = {}  # slot -> the earlier slot with the same values
    seen: dict[tuple, list[int]] = {}
    kept = []
    for k, row in enumerate(listing.code):
        op, row = row[0], list(row)
        for f in READS[op]:
            row[f] = same.get(row[f], row[f])
        key = (op, *row[2:4], *(row[4:5] if op != RELU else ()), *row[5:], listing.alpha[k], listing.beta[k])
        if op not in RESULTS and key in seen:
            same.update(zip(writes(row), seen[key]))
            continue
        seen[key] = writes(row)
        listing.code[k] = tuple(row)
        kept.append(k)
    listing.keep(kept)


def sums(listing: Listing) -> None:
    """Each chain of additions as one instruction: an addition whose first term is the result of
    another read nowhere else takes over its terms, in order, so the rounding is the same and only
    the final sum is written. The terms go to the index maps."""
    read_count: dict[int, int] = {}
    for row in listing.code:
        for slot in reads(row, listing.maps):
            read_count[slot] = read_count.get(slot, 0) + 1
    terms: dict[int, list[int]] = {}  # instruction -> its terms
    made_by: dict[int, int] = {}      # slot -> the addition that wrote it
    merged: set[int] = set()
    for k, row in enumerate(listing.code):
        if row[0] != ADD:
            continue
        first, second = row[2], row[3]
        if first in made_by and read_count[first] == 1:
            merged.add(made_by[first])
            terms[k] = terms.pop(made_by[first]) + [second]
        else:
            terms[k] = [first, second]
        made_by[row[1]] = k
    for k, row in enumerate(listing.code):
        if row[0] == ADD and k not in merged:
            terms_map = listing.index_map(("sum", k), lambda k=k: terms[k])
            listing.code[k] = (ADD, row[1], -1, terms_map, len(terms[k]), row[5], row[6])
    listing.keep([k for k in range(len(listing.code)) if k not in merged])


def allocate(code: np.ndarray, sizes: list[int], maps: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Arena offsets for the virtual slots: a slot's memory is reused once no later instruction reads it."""
    last_read = np.full(len(sizes), -1)
    for k, row in enumerate(code):
        for slot in reads(row, maps):
            last_read[slot] = k
    offsets = np.zeros(len(sizes), np.int64)
    free: dict[int, list[int]] = {}
    arena = 0
    releases: dict[int, list[int]] = {}
    for slot, k in enumerate(last_read):
        releases.setdefault(int(k), []).append(slot)
    for k, row in enumerate(code):
        for slot in writes(row):
            if slot < 0:
                continue
            pool = free.get(sizes[slot])
            if pool:
                offsets[slot] = pool.pop()
            else:
                offsets[slot] = arena
                arena += sizes[slot]
        for slot in releases.get(k, []):  # read for the last time here: free after this instruction
            free.setdefault(sizes[slot], []).append(offsets[slot])
    return offsets, max(arena, 1)


def tiles(code: np.ndarray, grid_table: np.ndarray, matrices: tuple[np.ndarray, ...]) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """A linear map's banded matrices tiled over the whole pair tensor, where the map keeps its shape
    and the tensor is small: diagonal d of B then reads entry t + d of the tensor, diagonal d of A
    entry t + d * columns, so a kernel runs each diagonal as one loop over all the entries (weights 0
    where a row ends)."""
    table, _, weights = matrices
    at = np.full((len(code), 2), -1, np.int64)
    made: dict[tuple[int, int, int], int] = {}
    parts, size = [], 0
    for k, row in enumerate(code):
        if row[0] != LINEAR:
            continue
        (rows_in, cols_in), (rows_out, cols_out) = grid_table[row[5], :2], grid_table[row[6], :2]
        if rows_out * cols_out > TILED_ENTRIES:
            continue
        for side, matrix, square in ((0, row[3], rows_in == rows_out), (1, row[4], cols_in == cols_out)):
            if matrix < 0 or not square or not table[matrix, 3]:
                continue
            n, width, offset = table[matrix, :3]
            key = (side, matrix, cols_out if side == 0 else rows_in)
            if key not in made:
                by_diagonal = weights[offset:offset + n * width].reshape(width, n)
                tiled = np.repeat(by_diagonal, key[2], axis=1) if side == 0 else np.tile(by_diagonal, key[2])
                made[key] = size
                parts.append(tiled.ravel())
                size += tiled.size
            at[k, side] = made[key]
    return at, (np.concatenate(parts) if parts else np.zeros(0, np.float64))
