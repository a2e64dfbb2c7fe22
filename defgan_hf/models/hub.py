"""The Hub format shared by every defgan-hf network.

Each network is a :class:`torch.nn.Module` and a :class:`huggingface_hub.PyTorchModelHubMixin`:
``config.json`` holds every constructor argument, ``model.safetensors`` the weights. A DefGAN repo
puts its networks in subfolders::

    README.md                    model card (YAML metadata + description, usage, data, evaluation)
    config.json                  {"texture_only": false}
    deformer/config.json         DeformationGenerator sizes    (absent for a texture-only model)
    deformer/model.safetensors
    texturer/config.json         TextureGenerator sizes
    texturer/model.safetensors
    discriminator/config.json    Discriminator sizes           (for fine-tuning and AU estimation)
    discriminator/model.safetensors

Loading differs from the mixin's defaults on purpose: only safetensors are read (never pickles), and
weights must match the config exactly (``strict=True``), so a wrong config fails loudly instead of
leaving layers at random initialisation.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import safetensors.torch
import torch
from huggingface_hub import HfApi, ModelCard, PyTorchModelHubMixin, hf_hub_download, snapshot_download
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from huggingface_hub.errors import EntryNotFoundError

REPO_URL = "https://github.com/defgan-hf/defgan-hf"
LIBRARY_NAME = "defgan-hf"

T = TypeVar("T", bound="HubModel")


class WeightsMismatchError(ValueError):
    """The weights file does not fit the network its ``config.json`` describes."""


def load_weights(model: torch.nn.Module, weights_file: str | Path, map_location: str | torch.device = "cpu",
                 strict: bool = True) -> None:
    """Load a safetensors file into ``model``, explaining any mismatch with its configuration.

    Args:
        model: the network, built from its ``config.json``.
        weights_file: path of a ``.safetensors`` file (fp32, fp16 or bf16 tensors; cast to the model's dtype).
        map_location: device the tensors are read onto.
        strict: if True, missing or unexpected tensors are errors; shape mismatches always are.

    Raises:
        WeightsMismatchError: listing the missing, unexpected and mis-shaped tensors.
    """
    state = safetensors.torch.load_file(str(weights_file), device=str(map_location))
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    mis_shaped = sorted(
        f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
        for key in expected.keys() & state.keys()
        if state[key].shape != expected[key].shape
    )
    problems = [("shape mismatches", mis_shaped)]
    if strict:
        problems += [("missing tensors", missing), ("unexpected tensors", unexpected)]
    found = [f"{len(items)} {what}: {', '.join(items[:5])}{' …' if len(items) > 5 else ''}" for what, items in problems if items]
    if found:
        raise WeightsMismatchError(
            f"{weights_file} does not fit {type(model).__name__} as configured "
            f"({json.dumps(getattr(model, '_hub_mixin_config', None), sort_keys=True)}): {'; '.join(found)}. "
            "The config.json beside the weights must hold the sizes they were trained with; fix it or re-save "
            "the model with save_pretrained."
        )
    model.load_state_dict(state, strict=strict)


def resolve_folder(
    pretrained_model_name_or_path: str | Path,
    subfolder: str | None = None,
    *,
    allow_patterns: list[str] | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """Return a local folder for a local path or a Hub repo id (downloaded, or found in the offline cache).

    Raises:
        FileNotFoundError: if ``subfolder`` does not exist in the folder or repo.
    """
    source = str(pretrained_model_name_or_path)
    if os.path.isdir(source):
        folder = Path(source)
    else:
        patterns = allow_patterns or ([f"{subfolder}/*"] if subfolder else None)
        folder = Path(
            snapshot_download(
                repo_id=source,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
                allow_patterns=patterns,
            )
        )
    if subfolder:
        folder = folder / subfolder
        if not folder.is_dir():
            raise FileNotFoundError(f"{source} has no {subfolder}/ folder; is it a defgan-hf model repo?")
    return folder


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Write a folder all at once: the block writes into a temporary folder beside ``folder``, which replaces it
    when the block ends without error (:func:`replace_folder`). On error the temporary folder is removed and
    ``folder`` is left as it was.

    Yields:
        The temporary folder to write into (it does not exist yet).
    """
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # of a run that stopped half-way
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_folder(partial, folder)


def replace_folder(complete: str | Path, folder: str | Path) -> None:
    """Put the folder ``complete`` in the place of ``folder``: the old one is moved aside first and removed last,
    so a complete folder exists at every moment."""
    complete, folder = Path(complete), Path(folder)
    previous = folder.with_name(folder.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(complete, folder)
    shutil.rmtree(previous, ignore_errors=True)


def push_folder(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
                **upload_kwargs: Any) -> str:
    """Create ``repo_id`` on the Hub if needed and upload ``folder`` to it in one commit.

    Returns:
        The commit URL. Extra keyword arguments go to :meth:`HfApi.upload_folder`.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return str(api.upload_folder(repo_id=repo_id, folder_path=folder, **upload_kwargs))


class HubModel(
    PyTorchModelHubMixin,
    library_name=LIBRARY_NAME,
    repo_url=REPO_URL,
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["defgan", "facial-expression-editing", "action-units", "gan", "image-to-image"],
    model_card_template=files("defgan_hf").joinpath("model_card.md").read_text(encoding="utf-8"),
):
    """Hub loading and saving for defgan-hf networks: safetensors only, strict, with subfolders."""

    _hub_mixin_config: dict[str, Any] | None

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[T],
        pretrained_model_name_or_path: str | Path,
        *,
        subfolder: str | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> T:
        """Load from a local folder or a Hub repo id; ``subfolder`` selects one network of a DefGAN repo.

        Extra keyword arguments: ``map_location`` (default ``"cpu"``), ``strict`` (default True) and
        constructor arguments that override ``config.json``.
        """
        hub_kwargs = dict(force_download=force_download, token=token, cache_dir=cache_dir,
                          local_files_only=local_files_only, revision=revision)
        if subfolder:
            pretrained_model_name_or_path = resolve_folder(pretrained_model_name_or_path, subfolder, **hub_kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **hub_kwargs, **model_kwargs)

    @classmethod
    def _from_pretrained(
        cls: type[T],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict[str, Any] | None = None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> T:
        if config is None:
            raise FileNotFoundError(f"{model_id} has no {CONFIG_NAME}; save models with save_pretrained.")
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"{CONFIG_NAME} of {model_id} has settings {unknown} that {cls.__name__} does not take "
                f"(it takes {sorted(known)}); is this folder a {cls.__name__}?"
            )
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            weights_file = Path(model_id) / SAFETENSORS_SINGLE_FILE
            if not weights_file.is_file():
                raise FileNotFoundError(
                    f"{model_id} has no {SAFETENSORS_SINGLE_FILE}; defgan-hf reads only safetensors weights "
                    "(never pickled .bin/.pt files). Convert the weights with safetensors.torch.save_model."
                )
        else:
            try:
                weights_file = Path(hf_hub_download(repo_id=model_id, filename=SAFETENSORS_SINGLE_FILE,
                                                    revision=revision, cache_dir=cache_dir,
                                                    force_download=force_download, token=token,
                                                    local_files_only=local_files_only))
            except EntryNotFoundError as error:
                raise FileNotFoundError(
                    f"{model_id} has no {SAFETENSORS_SINGLE_FILE}; defgan-hf reads only safetensors weights."
                ) from error
        load_weights(model, weights_file, map_location, strict)
        model.to(map_location).eval()
        return model

    def save_pretrained(  # type: ignore[override]
        self, save_directory: str | Path, *, subfolder: str | None = None, **kwargs: Any
    ) -> str | None:
        """Save ``config.json``, ``model.safetensors`` and a ``README.md`` model card.

        With ``subfolder``, save the network as one component of a larger repo: config and weights
        go to ``save_directory/subfolder`` and the repo's own model card is left to its owner.
        """
        if subfolder is None:
            return super().save_pretrained(save_directory, **kwargs)
        if kwargs:
            raise TypeError(f"save_pretrained(subfolder=...) takes no other options, got {sorted(kwargs)}.")
        folder = Path(save_directory) / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)
        (folder / CONFIG_NAME).write_text(json.dumps(self._hub_mixin_config, sort_keys=True, indent=2))
        return None

    def usage_example(self) -> str:
        """Python code that loads this model and runs it, for the model card."""
        return f'from defgan_hf import {type(self).__name__}\n\nmodel = {type(self).__name__}.from_pretrained("REPO_ID_OR_FOLDER")'

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        kwargs.setdefault("model_class", type(self).__name__)
        kwargs.setdefault("default_usage", self.usage_example())
        return super().generate_model_card(*args, **kwargs)
