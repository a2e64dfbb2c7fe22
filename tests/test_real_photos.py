import numpy as np
import pytest

from benchmarks.real_photos import MIN_GAP, Tally, summarise
from defgan_hf import AU_NAMES


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
