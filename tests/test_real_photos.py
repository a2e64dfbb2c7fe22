from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.real_photos import MIN_GAP, Tally, attainable_gap_closed, summarise
from defgan_hf import AU_NAMES, expression_vector


def test_per_au_gaps_closed_weighted_by_their_share_give_the_presets_gap_closed():
    tally = Tally()
    before = np.zeros(len(AU_NAMES))
    target = np.zeros(len(AU_NAMES))
    target[[0, 2, 10]] = (0.6, 0.6, 0.6)  # a sad face asked of a face at rest
    after = before.copy()
    after[[0, 2, 10]] = (0.3, -0.1, 0.0)  # the brows half-way, the lowerer the wrong way, the corners not at all
    for _ in range(2):
        tally.add_aus(before, after, target, MIN_GAP)
    row = summarise(tally)
    assert set(row["per_au"]) == {"AU01", "AU04", "AU15"}
    assert row["per_au"]["AU01"]["gap_closed"] == pytest.approx(0.5)
    assert row["per_au"]["AU04"]["gap_closed"] == pytest.approx(-1 / 6)
    assert row["per_au"]["AU15"] == {"gap_closed": 0.0, "share_of_gap": pytest.approx(1 / 3)}
    weighted = sum(entry["gap_closed"] * entry["share_of_gap"] for entry in row["per_au"].values())
    assert weighted == pytest.approx(row["gap_closed"])


def test_attainable_gap_closed_is_that_of_the_real_face_nearest_the_target():
    at_rest = np.zeros(len(AU_NAMES), dtype=np.float32)
    face = SimpleNamespace(source_aus=torch.zeros(len(AU_NAMES)))
    happy = expression_vector("happy").numpy()
    half_smile, full_smile_and_more = 0.5 * happy, np.clip(happy + 0.3, 0.0, 1.0)
    attainable = attainable_gap_closed([face], [at_rest], ["happy"], np.stack([half_smile]), MIN_GAP)
    assert attainable["happy"] == pytest.approx(0.5)
    # Progress past the target does not count: a face with more than the preset closes the gap, no more.
    attainable = attainable_gap_closed([face], [at_rest], ["happy"], np.stack([half_smile, full_smile_and_more]),
                                       MIN_GAP)  # fmt: skip
    assert attainable["happy"] == pytest.approx(1.0)
