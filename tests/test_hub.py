import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from defgan_hf import (
    DefGAN,
    DeformationGenerator,
    Discriminator,
    TextureGenerator,
    WeightsMismatchError,
)

SMALL = dict(image_size=32, width=8, num_res_blocks=1)


def small_models(texture_only: bool = False) -> tuple[DefGAN, Discriminator]:
    deformer = None if texture_only else DeformationGenerator(**SMALL, max_offset=3.0)
    model = DefGAN(TextureGenerator(**SMALL, num_downsamples=1), deformer)
    return model, Discriminator(image_size=32, width=8, num_layers=3)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def saved_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: TextureGenerator(**SMALL, num_downsamples=1),
        lambda: DeformationGenerator(**SMALL, max_offset=2.5),
        lambda: TextureGenerator(**SMALL, au_modulation=True),
        lambda: DeformationGenerator(**SMALL, au_modulation=True),
        lambda: Discriminator(image_size=32, width=8, num_layers=3),
    ],
)
def test_each_network_round_trips_through_a_folder(tmp_path, make):
    model = make()
    model.save_pretrained(tmp_path)
    assert saved_files(tmp_path) == {"config.json", "model.safetensors", "README.md"}
    loaded = type(model).from_pretrained(tmp_path)
    assert_same_weights(model, loaded)
    assert loaded._hub_mixin_config == model._hub_mixin_config
    assert json.loads((tmp_path / "config.json").read_text()) == model._hub_mixin_config
    assert not loaded.training


def test_config_holds_every_constructor_size(tmp_path):
    DeformationGenerator(**SMALL, max_offset=2.5).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"image_size": 32, "num_aus": 17, "width": 8, "num_downsamples": 2,
                      "num_res_blocks": 1, "max_offset": 2.5, "au_modulation": False, "conditioning": "paper",
                      "landmark_input": False, "inner_brow_combination": False, "arrival_steps": 0, "bound": "tanh"}


def test_configs_written_before_au_modulation_and_change_conditioning_existed_still_load(tmp_path):
    deformer = DeformationGenerator(**SMALL)
    deformer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["au_modulation"], config["conditioning"], config["inner_brow_combination"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = DeformationGenerator.from_pretrained(tmp_path)
    assert not loaded.au_modulation and loaded.conditioning == "paper" and not loaded.inner_brow_combination
    assert_same_weights(deformer, loaded)


def test_defgan_repo_layout_round_trip(tmp_path):
    model, discriminator = small_models()
    model.save_pretrained(tmp_path, discriminator=discriminator)
    assert saved_files(tmp_path) == {
        "README.md", "config.json",
        "deformer/config.json", "deformer/model.safetensors",
        "texturer/config.json", "texturer/model.safetensors",
        "discriminator/config.json", "discriminator/model.safetensors",
    }  # fmt: skip
    loaded = DefGAN.from_pretrained(tmp_path)
    assert_same_weights(model, loaded)
    assert loaded.deformer.max_offset == 3.0
    assert_same_weights(discriminator, Discriminator.from_pretrained(tmp_path, subfolder="discriminator"))
    assert_same_weights(model.texturer, TextureGenerator.from_pretrained(tmp_path, subfolder="texturer"))


def test_texture_only_round_trip(tmp_path):
    model, _ = small_models(texture_only=True)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"texture_only": True, "mask_regions": False}
    assert not (tmp_path / "deformer").exists()
    loaded = DefGAN.from_pretrained(tmp_path)
    assert loaded.texture_only
    assert_same_weights(model, loaded)


LOAD_BY_REPO_ID = """
import sys
from safetensors.torch import save_file
from defgan_hf import DefGAN, Discriminator, TextureGenerator
repo_id, out = sys.argv[1], sys.argv[2]
model = DefGAN.from_pretrained(repo_id)
discriminator = Discriminator.from_pretrained(repo_id, subfolder="discriminator")
texturer = TextureGenerator.from_pretrained(repo_id, subfolder="texturer")
tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
tensors.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
tensors.update({f"texturer.{k}": v for k, v in texturer.state_dict().items()})
save_file({k: v.contiguous() for k, v in tensors.items()}, out)
"""


def test_load_by_repo_id_from_offline_cache(tmp_path, offline_hub_cache):
    model, discriminator = small_models()
    folder = tmp_path / "saved"
    model.save_pretrained(folder, discriminator=discriminator)
    cache_dir = offline_hub_cache(folder, "defgan-hf/tiny-test")
    out = tmp_path / "loaded.safetensors"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache_dir), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", LOAD_BY_REPO_ID, "defgan-hf/tiny-test", str(out)],
                            env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = load_file(out)
    for prefix, module in [("model", model), ("discriminator", discriminator), ("texturer", model.texturer)]:
        for key, value in module.state_dict().items():
            assert torch.equal(loaded[f"{prefix}.{key}"], value), f"{prefix}.{key}"


