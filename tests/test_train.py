"""The training script end to end, as a user runs it: separate processes, real files."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port
from PIL import Image

from defgan_hf import AU_NAMES, DefGAN, Discriminator
from defgan_hf.data import au_table_header, au_table_row

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "32", "--generator_width", "8", "--generator_res_blocks", "1",
        "--discriminator_width", "8", "--discriminator_layers", "3", "--train_batch_size", "4",
        "--dataloader_num_workers", "0", "--identity_model", "none", "--logger", "none"]  # fmt: skip


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    """24 small pictures with smooth colour blobs and AU labels, laid out as defgan-annotate writes them."""
    folder = tmp_path_factory.mktemp("faces")
    (folder / "imgs").mkdir()
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:48, 0:48] / 47.0
    with open(folder / "aus.csv", "w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(au_table_header())
        for index in range(24):
            cx, cy, r = rng.uniform(0.3, 0.7, 3)
            blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (0.05 + 0.1 * r))
            colour = rng.uniform(0, 255, 3)
            pixels = (blob[..., None] * colour + (1 - blob[..., None]) * rng.uniform(0, 255, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "imgs" / f"face_{index:02d}.png")
            writer.writerow(au_table_row(f"face_{index:02d}.png", rng.uniform(0, 1, len(AU_NAMES)), digits=2))
    return folder


def train_command(*args: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, str(ROOT / "train_accelerate.py"), *args]
    # The shipped two-CPU-process configuration, on a free port.
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(ROOT / "configs" / "accelerate" / "cpu.yaml"), "--num_processes", str(processes),
            "--main_process_port", str(free_port()), str(ROOT / "train_accelerate.py"), *args]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_two_process_cpu_training_writes_a_loadable_hub_folder(face_folder, tmp_path):
    out = tmp_path / "run"
    result = run(train_command("--data_dir", str(face_folder), "--output_dir", str(out), *TINY,
                               "--max_train_steps", "4", "--critic_steps", "2", "--checkpointing_steps", "2",
                               "--sample_steps", "2", "--logger", "tensorboard", processes=2))
    assert result.returncode == 0, result.stderr[-3000:]
    model = DefGAN.from_pretrained(out / "model")
    discriminator = Discriminator.from_pretrained(out / "model", subfolder="discriminator")
    assert not model.texture_only and model.image_size == 32 and discriminator.image_size == 32
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (out / "samples" / "step-0000002.png").is_file()
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    card = (out / "model" / "README.md").read_text()
    assert "accelerate launch train_accelerate.py" in card and "--max_train_steps 4" in card
    assert "generator/cycle" in card and "critic/gradient_penalty" in card
    # Each process wrote its own RNG state: the run really had two processes.
    assert {p.name for p in (out / "checkpoint-4").glob("random_states_*.pkl")} == {
        "random_states_0.pkl", "random_states_1.pkl"}


def test_run_killed_after_its_first_checkpoint_resumes_to_the_requested_step(face_folder, tmp_path):
    out = tmp_path / "run"
    # Batches of one: 24 steps per epoch, so the kill lands long before the first epoch's model folder.
    args = ["--data_dir", str(face_folder), "--output_dir", str(out), *TINY, "--train_batch_size", "1",
            "--max_train_steps", "30", "--critic_steps", "2", "--checkpointing_steps", "3", "--sample_steps", "100"]
    process = subprocess.Popen(train_command(*args), env=environment(), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-3").is_dir():
        assert process.poll() is None, "the run ended before writing its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "model").exists(), "killed too late: the run had finished an epoch"
    result = run(train_command(*args, "--resume_from_checkpoint", "latest"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in result.stderr
    resumed_at = int(result.stderr.split("at step ")[1].split(".")[0])
    assert resumed_at >= 3
    assert (out / "checkpoint-30").is_dir()
    assert "after 30 steps" in (out / "model" / "README.md").read_text()
    state = torch.load(out / "checkpoint-30" / "custom_checkpoint_0.pkl", weights_only=False)
    assert state == {"global_step": 30}


def process_state(pid: int) -> str:
    """The state word of ``/proc/PID/status`` ("sleeping", "zombie", …), or "" once the process is gone."""
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return ""


def test_a_second_run_on_a_folder_a_live_run_writes_is_refused_until_that_run_dies(face_folder, tmp_path):
    out = tmp_path / "run"
    args = ["--data_dir", str(face_folder), "--output_dir", str(out), *TINY, "--train_batch_size", "1",
            "--max_train_steps", "100000", "--checkpointing_steps", "2", "--sample_steps", "100000"]
    short = [*args[:-4], "--max_train_steps", "1", "--critic_steps", "1"]
    # Two processes, in a session of their own like the launcher's workers.
    first = subprocess.Popen(train_command(*args, processes=2), env=environment(), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint-2").is_dir():
            assert first.poll() is None, "the first run ended early"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        workers = [int(path.read_text().split()[1].rstrip(":")) for path in out.glob(".run-*.holder")]
        second = run(train_command(*short))
        assert second.returncode != 0
        assert "is being written by a live training run" in second.stderr and "--output_dir" in second.stderr
        assert "(process " in second.stderr and "train_accelerate.py" in second.stderr  # names the holder
        os.killpg(first.pid, signal.SIGKILL)  # the launcher, not the workers, which have sessions of their own
        first.wait()
        still_held = run(train_command(*short))
        assert still_held.returncode != 0 and "is being written by a live training run" in still_held.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        # The workers, found by the processes the lock files name.
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while any(state and "zombie" not in state for state in map(process_state, workers)):
            assert time.monotonic() < deadline, "the workers outlived SIGKILL"
            time.sleep(0.05)
    assert len(workers) == 2
    # Its holders gone, the folder is free: a run resumes it.
    third = run(train_command(*args[:-4], "--max_train_steps", "3", "--critic_steps", "1",
                              "--resume_from_checkpoint", "latest"))  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]


def test_texture_only_trains_with_augmentation_and_one_au_targets_and_saves_without_a_deformer(face_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    result = run(train_command("--data_dir", str(face_folder), "--output_dir", str(out), *TINY,
                               "--max_train_steps", "2", "--critic_steps", "1", "--texture_only", "--augment",
                               "--single_au_targets", "0.5", "--logger", "trackio", "--sample_steps", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "trackio" / "defgan.db").is_file()
    model = DefGAN.from_pretrained(out / "model")
    assert model.texture_only
    assert json.loads((out / "model" / "config.json").read_text())["texture_only"] is True


def test_bf16_autocast_trains_with_the_gradient_penalty_in_fp32(face_folder, tmp_path):
    out = tmp_path / "run"
    result = run(train_command("--data_dir", str(face_folder), "--output_dir", str(out), *TINY,
                               "--max_train_steps", "2", "--critic_steps", "1", "--mixed_precision", "bf16"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert DefGAN.from_pretrained(out / "model").image_size == 32


def test_prepared_critic_leaves_precision_to_each_call_so_the_penalty_runs_in_fp32(face_folder, tmp_path):
    """accelerate wraps a prepared model's forward in autocast; the trainer removes that from the critic."""
    from accelerate import Accelerator
    from train_accelerate import Trainer, parse_args

    args = parse_args(["--data_dir", str(face_folder), "--output_dir", str(tmp_path), *TINY])
    with pytest.warns(UserWarning, match="without the face identity loss"):  # --identity_model none says so
        trainer = Trainer.create(args, Accelerator(mixed_precision="bf16", cpu=True))
    critic = trainer.accelerator.unwrap_model(trainer.discriminator)
    dtypes = []
    hook = critic.trunk[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", enabled=False):  # as inside gradient_penalty
        trainer.discriminator(image)
    with trainer.accelerator.autocast():  # as for the critic's scores
        trainer.discriminator(image)
    hook.remove()
    assert dtypes == [torch.float32, torch.bfloat16]


@pytest.fixture(scope="module")
def published_model(face_folder, tmp_path_factory) -> Path:
    """A model folder of a one-step run, published as training writes it: the base of the fine-tuning tests."""
    out = tmp_path_factory.mktemp("published")
    result = run(train_command("--data_dir", str(face_folder), *TINY, "--max_train_steps", "1", "--critic_steps", "1",
                               "--output_dir", str(out)))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "model"


def test_fine_tuning_starts_from_a_published_model(face_folder, published_model, tmp_path):
    second = tmp_path / "second"
    common = ["--data_dir", str(face_folder), *TINY, "--max_train_steps", "1", "--critic_steps", "1"]
    result = run(train_command(*common, "--output_dir", str(second), "--pretrained_model", str(published_model),
                               "--learning_rate", "0"))
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = DefGAN.from_pretrained(published_model), DefGAN.from_pretrained(second / "model")
    for key, value in before.state_dict().items():
        assert torch.equal(value, after.state_dict()[key]), key  # lr 0: fine-tuning kept the published weights


def test_fine_tuning_can_add_au_modulation_without_changing_the_edits(face_folder, published_model, tmp_path):
    second = tmp_path / "second"
    common = ["--data_dir", str(face_folder), *TINY, "--max_train_steps", "1", "--critic_steps", "1"]
    result = run(train_command(*common, "--output_dir", str(second), "--pretrained_model", str(published_model),
                               "--au_modulation", "--learning_rate", "0"))
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = DefGAN.from_pretrained(published_model), DefGAN.from_pretrained(second / "model")
    assert after.deformer.au_modulation and after.texturer.au_modulation
    generator = torch.Generator().manual_seed(0)
    face, source, target = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1, *torch.rand(2, 2, 17, generator=generator)
    with torch.no_grad():
        assert torch.equal(before(face, source, target).image, after(face, source, target).image)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(face_folder, tmp_path):
    out = tmp_path / "run"
    result = run(train_command("--data_dir", str(face_folder), "--output_dir", str(out), *TINY,
                               "--max_train_steps", "6", "--critic_steps", "3", "--checkpointing_steps", "1",
                               "--lambda_cycle", "nan"))
    assert result.returncode != 0
    assert "generator/total became non-finite between step 2 and step 3" in result.stderr
    assert "Last good checkpoint" in result.stderr and "checkpoint-2" in result.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    from train_accelerate import learning_rate_factor

    factors = [learning_rate_factor(step, max_train_steps=40, decay_steps=20) for step in range(41)]
    assert factors[:21] == [1.0] * 21
    assert factors[30] == pytest.approx(0.5)
    assert factors[40] == 0.0
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_missing_data_dir_fails_fast_with_a_clear_message(tmp_path):
    result = run(train_command("--data_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out")))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


