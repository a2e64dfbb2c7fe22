"""defgan-annotate on real photos and a real video: AU estimates, the output the data reader takes, failures."""

from __future__ import annotations

import csv
import shutil
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np
import pytest
from PIL import Image

from defgan_hf import AU_NAMES
from defgan_hf.data import AU_COLUMNS
from defgan_hf import annotate as annotate_module
from defgan_hf.annotate import annotate, main
from defgan_hf.data import find_data_layout, read_au_labels, read_landmarks
from defgan_hf.face import crop_template

POSED = {"surprise": "0-f1-su-ph.jpg", "happy": "0-f15-hao-ph.jpg", "anger": "15-f13-anc-ph.jpg",
         "disgust": "45-m7-di-ph.jpg"}  # fmt: skip
EVERY_NTH_FRAME = 8
SIZE = 96


def au(labels: np.ndarray, name: str) -> float:
    return float(labels[AU_NAMES.index(name)])


def write_video(path, frames: list[np.ndarray], fps: float = 24.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_media):
    """A folder of posed photos, the crying-to-laughing video and broken files, annotated once."""
    images = tmp_path_factory.mktemp("photos")
    (images / "posed").mkdir()
    for expression, name in POSED.items():
        shutil.copyfile(sample_media(name), images / "posed" / f"{expression}.jpg")
    (images / "video").mkdir()
    shutil.copyfile(sample_media("WolfgangLanger_Pexels.mp4"), images / "video" / "crying_to_laughing.mp4")
    capture = cv2.VideoCapture(str(sample_media("no_face.mp4")))
    write_video(images / "video" / "empty_room.mp4", [capture.read()[1] for _ in range(3)])
    (images / "broken").mkdir()
    (images / "broken" / "truncated.jpg").write_bytes(sample_media("single_face.jpg").read_bytes()[:10000])
    (images / "broken" / "notes.txt").write_text("not a photo")
    shutil.copyfile(sample_media("free-mountain-vector-01.jpg"), images / "broken" / "mountain.jpg")
    out = tmp_path_factory.mktemp("dataset")
    exit_code = main([str(images), "--out", str(out), "--every-nth-frame", str(EVERY_NTH_FRAME), "--size", str(SIZE)])
    return images, out, exit_code


def test_the_output_is_a_dataset_the_training_reader_takes(run):
    _, out, exit_code = run
    assert exit_code == 0
    labels = read_au_labels(out / "aus.csv")
    with open(out / "aus.csv", newline="") as file:
        header = next(csv.reader(file))
    assert header[1:18] == list(AU_COLUMNS)
    video_frames = [key for key in labels if key.startswith("video/crying_to_laughing/")]
    assert len(video_frames) == len(range(0, 472, EVERY_NTH_FRAME))
    assert len(labels) == len(POSED) + len(video_frames)
    for key, aus in labels.items():
        assert aus.shape == (len(AU_NAMES),) and np.all((aus >= 0) & (aus <= 1))
        with Image.open(out / "imgs" / key) as crop:
            assert crop.size == (SIZE, SIZE)


def test_posed_expressions_score_their_action_units_highest(run):
    _, out, _ = run
    labels = read_au_labels(out / "aus.csv")
    posed = {expression: labels[f"posed/{expression}.png"] for expression in POSED}
    others = {expression: [aus for name, aus in posed.items() if name != expression] for expression in posed}
    for name in ("AU12", "AU06"):
        assert au(posed["happy"], name) > max(au(aus, name) for aus in others["happy"]), name
    for name in ("AU01", "AU02", "AU26"):
        assert au(posed["surprise"], name) > max(au(aus, name) for aus in others["surprise"]), name
    # The landmark-based AUs: lips apart in the open-mouthed surprise and the toothy smile, pressed in anger.
    assert min(au(posed["surprise"], "AU25"), au(posed["happy"], "AU25")) > 0.2 > au(posed["anger"], "AU25")
    assert au(posed["anger"], "AU23") > max(au(aus, "AU23") for aus in others["anger"])


def test_wide_open_eyes_read_neither_a_lid_tightener_nor_a_blink(run):
    # MediaPipe's eyeSquint scores about 0.2 on this surprised face's crop, as on a relaxed face; the AUs are what
    # the blendshapes score above a face at rest, so lids that FACS codes neither as tightened nor as closing read 0.
    _, out, _ = run
    surprise = read_au_labels(out / "aus.csv")["posed/surprise.png"]
    assert au(surprise, "AU07") < 0.05 and au(surprise, "AU45") < 0.05


def test_landmarks_and_head_pose_are_written_beside_the_labels(run):
    _, out, _ = run
    labels = read_au_labels(out / "aus.csv")
    geometry = read_landmarks(out / "landmarks.csv")
    assert find_data_layout(out).landmarks == out / "landmarks.csv"
    assert sorted(geometry.files) == sorted(labels)
    assert geometry.landmarks.shape == (len(labels), 478, 2) and geometry.pose.shape == (len(labels), 3)
    # In crop pixels: the eye centres (mean of the eye corners) sit where the alignment put them.
    eyes = np.stack([geometry.landmarks[:, [33, 133]].mean(axis=1), geometry.landmarks[:, [362, 263]].mean(axis=1)], 1)
    assert np.abs(eyes - crop_template(SIZE)[:2]).max() < 0.1 * SIZE
    assert np.all(np.abs(geometry.pose) < 90)
    disgust = geometry.index()["posed/disgust.png"]
    assert abs(geometry.pose[disgust, 0]) > 20, "the disgusted man's head is turned"