def test_unknown_repo_offline_fails_clearly(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    code = "from defgan_hf import DefGAN; DefGAN.from_pretrained('defgan-hf/not-in-cache')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "offline" in result.stderr.lower() or "cache" in result.stderr.lower()


def test_only_safetensors_are_read(tmp_path):
    model = TextureGenerator(**SMALL)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "weights.bak")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        TextureGenerator.from_pretrained(tmp_path)


def test_weights_that_do_not_match_the_config_are_rejected(tmp_path):
    TextureGenerator(**SMALL).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "width": 16}))
    with pytest.raises(WeightsMismatchError, match="shape mismatches.*config.json"):
        TextureGenerator.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_res_blocks": 2}))
    with pytest.raises(WeightsMismatchError, match="missing tensors: encoder.layers.4"):
        TextureGenerator.from_pretrained(tmp_path)


def test_extra_tensors_in_the_file_are_rejected(tmp_path):
    model = Discriminator(image_size=32, width=8, num_layers=3)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({**state, "stray.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match="unexpected tensors: stray.weight"):
        Discriminator.from_pretrained(tmp_path)


def test_a_config_of_another_network_is_rejected(tmp_path):
    DeformationGenerator(**SMALL).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="max_offset.*is this folder a Discriminator"):
        Discriminator.from_pretrained(tmp_path)


def test_fp16_weights_load_into_an_fp32_model(tmp_path):
    model = TextureGenerator(**SMALL)
    model.save_pretrained(tmp_path)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    loaded = TextureGenerator.from_pretrained(tmp_path)
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == torch.float32
        assert torch.allclose(loaded.state_dict()[key], value.half().float())


def test_missing_subfolder_is_reported(tmp_path):
    model, _ = small_models()
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no discriminator/ folder"):
        Discriminator.from_pretrained(tmp_path, subfolder="discriminator")


def test_model_card_has_metadata_and_sections(tmp_path):
    model, discriminator = small_models()
    model.save_pretrained(tmp_path, discriminator=discriminator,
                          model_card_kwargs={"training_data": "Twelve synthetic faces."})
    card = (tmp_path / "README.md").read_text()
    _, front_matter, body = card.split("---\n", 2)
    metadata = yaml.safe_load(front_matter)
    assert metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "defgan-hf"
    assert metadata["pipeline_tag"] == "image-to-image"
    assert "defgan" in metadata["tags"]
    for section in ["## Description", "## How to use", "## Training data", "## Evaluation", "## Limitations",
                    "## Ethical use"]:
        assert section in body
    assert "Twelve synthetic faces." in body
    assert 'DefGAN.from_pretrained("REPO_ID_OR_FOLDER")' in body
    assert "consent" in body and "deepfake" in body


def test_push_to_hub_uploads_the_whole_repo(tmp_path, monkeypatch):
    uploaded = {}

    class RecordingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded[repo_id] = saved_files(Path(folder_path))
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr("defgan_hf.models.hub.HfApi", RecordingApi)
    model, discriminator = small_models()
    url = model.save_pretrained(tmp_path, discriminator=discriminator, push_to_hub=True, repo_id="org/defgan-tiny")
    assert url.endswith("/commit/0")
    assert "discriminator/model.safetensors" in uploaded["org/defgan-tiny"]
    assert "deformer/model.safetensors" in uploaded["org/defgan-tiny"]


def test_every_card_is_rendered_from_the_repository_model_card_template():
    """The template lives at the repository's top level; the package reads the same file when installed."""
    from importlib.resources import files

    template = Path(__file__).resolve().parents[1] / "model_card.md"
    assert files("defgan_hf").joinpath("model_card.md").read_text(encoding="utf-8") == template.read_text(encoding="utf-8")


def test_a_folder_written_atomically_replaces_the_old_one_only_when_complete(tmp_path):
    from defgan_hf.models.hub import atomic_folder

    folder = tmp_path / "model"
    with atomic_folder(folder) as partial:
        partial.mkdir()
        (partial / "weights").write_text("v1")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(folder) as partial:
            partial.mkdir()
            (partial / "weights").write_text("v2, half")
            assert (folder / "weights").read_text() == "v1"  # the old folder stays readable meanwhile
            raise RuntimeError("disk full")
    assert (folder / "weights").read_text() == "v1"
    with atomic_folder(folder) as partial:
        partial.mkdir()
        (partial / "weights").write_text("v2")
    assert (folder / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left beside it
