"""One-edge pairs: which cells differ in one edge, and how a score orders them against training."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nas_cntk.trained.edge_pairs import CLOSE, agreement, format_agreements, one_edge_pairs

BASE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# edge 0->3 of BASE swapped to none and to a 1x1 conv; edge 0->1 swapped to none; and one two edges away
EDGE_03_NONE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
EDGE_03_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|"
EDGE_01_NONE = "|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
TWO_AWAY = "|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"


def test_pairs_are_the_cells_that_differ_in_exactly_one_edge() -> None:
    pairs = one_edge_pairs([BASE, EDGE_03_NONE, EDGE_03_CONV, EDGE_01_NONE, TWO_AWAY])
    found = {(r.first, r.second): (r.edge, r.swap) for r in pairs.itertuples()}
    assert found == {(0, 1): ("0->3", "none / skip_connect"), (0, 2): ("0->3", "skip_connect / nor_conv_1x1"),
                     (1, 2): ("0->3", "none / nor_conv_1x1"), (0, 3): ("0->1", "none / nor_conv_3x3"),
                     (1, 4): ("0->1", "none / nor_conv_3x3"), (3, 4): ("0->3", "none / skip_connect")}


def test_the_share_counts_ties_half_and_close_pairs_apart() -> None:
    pairs = pd.DataFrame({"first": [0, 0, 1, 2], "second": [1, 2, 2, 3], "edge": ["0->3"] * 4,
                          "swap": ["none / skip_connect"] * 4})
    trained = np.array([93.0, 91.0, 90.0, 90.0 + CLOSE / 2])  # the last pair is closer than CLOSE
    score = np.array([1.0, 0.0, 0.0, 5.0])  # right about (0, 1) and (0, 2), ties (1, 2)
    result = agreement(score, trained, pairs)
    assert result.pairs == 3 and result.close_pairs == 1
    assert math.isclose(result.share.value, 2.5 / 3) and math.isclose(result.ties, 1 / 3)
    assert result.close_share == 1.0  # the score orders the close pair as training does
    assert result.share.low <= result.share.value <= result.share.high
    assert agreement(-score, trained, pairs).share.value == 0.5 / 3
    assert list(result.by_edge) == ["0->3"] and result.by_edge["0->3"][0] == 3


def test_equal_infinities_tie_and_the_table_has_a_row_per_score() -> None:
    genotypes = [BASE, EDGE_03_NONE, EDGE_03_CONV]
    pairs = one_edge_pairs(genotypes)
    trained = np.array([93.0, 10.0, 92.0])
    naswot = np.array([1.0, -math.inf, -math.inf])
    result = agreement(naswot, trained, pairs)
    assert result.share.value == (1 + 1 + 0.5) / 3
    text = format_agreements({"naswot": result, "trained": agreement(trained, trained, pairs)}, pairs)
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.startswith(("naswot", "trained"))}
    assert rows == {"naswot": "0.833", "trained": "1.000"}
