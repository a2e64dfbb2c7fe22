"""The benchmarks' expression judge: a FER2013 classifier that reads pixels, on real posed photos."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real_photos import Tally, _judged, summarise
from defgan_hf.expression_judge import EMOTIONS, ExpressionJudge
from defgan_hf.face import align_face, detect_face
from defgan_hf.images import load_image


@pytest.fixture(scope="module")
def judge() -> ExpressionJudge:
    return ExpressionJudge()


def test_it_reads_a_posed_smile_as_happy_and_a_surprised_face_as_not(judge, sample_media):
    happy, surprised = (load_image(sample_media(name)) for name in ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"))
    smile = judge(happy, detect_face(happy).landmarks)
    assert smile.shape == (len(EMOTIONS),) and np.isclose(smile.sum(), 1.0, atol=1e-3)
    assert smile.argmax() == EMOTIONS.index("happy") and smile[EMOTIONS.index("happy")] > 0.9
    wide_eyed = judge(surprised, detect_face(surprised).landmarks)
    # The surprised woman reads as afraid or surprised, whatever the split between the two; never as happy.
    assert wide_eyed[EMOTIONS.index("fear")] + wide_eyed[EMOTIONS.index("surprise")] > 0.5
    assert wide_eyed[EMOTIONS.index("happy")] < 0.05


def test_a_face_reads_alike_in_its_photo_in_its_crop_and_at_the_photos_edge(judge, sample_media):
    photo = load_image(sample_media("0-f15-hao-ph.jpg"))
    face = detect_face(photo)
    in_photo = judge(photo, face.landmarks)
    aligned = align_face(photo, face, size=128)
    in_crop = judge(aligned.image, aligned.crop_landmarks)
    assert np.abs(in_crop - in_photo).max() < 0.1
    # Cut the photo through the face: the judge's square reaches past the image, which is padded, not refused.
    left = int(face.landmarks[:, 0].min()) + 10
    at_edge = judge(photo.crop((left, 0, photo.width, photo.height)), face.landmarks[:, :2] - [left, 0])
    assert at_edge.shape == (len(EMOTIONS),) and np.isfinite(at_edge).all()


def test_the_benchmark_reports_its_mean_probability_before_and_after_and_none_without_a_class():
    tally = Tally(judged_input=[0.1, 0.3], judged_edit=[0.4, 0.6])
    row = summarise(tally)
    assert row["judge_input"] == pytest.approx(0.2) and row["judge_edit"] == pytest.approx(0.5)
    assert _judged(row) == "0.200 → 0.500"
    contempt = summarise(Tally())
    assert contempt["judge_input"] is None and _judged(contempt) == "–"