def test_data_dir_without_labelled_faces_fails_before_training(tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "data" / "unlabelled.png")
    result = run(train_command("--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"), *TINY))
    assert result.returncode != 0
    assert "found 1 image" in result.stderr
    assert not (tmp_path / "out" / "model").exists()


def test_the_motion_model_is_fitted_and_saved_with_the_model(face_folder, small_motion_set, tmp_path):
    from defgan_hf.motion import MotionModel

    common = ["--data_dir", str(face_folder), *TINY, "--max_train_steps", "1", "--critic_steps", "1"]
    result = run(train_command(*common, "--output_dir", str(tmp_path / "run"), "--motion_model", str(small_motion_set)))
    assert result.returncode == 0, result.stderr[-3000:]
    motion = MotionModel.from_pretrained(tmp_path / "run" / "model", subfolder="motion")
    assert motion.image_size == 32 and "AU12" in motion.supported_aus
    # Fine-tuning keeps it; a folder that is neither a model nor an annotated set is refused by name.
    result = run(train_command(*common, "--output_dir", str(tmp_path / "tuned"), "--pretrained_model",
                               str(tmp_path / "run" / "model")))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tuned = MotionModel.from_pretrained(tmp_path / "tuned" / "model", subfolder="motion")
    assert torch.equal(tuned.displacements, motion.displacements)
    result = run(train_command(*common, "--output_dir", str(tmp_path / "bad"), "--motion_model", str(face_folder)))
    assert result.returncode != 0 and "neither a model" in result.stderr


