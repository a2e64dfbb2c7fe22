"""AU label readers, data directory layouts, the face dataset and training targets, on tiny real files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from defgan_hf import NUM_AUS
from defgan_hf.data import (
    AU_COLUMNS,
    EmptyDatasetError,
    MAX_HEAD_MOTION,
    MIN_AU_CHANGE,
    RIGID_LANDMARKS,
    FaceAUDataset,
    FramePairDataset,
    augment_face,
    find_data_layout,
    frame_number,
    frame_pairs,
    read_au_labels,
    read_split_ids,
    sample_target_aus,
)
from defgan_hf.images import read_face_crop



def openface_values(seed: int) -> np.ndarray:
    """17 AU intensities on OpenFace's 0–5 scale."""
    return np.round(np.random.default_rng(seed).uniform(0.0, 5.0, NUM_AUS), 2)


def write_csv(path: Path, header: list[str], rows: list[list[object]], separator: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [separator.join(header)] + [separator.join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_table(path: Path, labels: dict[str, np.ndarray], file_column: str = "file") -> None:
    """A table with the AU columns in a shuffled order between unrelated columns."""
    order = np.random.default_rng(1).permutation(NUM_AUS)
    header = ["confidence", file_column] + [AU_COLUMNS[i] for i in order] + ["AU12_c"]
    rows = [[0.98, key] + [values[i] for i in order] + [1] for key, values in labels.items()]
    write_csv(path, header, rows)


def write_openface_csv(path: Path, faces: list[tuple[float, int, np.ndarray]]) -> None:
    """OpenFace's per-image output: ``", "`` separators, spaces in the header, columns in its own order."""
    order = np.random.default_rng(2).permutation(NUM_AUS)
    header = ["face", " confidence", " success", " gaze_0_x", " x_0", " y_0"]
    header += [f" {AU_COLUMNS[i]}" for i in order] + [" AU01_c", " AU28_c"]
    rows = [
        [face, confidence, success, 0.1, 20.5, 30.5] + [values[i] for i in order] + [1, 0]
        for face, (confidence, success, values) in enumerate(faces)
    ]
    write_csv(path, header, rows, separator=", ")


def write_image(path: Path, grey: int, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (grey, grey, grey)).save(path)


def write_truncated_jpeg(path: Path) -> None:
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- labels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_column", ["file", "Filename", "image", "path", "name"])
def test_table_columns_are_selected_by_name_and_rescaled_to_unit_range(tmp_path: Path, file_column: str) -> None:
    values = {"a.png": openface_values(0), "sub/b.jpg": openface_values(1)}
    values["a.png"][0], values["a.png"][16] = 6.0, -0.5  # outside OpenFace's range: clipped
    write_table(tmp_path / "aus.csv", values, file_column)

    labels = read_au_labels(tmp_path / "aus.csv")

    assert sorted(labels) == ["a.png", "sub/b.jpg"]
    for key, raw in values.items():
        assert labels[key].dtype == np.float32
        np.testing.assert_allclose(labels[key], np.clip(raw / 5.0, 0.0, 1.0), rtol=1e-6)
    assert labels["a.png"][0] == 1.0 and labels["a.png"][16] == 0.0


def test_table_drops_rows_openface_failed_to_track(tmp_path: Path) -> None:
    header = ["file", "success"] + list(AU_COLUMNS)
    write_csv(tmp_path / "aus.csv", header, [["a.png", 1, *openface_values(0)], ["b.png", 0, *[0.0] * NUM_AUS]])

    assert list(read_au_labels(tmp_path / "aus.csv")) == ["a.png"]


def test_missing_au_column_is_named_with_the_file(tmp_path: Path) -> None:
    header = ["file"] + [name for name in AU_COLUMNS if name not in ("AU09_r", "AU45_r")]
    write_csv(tmp_path / "aus.csv", header, [["a.png"] + [1.0] * (NUM_AUS - 2)])

    with pytest.raises(ValueError, match=r"aus\.csv lacks the AU intensity column\(s\) AU09_r, AU45_r"):
        read_au_labels(tmp_path / "aus.csv")


def test_table_without_file_column_lists_the_accepted_names(tmp_path: Path) -> None:
    write_csv(tmp_path / "aus.csv", ["picture"] + list(AU_COLUMNS), [["a.png", *openface_values(0)]])

    with pytest.raises(ValueError, match="no file column.*file, filename"):
        read_au_labels(tmp_path / "aus.csv")


def test_image_labelled_twice_is_an_error(tmp_path: Path) -> None:
    write_table(tmp_path / "aus.csv", {"a.png": openface_values(0)})
    with open(tmp_path / "aus.csv", "a") as file:
        file.write("0.9,a.png," + ",".join(["1.0"] * NUM_AUS) + ",1\n")

    with pytest.raises(ValueError, match=r"'a\.png' is labelled twice \(lines 2 and 3\)"):
        read_au_labels(tmp_path / "aus.csv")


def test_non_numeric_value_names_file_line_and_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "aus.csv", ["file"] + list(AU_COLUMNS), [["a.png", "high", *openface_values(0)[1:]]])

    with pytest.raises(ValueError, match=r"aus\.csv, line 2: column AU01_r holds 'high'"):
        read_au_labels(tmp_path / "aus.csv")


def test_openface_folder_labels_each_image_by_its_csv(tmp_path: Path) -> None:
    single, weak, strong = openface_values(0), openface_values(1), openface_values(2)
    write_openface_csv(tmp_path / "a.csv", [(0.9, 1, single)])
    write_openface_csv(tmp_path / "b.csv", [(0.5, 1, weak), (0.95, 1, strong), (0.99, 0, np.zeros(NUM_AUS))])
    write_openface_csv(tmp_path / "no_face.csv", [(0.0, 0, np.zeros(NUM_AUS))])
    (tmp_path / "train_ids.csv").write_text("a\nb\n")

    labels = read_au_labels(tmp_path)

    assert sorted(labels) == ["a", "b"]
    np.testing.assert_allclose(labels["a"], single / 5.0, rtol=1e-6)
    # The most confident face that OpenFace tracked (success == 1) labels the image.
    np.testing.assert_allclose(labels["b"], strong / 5.0, rtol=1e-6)


def test_ganimation_pickle_and_split_files(tmp_path: Path) -> None:
    values = {"000001": openface_values(0), "000002": openface_values(1).astype(np.float32)}
    with open(tmp_path / "aus_openface.pkl", "wb") as file:
        pickle.dump(values, file, protocol=2)
    (tmp_path / "train_ids.csv").write_text("000001.jpg\n\n 000002 \n")

    labels = read_au_labels(tmp_path / "aus_openface.pkl")

    assert sorted(labels) == ["000001", "000002"]
    for key, raw in values.items():
        np.testing.assert_allclose(labels[key], raw / 5.0, rtol=1e-6)
    assert read_split_ids(tmp_path / "train_ids.csv") == {"000001.jpg", "000002"}


class _OpensAFile:
    """Unpickling this creates a file: what a malicious label pickle could do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.target), "w")


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "created_by_pickle"
    with open(tmp_path / "aus_openface.pkl", "wb") as file:
        pickle.dump({"a": _OpensAFile(marker)}, file)

    with pytest.raises(ValueError, match=r"refusing io\.open: only a dict of numpy arrays"):
        read_au_labels(tmp_path / "aus_openface.pkl")
    assert not marker.exists()


def test_pickle_with_wrong_number_of_aus_is_an_error(tmp_path: Path) -> None:
    with open(tmp_path / "aus_openface.pkl", "wb") as file:
        pickle.dump({"a": np.zeros(12)}, file)

    with pytest.raises(ValueError, match=r"'a' has AU values of shape \(12,\); expected 17"):
        read_au_labels(tmp_path / "aus_openface.pkl")


# --- images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "suffix", "expected_rgb"),
    [
        (Image.new("RGBA", (6, 6), (10, 200, 30, 0)), ".png", (255, 255, 255)),  # transparent → white
        (Image.new("L", (6, 6), 0), ".png", (0, 0, 0)),
        (Image.new("CMYK", (6, 6), (0, 0, 0, 0)), ".jpg", (255, 255, 255)),
        (Image.fromarray(np.full((6, 6), 128 * 257, np.uint16)), ".png", (128, 128, 128)),  # 16-bit, rescaled
        (Image.new("P", (6, 6), 0), ".gif", (0, 0, 0)),
    ],
    ids=["rgba", "grey", "cmyk", "grey16", "palette"],
)
def test_read_face_crop_converts_any_mode_to_rgb_in_range(
    tmp_path: Path, image: Image.Image, suffix: str, expected_rgb: tuple[int, int, int]
) -> None:
    path = tmp_path / f"face{suffix}"
    image.save(path)

    loaded = read_face_crop(path, resolution=4)

    assert loaded.shape == (3, 4, 4) and loaded.dtype == torch.float32
    expected = torch.tensor(expected_rgb, dtype=torch.float32) / 127.5 - 1.0
    torch.testing.assert_close(loaded, expected[:, None, None].expand(3, 4, 4), atol=2 / 127.5, rtol=0)


def test_read_face_crop_applies_exif_orientation_then_crops_the_centre(tmp_path: Path) -> None:
    # Stored 40 wide × 20 high: red left half, blue right half. EXIF orientation 6 means "rotate 90° clockwise
    # to display", which puts red on top; the centre square of the upright 20 × 40 image is red above blue.
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.png", exif=exif)

    image = read_face_crop(tmp_path / "rotated.png", resolution=8)

    red, blue = torch.tensor([1.0, -1.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0])
    torch.testing.assert_close(image[:, 0, :], red[:, None].expand(3, 8), atol=1e-3, rtol=0)
    torch.testing.assert_close(image[:, -1, :], blue[:, None].expand(3, 8), atol=1e-3, rtol=0)


# --- dataset -----------------------------------------------------------------------------------------


def annotator_output(root: Path) -> Path:
    """``defgan-annotate``-style output: ``imgs/`` and ``aus.csv``, with every kind of flaw.

    Readable image ``i`` is filled with grey ``40 i`` and labelled AU01 = ``i`` (0–5 scale), so an item's
    image and AUs can be checked to belong together.
    """
    images = root / "imgs"
    write_image(images / "a.png", 0)
    write_image(images / "b.jpg", 40)
    write_image(images / "sub" / "c.png", 80)
    write_image(images / "unlabelled.png", 120)
    write_image(images / ".hidden.png", 160)
    write_truncated_jpeg(images / "truncated.jpg")
    (images / "not_an_image.png").write_text("this is text")
    (images / "notes.txt").write_text("not an image either")
    labels = {}
    # Keys relative to the table (imgs/…), relative to the image folder, and without extension.
    for index, key in enumerate(["imgs/a.png", "b.jpg", "sub/c", "truncated.jpg", "not_an_image.png", "missing.png"]):
        labels[key] = np.zeros(NUM_AUS)
        labels[key][0] = index
    write_table(root / "aus.csv", labels)
    return root


def assert_item_matches_its_label(image: torch.Tensor, aus: torch.Tensor) -> None:
    assert image.shape[-3] == 3 and aus.shape[-1] == NUM_AUS
    grey = (image.mean() + 1.0) * 127.5
    assert grey.item() == pytest.approx(40 * aus[0].item() * 5.0, abs=2.0)


def test_dataset_over_annotator_output_counts_and_skips_bad_files(tmp_path: Path) -> None:
    dataset = FaceAUDataset.from_data_dir(annotator_output(tmp_path), resolution=16, flip=False)

    assert sorted(dataset.files) == ["a.png", "b.jpg", "not_an_image.png", "sub/c.png", "truncated.jpg"]
    assert dataset.unlabelled_images == ["unlabelled.png"]
    assert dataset.labels_without_image == ["missing.png"]
    assert dataset.num_skipped == 0

    items = [dataset[index] for index in range(len(dataset))]

    assert len(items) == len(dataset)
    for image, aus, landmarks, _ in items:
        assert torch.isnan(landmarks).all()  # this folder has no landmarks.csv
        assert image.shape == (3, 16, 16) and aus.shape == (NUM_AUS,) and aus.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert_item_matches_its_label(image, aus)
    assert dataset.num_skipped == 2
    assert sorted(dataset.skipped_files) == ["not_an_image.png", "truncated.jpg"]
    assert "1 image without a label; 1 label without an image; 2 unreadable images skipped" in dataset.summary()


def test_unreadable_images_found_by_loader_workers_are_counted_in_the_main_process(tmp_path: Path) -> None:
    dataset = FaceAUDataset.from_data_dir(annotator_output(tmp_path), resolution=8)
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=1)

    batches = list(loader)

    assert sum(batch.image.shape[0] for batch in batches) == len(dataset)
    for batch in batches:
        for image, label in zip(batch.image, batch.aus, strict=True):
            assert_item_matches_its_label(image, label)
    assert dataset.num_skipped == 2
    assert sorted(dataset.skipped_files) == ["not_an_image.png", "truncated.jpg"]


def test_dataset_whose_images_are_all_unreadable_raises(tmp_path: Path) -> None:
    write_truncated_jpeg(tmp_path / "a.jpg")
    dataset = FaceAUDataset(tmp_path, {"a": np.zeros(NUM_AUS, np.float32)}, resolution=8)

    with pytest.raises(EmptyDatasetError, match=r"None of the 1 labelled images .* can be read"):
        dataset[0]


def test_flip_mirrors_left_right_and_keeps_the_aus(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8), (255, 0, 0))
    image.paste((0, 0, 255), (4, 0, 8, 8))
    image.save(tmp_path / "a.png")
    labels = {"a.png": np.linspace(0, 1, NUM_AUS, dtype=np.float32)}
    unflipped = FaceAUDataset(tmp_path, labels, resolution=8, flip=False)[0].image
    dataset = FaceAUDataset(tmp_path, labels, resolution=8, flip=True)

    torch.manual_seed(0)
    draws = [dataset[0] for _ in range(20)]

    mirrored = [torch.equal(item.image, unflipped.flip(-1)) for item in draws]
    assert all(mirrored[i] or torch.equal(draws[i].image, unflipped) for i in range(20))
    assert any(mirrored) and not all(mirrored)
    assert [bool(item.mirrored) for item in draws] == mirrored
    for item in draws:
        torch.testing.assert_close(item.aus, torch.from_numpy(labels["a.png"]))


def checkerboard_face(size: int = 32) -> torch.Tensor:
    """``(3, size, size)`` in ``[-1, 1]``: coloured squares, so both geometry and colour changes show."""
    rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((rows // 8 + columns // 8) % 2).float()
    return torch.stack([board * 1.6 - 0.8, 0.5 - board, torch.full_like(board, 0.2)])


def test_augment_face_jitters_geometry_and_colour_within_range() -> None:
    face = checkerboard_face()
    generator = torch.Generator().manual_seed(0)

    augmented = [augment_face(face, generator)[0] for _ in range(20)]

    grey = [torch.allclose(image[0], image[1]) and torch.allclose(image[1], image[2]) for image in augmented]
    assert any(grey) and not all(grey)
    for image, is_grey in zip(augmented, grey):
        assert image.shape == face.shape and image.min() >= -1.0 and image.max() <= 1.0
        assert not torch.equal(image, face)
        if not is_grey:  # a small jitter: the squares stay where they were (most pixels keep their colour)
            assert ((image[0] > image[1]) == (face[0] > face[1])).float().mean() > 0.7
    again, _ = augment_face(face, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, augmented[0])


def test_landmarks_move_with_the_flip_and_the_augmentation(tmp_path: Path) -> None:
    """A bright dot drawn at a landmark stays under that landmark whatever the flip and the jitter do."""
    from defgan_hf.data import FaceGeometry

    size, point = 32, (9.0, 20.0)
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[19:22, 8:11] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    landmarks = np.full((1, 478, 2), 16.0, np.float32)
    landmarks[0, 0] = point
    geometry = FaceGeometry(["a.png"], landmarks, np.zeros((1, 3), np.float32))
    labels = {"a.png": np.zeros(NUM_AUS, np.float32)}
    dataset = FaceAUDataset(tmp_path, labels, resolution=size, flip=True, augment=True, geometry=geometry)
    torch.manual_seed(0)
    for _ in range(10):
        item = dataset[0]
        x, y = item.landmarks[0].round().long().tolist()
        brightest = item.image.mean(0)
        assert brightest[y, x] > brightest.mean() + 0.5, (bool(item.mirrored), item.landmarks[0])


def test_dataset_augments_only_when_asked_and_keeps_the_aus(tmp_path: Path) -> None:
    from defgan_hf.images import tensor_to_image

    tensor_to_image(checkerboard_face()[None]).save(tmp_path / "a.png")
    labels = {"a.png": np.linspace(0, 1, NUM_AUS, dtype=np.float32)}
    plain = FaceAUDataset(tmp_path, labels, resolution=32, flip=False)
    augmented = FaceAUDataset(tmp_path, labels, resolution=32, flip=False, augment=True)

    assert torch.equal(plain[0].image, plain[0].image)
    first, second = augmented[0], augmented[0]
    assert not torch.equal(first.image, second.image) and not torch.equal(first.image, plain[0].image)
    for item in (first, second):
        torch.testing.assert_close(item.aus, torch.from_numpy(labels["a.png"]))


def test_ganimation_layout_selects_a_split(tmp_path: Path) -> None:
    stems = ["000001", "000002", "000003", "000004"]
    for index, stem in enumerate(stems):
        write_image(tmp_path / "imgs" / f"{stem}.jpg", 40 * index)
    with open(tmp_path / "aus_openface.pkl", "wb") as file:
        pickle.dump({stem: np.full(NUM_AUS, float(index)) for index, stem in enumerate(stems)}, file)
    (tmp_path / "train_ids.csv").write_text("000001.jpg\n000002.jpg\n")
    (tmp_path / "test_ids.csv").write_text("000003\n000004\n")

    train = FaceAUDataset.from_data_dir(tmp_path, resolution=8, split="train")
    test = FaceAUDataset.from_data_dir(tmp_path, resolution=8, split="test")
    everything = FaceAUDataset.from_data_dir(tmp_path, resolution=8)

    assert train.files == ["000001.jpg", "000002.jpg"]
    assert test.files == ["000003.jpg", "000004.jpg"]
    assert len(everything) == 4
    assert train.unlabelled_images == [] and train.labels_without_image == [] and train.num_outside_split == 2
    assert_item_matches_its_label(*test[1][:2])
    with pytest.raises(FileNotFoundError, match="val_ids.csv"):
        FaceAUDataset.from_data_dir(tmp_path, split="val")


@pytest.mark.parametrize("csv_folder", ["processed", "."])
def test_openface_layouts(tmp_path: Path, csv_folder: str) -> None:
    for index, name in enumerate(["a", "b"]):
        values = np.zeros(NUM_AUS)
        values[0] = index
        write_openface_csv(tmp_path / csv_folder / f"{name}.csv", [(0.9, 1, values)])
        write_image(tmp_path / "imgs" / f"{name}.png", 40 * index)

    layout = find_data_layout(tmp_path)
    dataset = FaceAUDataset.from_data_dir(tmp_path, resolution=8)

    assert layout.labels == tmp_path / csv_folder  # pathlib drops the "."
    assert layout.image_dir == tmp_path / "imgs"
    assert dataset.files == ["a.png", "b.png"]
    for index in range(len(dataset)):
        assert_item_matches_its_label(*dataset[index][:2])


def test_empty_data_directories_say_what_was_found(tmp_path: Path) -> None:
    no_images = tmp_path / "no_images"
    (no_images / "imgs").mkdir(parents=True)
    write_table(no_images / "aus.csv", {"a.png": openface_values(0), "b.png": openface_values(1)})
    no_labels = tmp_path / "no_labels"
    for name in ["a.png", "b.png", "c.png"]:
        write_image(no_labels / "imgs" / name, 0)
    no_match = tmp_path / "no_match"
    write_image(no_match / "imgs" / "face.png", 0)
    write_table(no_match / "aus.csv", {"other.png": openface_values(0)})

    with pytest.raises(EmptyDatasetError, match=r"found 0 images in .*imgs and 2 AU labels"):
        FaceAUDataset.from_data_dir(no_images)
    with pytest.raises(EmptyDatasetError, match=r"found 3 images and no AU labels in .*no_labels"):
        FaceAUDataset.from_data_dir(no_labels)
    with pytest.raises(EmptyDatasetError, match=r"found 1 image in .* and 1 AU label, but no label names an image"):
        FaceAUDataset.from_data_dir(no_match)
    assert issubclass(EmptyDatasetError, ValueError)


def test_bad_data_dir_fails_fast_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Data directory .*does_not_exist does not exist"):
        FaceAUDataset.from_data_dir(tmp_path / "does_not_exist")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        FaceAUDataset.from_data_dir(tmp_path / "a_file")


# --- training targets --------------------------------------------------------------------------------


def test_target_aus_are_another_samples_aus_plus_bounded_noise() -> None:
    # Rows 0.25 apart in every AU: with noise ≤ 0.1 each target row is nearest to exactly one source row.
    aus = torch.linspace(0.0, 1.0, 5)[:, None].expand(5, NUM_AUS).contiguous()

    targets = sample_target_aus(aus, generator=torch.Generator().manual_seed(0), noise=0.1)

    assert targets.shape == aus.shape and targets.dtype == aus.dtype
    assert targets.min() >= 0.0 and targets.max() <= 1.0
    sources = (targets[:, None, :] - aus[None, :, :]).abs().amax(-1).argmin(-1)
    assert sorted(sources.tolist()) == list(range(5))  # a permutation of the batch
    unclipped = (targets - aus[sources]).abs()
    assert unclipped.max() <= 0.1 + 1e-6 and unclipped.max() > 0.0


def test_target_aus_without_noise_permute_the_batch_reproducibly() -> None:
    aus = torch.rand(8, NUM_AUS, generator=torch.Generator().manual_seed(1))

    first = sample_target_aus(aus, generator=torch.Generator().manual_seed(2), noise=0.0)
    again = sample_target_aus(aus, generator=torch.Generator().manual_seed(2), noise=0.0)

    assert torch.equal(first, again)
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, aus.tolist()))
    assert not torch.equal(first, aus)
    with pytest.raises(ValueError, match=r"shape \(N, 17\)"):
        sample_target_aus(aus[:, :5])


def test_single_au_targets_change_one_au_and_keep_the_others() -> None:
    aus = torch.rand(64, NUM_AUS, generator=torch.Generator().manual_seed(3))

    everyone = sample_target_aus(aus, generator=torch.Generator().manual_seed(4), single_au_fraction=1.0)
    assert ((everyone != aus).sum(dim=1) == 1).all()  # one AU each (a redrawn value is never exactly the old)
    assert everyone.min() >= 0.0 and everyone.max() <= 1.0
    assert len(set((everyone != aus).float().argmax(dim=1).tolist())) > NUM_AUS // 2  # which AU varies

    half = sample_target_aus(aus, generator=torch.Generator().manual_seed(4), single_au_fraction=0.5)
    one_au = (half != aus).sum(dim=1) == 1
    assert 16 < one_au.sum() < 48  # the rest are other samples' AUs, which differ in many AUs
    with pytest.raises(ValueError, match="single_au_fraction"):
        sample_target_aus(aus, single_au_fraction=1.5)


def test_frame_pairs_join_nearby_frames_of_one_video_where_the_expression_changes_and_the_head_does_not() -> None:
    files = ["a/frame_000000.png", "a/frame_000010.png", "a/frame_000100.png", "b/frame_000005.png",
             "photos/p1.png", "photos/p2.png"]  # fmt: skip
    landmarks = np.zeros((len(files), 478, 2))
    aus = np.zeros((len(files), NUM_AUS))
    aus[1, 0] = 0.8  # a/10 smiles after a/0
    aus[2, 1] = 0.8  # a/100 is too far from both
    aus[3, 0] = 0.8  # b is another video
    aus[5, 0] = 0.8  # photos are not frames
    assert sorted(map(tuple, frame_pairs(files, landmarks, aus, 128).tolist())) == [(0, 1), (1, 0)]
    assert len(frame_pairs(files, landmarks, np.where(aus > 0, MIN_AU_CHANGE / 2, 0.0), 128)) == 0
    turned = landmarks.copy()
    turned[1, list(RIGID_LANDMARKS), 0] += 2 * MAX_HEAD_MOTION * 128
    assert len(frame_pairs(files, turned, aus, 128)) == 0
    assert frame_number("v/frame_000042.png") == 42 and frame_number("v/frame_x.png") is None


def test_frame_pair_dataset_flips_both_frames_together(tmp_path: Path) -> None:
    files = ["v/frame_000000.png", "v/frame_000001.png"]
    (tmp_path / "v").mkdir()
    rng = np.random.default_rng(0)
    for file in files:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / file)
    landmarks = rng.uniform(0, 15, (1, 478, 2)).repeat(2, axis=0)
    landmarks[1, 13:15, 1] += 1.0  # the inner lips part; the head stays still
    aus = np.zeros((2, NUM_AUS))
    aus[1, 0] = 1.0
    dataset = FramePairDataset(tmp_path, files, landmarks, aus, resolution=16)
    assert len(dataset) == 2
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        pair = dataset[0]
        mirrored = bool(pair.mirrored)
        seen.add(mirrored)
        for image, points, file, row in ((pair.source, pair.source_landmarks, files[0], 0),
                                         (pair.target, pair.target_landmarks, files[1], 1)):  # fmt: skip
            crop = read_face_crop(tmp_path / file, 16)
            assert torch.equal(image, crop.flip(-1) if mirrored else crop)
            x = 15 - landmarks[row, :, 0] if mirrored else landmarks[row, :, 0]
            assert np.allclose(points[:, 0].numpy(), x, atol=1e-4)
        assert torch.equal(pair.target_aus, torch.from_numpy(aus[1]).float())
    assert seen == {False, True}
    with pytest.raises(EmptyDatasetError, match="frames of one video"):
        FramePairDataset(tmp_path, files, landmarks, np.zeros((2, NUM_AUS)), resolution=16)