def test_cheek_raise_is_measured_on_its_own_not_copied_from_the_lid_tightener(run):
    _, out, _ = run
    labels = read_au_labels(out / "aus.csv")
    frames = sorted(key for key in labels if key.startswith("video/crying_to_laughing/"))
    cheek = np.array([au(labels[key], "AU06") for key in frames])
    lids = np.array([au(labels[key], "AU07") for key in frames])
    assert np.mean(np.abs(cheek - lids) > 0.05) > 0.5
    # The laugh at the end raises the cheeks; the calm stretch in the middle of the video does not.
    sixth = len(frames) // 6
    assert cheek[-sixth:].mean() > cheek[2 * sixth : 3 * sixth].mean() + 0.3
    # A lid tightener without a cheek raise: the angry face narrows its eyes more than the surprised one, with no AU06.
    anger, surprise = labels["posed/anger.png"], labels["posed/surprise.png"]
    assert au(anger, "AU07") > au(surprise, "AU07") and au(surprise, "AU06") < 0.1


def test_cheek_raise_and_nose_wrinkle_rise_on_the_posed_expressions_that_show_them(small_motion_set):
    labels = read_au_labels(small_motion_set / "aus.csv")
    cell = {f"{key[-8:-4]}": aus for key, aus in labels.items() if key.startswith("facetorch/")}
    # facetorch's contact sheet: laughs (r0c1, r3c1, r4c1) against a calm face (r2c1) and a pout (r4c3); a
    # scream and a snarl with the nose wrinkled (r1c1, r2c3).
    for laugh in ("r0c1", "r3c1", "r4c1"):
        assert au(cell[laugh], "AU06") > 0.5 > 0.2 > max(au(cell["r2c1"], "AU06"), au(cell["r4c3"], "AU06")), laugh
    for wrinkled in ("r1c1", "r2c3"):
        assert au(cell[wrinkled], "AU09") > 0.5 > 0.2 > max(au(cell["r2c1"], "AU09"), au(cell["r4c3"], "AU09")), wrinkled


def test_smiling_rises_from_crying_to_laughing(run):
    _, out, _ = run
    labels = read_au_labels(out / "aus.csv")
    frames = sorted(key for key in labels if key.startswith("video/crying_to_laughing/"))
    smile = np.array([au(labels[key], "AU12") for key in frames])
    third = len(smile) // 3
    assert smile[-third:].mean() > smile[:third].mean() + 0.15


def test_broken_files_are_listed_with_their_reasons(run):
    _, out, exit_code = run
    assert exit_code == 0
    with open(out / "failed.csv", newline="") as file:
        failed = {row["file"]: row["reason"] for row in csv.DictReader(file)}
    assert set(failed) == {"broken/truncated.jpg", "broken/notes.txt", "broken/mountain.jpg", "video/empty_room.mp4"}
    assert "truncated" in failed["broken/truncated.jpg"]
    assert "not an image" in failed["broken/notes.txt"]
    assert "no face" in failed["broken/mountain.jpg"]
    assert "no face in any sampled frame" in failed["video/empty_room.mp4"]


def test_a_second_run_skips_finished_files_and_retries_failed_ones(run):
    images, out, _ = run
    rows_before = (out / "aus.csv").read_text()
    landmarks_before = (out / "landmarks.csv").read_text()
    report = annotate(images, out, size=SIZE, every_nth_frame=EVERY_NTH_FRAME, progress=False)
    assert report.skipped == len(POSED) + 1 and report.annotated == 0
    assert len(report.failed) == 4
    assert (out / "aus.csv").read_text() == rows_before
    assert (out / "landmarks.csv").read_text() == landmarks_before


def test_parallel_workers_give_the_same_labels(tmp_path, sample_media):
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"):
        shutil.copyfile(sample_media(name), images / name)
    serial = annotate(images, tmp_path / "serial", progress=False)
    parallel = annotate(images, tmp_path / "parallel", workers=2, progress=False)
    assert serial.annotated == parallel.annotated == 3
    serial_labels = read_au_labels(tmp_path / "serial" / "aus.csv")
    parallel_labels = read_au_labels(tmp_path / "parallel" / "aus.csv")
    assert serial_labels.keys() == parallel_labels.keys()
    for key in serial_labels:
        np.testing.assert_allclose(parallel_labels[key], serial_labels[key], atol=1e-3)


def test_usage_errors_stop_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "not a folder" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "aus.csv").write_text("name,happiness\na.jpg,1\n")
    with pytest.raises(ValueError, match="another --out"):
        annotate(tmp_path, tmp_path / "out", progress=False)


def test_a_dying_worker_fails_its_pending_files_not_the_run(tmp_path, sample_media, monkeypatch):
    class PoolWhoseWorkerDies:
        """Stands in for the process pool: one file is done, then a worker dies (as when killed for memory)."""

        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return None

        def map(self, function, jobs):
            yield function(jobs[0])
            raise BrokenProcessPool("a worker was killed")

    monkeypatch.setattr(annotate_module, "ProcessPoolExecutor", PoolWhoseWorkerDies)
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"):
        shutil.copyfile(sample_media(name), images / name)
    report = annotate(images, tmp_path / "out", workers=2, progress=False)
    assert report.annotated == 1
    assert len(report.failed) == 2 and all("worker process died" in reason for reason in report.failed.values())