def test_motion_pretraining_comes_first_then_the_adversarial_steps(small_motion_set, tmp_path):
    """The deformation generator is taught the motion model's fields, then the paper's objective takes over."""
    from defgan_hf.motion import MotionModel

    out = tmp_path / "run"
    result = run(train_command("--data_dir", str(small_motion_set), "--output_dir", str(out), *TINY,
                               "--conditioning", "change", "--mask_regions", "--landmark_input", "--motion_pretraining_steps", "2",
                               "--motion_field_step", "0.8", "--motion_spline_resolution", "16", "--motion_smoothing",
                               "0.005", "--lambda_motion_teacher", "1", "--max_train_steps", "3", "--critic_steps", "1",
                               "--inner_brow_combination", "--arrival_steps", "2", "--deformation_bound", "clamp"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (out / "model" / "README.md").read_text()
    for term in ("pretraining/au_fields", "pretraining/texture", "critic/wasserstein", "generator/motion_teacher"):
        assert term in card, term
    model = DefGAN.from_pretrained(out / "model")
    assert model.deformer.conditioning == "change" and model.deformer.landmark_input
    assert model.deformer.inner_brow_combination  # the brows move as in FACS's 1+4, as its teacher's do
    assert (model.deformer.arrival_steps, model.deformer.bound) == (2, "clamp")
    motion = MotionModel.from_pretrained(out / "model", subfolder="motion")
    assert motion.field_step == 0.8 and motion.inner_brow_combination
    assert motion.spline_resolution == 16 and motion.smoothing == 0.005
    refused = run(train_command("--data_dir", str(small_motion_set), "--output_dir", str(tmp_path / "no"), *TINY,
                                "--motion_pretraining_steps", "2", "--max_train_steps", "3"))  # fmt: skip
    assert refused.returncode != 0 and "needs one with --conditioning change" in refused.stderr
    refused = run(train_command("--data_dir", str(small_motion_set), "--output_dir", str(tmp_path / "no"), *TINY,
                                "--conditioning", "change", "--inner_brow_combination", "--max_train_steps", "3"))
    assert refused.returncode != 0 and "add --conditioning change and --landmark_input" in refused.stderr
    refused = run(train_command("--data_dir", str(small_motion_set), "--output_dir", str(tmp_path / "no"), *TINY,
                                "--arrival_steps", "2", "--max_train_steps", "3"))  # fmt: skip
    assert refused.returncode != 0 and "per-AU fields: add --conditioning change" in refused.stderr
    # Fine-tuning it with a motion model fitted again, without the flag, would teach the brows a sum of motions.
    refused = run(train_command("--data_dir", str(small_motion_set), "--output_dir", str(tmp_path / "no"), *TINY,
                                "--pretrained_model", str(out / "model"), "--motion_model", str(small_motion_set),
                                "--max_train_steps", "3"))  # fmt: skip
    assert refused.returncode != 0 and "must move the brows alike" in refused.stderr


def test_the_mouth_interior_can_be_taught_longer_with_the_deformer_frozen(small_motion_set, tmp_path):
    """Motion pretraining with the mouth-interior teacher, then more of it from that model with the deformation
    generator frozen: its weights stay as they were, the texture generator's move."""
    common = ["--data_dir", str(small_motion_set), *TINY, "--conditioning", "change", "--mask_regions",
              "--landmark_input", "--lambda_mouth_interior", "1", "--motion_pretraining_steps", "2",
              "--max_train_steps", "2"]  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    result = run(train_command(*common, "--output_dir", str(first)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretraining/mouth_interior" in (first / "model" / "README.md").read_text()
    result = run(train_command(*common, "--output_dir", str(second), "--pretrained_model", str(first / "model"),
                               "--freeze_deformer", "--arrival_steps", "3"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = DefGAN.from_pretrained(first / "model"), DefGAN.from_pretrained(second / "model")
    assert (before.deformer.arrival_steps, after.deformer.arrival_steps) == (0, 3)  # composed otherwise, same weights
    for key, value in before.deformer.state_dict().items():
        assert torch.equal(value, after.deformer.state_dict()[key]), key
    assert any(not torch.equal(value, after.texturer.state_dict()[key])
               for key, value in before.texturer.state_dict().items())  # fmt: skip
    refused = run(train_command(*common, "--output_dir", str(tmp_path / "no"), "--texture_only", "--freeze_deformer"))
    assert refused.returncode != 0 and "--freeze_deformer" in refused.stderr


def test_texture_pretraining_learns_from_frame_pairs_after_the_motion_in_two_processes(small_motion_set, face_folder,
                                                                                      tmp_path):  # fmt: skip
    """Motion pretraining, then texture pretraining on the video's frame pairs, then the adversarial steps, with two
    processes (every parameter must get a gradient in every step); the texture-only ablation learns from the pairs
    too; a folder without a video's frames is refused by name."""
    common = ["--data_dir", str(small_motion_set), *TINY, "--conditioning", "change", "--mask_regions",
              "--critic_steps", "1"]  # fmt: skip
    out = tmp_path / "run"
    result = run(train_command(*common, "--output_dir", str(out), "--motion_pretraining_steps", "2",
                               "--texture_pretraining_steps", "2", "--frame_pairs", str(small_motion_set),
                               "--max_train_steps", "5", processes=2))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (out / "model" / "README.md").read_text()
    for term in ("texture_pretraining/reconstruction", "texture_pretraining/color", "texture_pretraining/au_fields",
                 "texture_pretraining/mask_selection", "critic/wasserstein"):  # fmt: skip
        assert term in card, term
    texture_only = run(train_command(*common, "--output_dir", str(tmp_path / "texture_only"), "--texture_only",
                                     "--texture_pretraining_steps", "2", "--frame_pairs", str(small_motion_set),
                                     "--max_train_steps", "2"))  # fmt: skip
    assert texture_only.returncode == 0, texture_only.stderr[-3000:]
    assert "texture_pretraining/reconstruction" in (tmp_path / "texture_only" / "model" / "README.md").read_text()
    no_pairs = run(train_command(*common, "--output_dir", str(tmp_path / "no_pairs"), "--texture_pretraining_steps",
                                 "2", "--max_train_steps", "2"))  # fmt: skip
    assert no_pairs.returncode != 0 and "--frame_pairs" in no_pairs.stderr
    no_video = run(train_command(*common, "--output_dir", str(tmp_path / "no_video"), "--texture_pretraining_steps",
                                 "2", "--frame_pairs", str(face_folder), "--max_train_steps", "2"))  # fmt: skip
    assert no_video.returncode != 0 and f"--frame_pairs {face_folder}" in no_video.stderr
