import math

import pytest
import torch

from defgan_hf.losses import (
    composition_loss,
    critic_loss,
    cycle_loss,
    expression_loss,
    generator_critic_loss,
    gradient_penalty,
    grid_regularizer,
    identity_loss,
    mask_regularizer,
)
from defgan_hf.warp import bounded_offset_grid, identity_grid


def grid_with_offset_px(dx: float, dy: float, size: int = 5, max_offset: float = 5.0) -> torch.Tensor:
    raw = torch.empty(1, 2, size, size)
    raw[:, 0], raw[:, 1] = math.atanh(dx / max_offset), math.atanh(dy / max_offset)
    return bounded_offset_grid(raw, max_offset)


def test_critic_losses_by_hand():
    real = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    fake = torch.tensor([[0.0, 2.0], [4.0, -2.0]]).view(2, 1, 1, 2)
    assert critic_loss(real, fake).item() == pytest.approx(1.0 - 2.0)
    assert generator_critic_loss(fake).item() == pytest.approx(-1.0)


def linear_critic(weight: torch.Tensor):
    return lambda images: (images * weight).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1)


def test_gradient_penalty_is_zero_for_a_unit_norm_gradient():
    weight = torch.randn(3, 4, 4)
    weight /= weight.norm()
    real, fake = torch.rand(6, 3, 4, 4), torch.rand(6, 3, 4, 4)
    assert gradient_penalty(linear_critic(weight), real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_by_hand_and_differentiable():
    weight = torch.full((3, 4, 4), 0.5, requires_grad=True)  # gradient norm 0.5 · √48
    penalty = gradient_penalty(linear_critic(weight), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    assert penalty.item() == pytest.approx((0.5 * math.sqrt(48) - 1) ** 2, rel=1e-5)
    penalty.backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_gradient_penalty_runs_in_float32_under_autocast():
    weight = torch.randn(3, 4, 4, dtype=torch.float32)
    weight /= weight.norm()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(linear_critic(weight), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    assert penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_expression_loss_by_hand():
    predicted = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert expression_loss(predicted, target).item() == pytest.approx((0.25 + 0 + 1 + 0) / 4)


def test_cycle_loss_by_hand():
    image = torch.zeros(1, 3, 2, 2)
    reconstruction = image.clone()
    reconstruction[0, 0, 0, 0] = 1.2
    assert cycle_loss(reconstruction, image).item() == pytest.approx(1.2 / 12)


def test_identity_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    assert identity_loss(a, b).item() == pytest.approx(((1 - 0) + (1 - 1)) / 2)


def test_composition_loss_by_hand_in_pixels():
    size = 9
    identity = identity_grid(1, size, size)
    assert composition_loss(identity, identity).item() == pytest.approx(0.0, abs=1e-10)
    # Forward grid shifted by (1, 2) px composed with the identity: error 1² + 2² = 5 px² everywhere.
    assert composition_loss(grid_with_offset_px(1.0, 2.0, size=size), identity).item() == pytest.approx(5.0, rel=1e-4)
    # A cycle that undoes the shift: zero error wherever neither read is clamped at the border.
    there, back = grid_with_offset_px(1.0, 2.0, size=size), grid_with_offset_px(-1.0, -2.0, size=size)
    clamped_rows, clamped_cols = 2 * 2, 2 * 1
    interior_share = (size - clamped_rows) * (size - clamped_cols) / size**2
    assert composition_loss(there, back).item() < (1 - interior_share) * 5.0 + 1e-4


def test_grid_regularizer_by_hand():
    # A constant 3-px shift along x: (G − Id)² = 9 px², no variation.
    assert grid_regularizer(grid_with_offset_px(3.0, 0.0), eye_weight=0.1, tv_weight=1.0).item() == pytest.approx(
        0.9, rel=1e-4
    )
    # A single 1-px displacement in a 5×5 field: mean 1/25, total variation 4 neighbours × 1².
    raw = torch.zeros(1, 2, 5, 5)
    raw[0, 1, 2, 2] = math.atanh(1.0 / 5.0)
    value = grid_regularizer(bounded_offset_grid(raw, 5.0), eye_weight=1.0, tv_weight=1.0).item()
    assert value == pytest.approx(1 / 25 + 4, rel=1e-4)


def test_mask_regularizer_by_hand():
    mask = torch.zeros(2, 1, 3, 3)
    mask[0, 0, 1, 1] = 1.0  # sample 0: mean 1/9, TV 4; sample 1: zeros
    assert mask_regularizer(mask, eye_weight=0.5, tv_weight=0.25).item() == pytest.approx(
        0.5 * (1 / 9) / 2 + 0.25 * 4 / 2
    )


def _smile_teaching_case():
    """Small generators, the shipped motion model at 64 px, and a batch of two faces (one mirrored) asked to smile."""
    from defgan_hf import DEFAULT_MODEL, AU_NAMES, DefGAN, DeformationGenerator, TextureGenerator
    from defgan_hf.motion import MotionModel
    from defgan_hf.objective import EditBatch

    torch.manual_seed(0)
    size = 64
    motion = MotionModel.from_pretrained(DEFAULT_MODEL, subfolder="motion", image_size=size)  # fitted at 128 px
    motion.displacements.mul_(size / 128)
    motion.mean_landmarks.copy_((motion.mean_landmarks + 0.5) * size / 128 - 0.5)
    sizes = dict(image_size=size, width=8, num_res_blocks=1, conditioning="change")
    model = DefGAN(TextureGenerator(**sizes), DeformationGenerator(**sizes, max_offset=8.0))
    landmarks = torch.cat([motion.mean_landmarks, motion.mean_landmarks[:10]]).expand(2, -1, -1)
    source = torch.zeros(2, 17)
    target = source.clone()
    target[:, AU_NAMES.index("AU12")], target[:, AU_NAMES.index("AU25")] = 0.9, 0.8
    batch = EditBatch(torch.rand(2, 3, size, size) * 2 - 1, source, target, landmarks, torch.tensor([False, True]))
    return model, motion, batch


def test_a_training_step_with_the_motion_teacher_lowers_the_teacher_loss():
    """On a fixed batch, a few generator updates with only the teacher's term move the grid toward the teacher's."""
    from defgan_hf import Discriminator
    from defgan_hf.objective import LossWeights, generator_objective

    model, motion, batch = _smile_teaching_case()
    discriminator = Discriminator(image_size=model.image_size, width=8, num_layers=3)
    only_teacher = LossWeights(**{**dict.fromkeys(LossWeights.__dataclass_fields__, 0.0), "motion_teacher": 1.0})
    optimizer = torch.optim.Adam(model.deformer.parameters(), lr=1e-4)
    losses = []
    for _ in range(30):
        loss, terms = generator_objective(model, discriminator, batch, only_teacher, texture_only=False,
                                          motion_model=motion)
        losses.append(terms["generator/motion_teacher"].item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] > 0.1, "the teacher asks for a visible smile"
    assert losses[-1] < 0.5 * losses[0], losses


def test_motion_pretraining_teaches_the_deformer_and_reaches_every_generator_parameter():
    """The pre-adversarial objective: the per-AU fields move toward the motion model's, and both generators get a
    gradient (the texture generator's from holding the edit to the motion-only edit), as distributed training
    needs of every parameter."""
    from defgan_hf.objective import motion_pretraining_objective

    model, motion, batch = _smile_teaching_case()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(60):
        loss, terms = motion_pretraining_objective(model, batch, motion)
        losses.append(terms["pretraining/au_fields"].item())
        optimizer.zero_grad()
        loss.backward()
        if len(losses) == 1:
            assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
    # Half the error of fields of zero (the identity warp's, 1 relative to each AU's motion), on a fixed batch.
    assert losses[0] > 0.9 and losses[-1] < 0.5, losses


def test_motion_pretraining_teaches_the_mask_to_open_where_the_lips_part():
    """With the mouth-interior teacher, the texture generator learns to paint where the edit opens the mouth, and the
    edit there comes nearer the inside of a mouth."""
    from defgan_hf.face_regions import opened_mouth_mask
    from defgan_hf.objective import MOUTH_INTERIOR_RGB, motion_pretraining_objective

    model, motion, batch = _smile_teaching_case()
    with torch.no_grad():
        edit = model(batch.real, batch.source_aus, batch.target_aus, batch.landmarks)
        landmarks = batch.landmarks[:, : motion.num_landmarks]
        moved = landmarks + motion.edit_motion(batch.source_aus, batch.target_aus, batch.mirrored)
        opened = opened_mouth_mask(landmarks, moved, edit.grid) > 0
    assert opened.sum() > 10, "the lips part by pixels"
    inside = torch.tensor(MOUTH_INTERIOR_RGB).reshape(1, 3, 1, 1) / 127.5 - 1.0
    optimizer = torch.optim.Adam(model.texturer.parameters(), lr=1e-3)
    lessons, masks, errors = [], [], []
    for _ in range(60):
        loss, terms = motion_pretraining_objective(model, batch, motion, mouth_interior=1.0)
        lessons.append(terms["pretraining/mouth_interior"].item())
        edit = model(batch.real, batch.source_aus, batch.target_aus, batch.landmarks)
        masks.append(edit.mask.detach()[opened].mean().item())
        errors.append((edit.image.detach() - inside).abs().mean(dim=1, keepdim=True)[opened].mean().item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert lessons[-1] < 0.1 * lessons[0], lessons  # mostly by shutting the mask around the opening
    assert masks[0] + 0.1 < masks[-1] and masks[-1] > 0.5, masks  # and by opening it there
    assert errors[-1] < 0.7 * errors[0], errors
    without, terms = motion_pretraining_objective(model, batch, motion)
    assert "pretraining/mouth_interior" not in terms


def test_the_generator_objective_computes_no_gradient_for_the_critic():
    """The critic is not updated in the generator step: the backward pass reaches the edits through it, not its weights."""
    from defgan_hf import Discriminator
    from defgan_hf.objective import LossWeights, generator_objective

    model, _, batch = _smile_teaching_case()
    discriminator = Discriminator(image_size=model.image_size, width=8, num_layers=3)
    loss, _ = generator_objective(model, discriminator, batch, LossWeights(), texture_only=False)
    loss.backward()
    assert all(parameter.grad is None for parameter in discriminator.parameters())
    assert all(parameter.grad is not None for parameter in model.texturer.parameters())
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.deformer.parameters())


def _opening_mouth_pair():
    """A pair of 'frames' of one face whose lips part: in the second, a dark gap between the lips, which warping
    the first by the landmarks' motion cannot bring (it stretches the lips)."""
    from defgan_hf import AU_NAMES
    from defgan_hf.data import FramePair

    model, motion, batch = _smile_teaching_case()
    model.mask_regions = True
    size = model.image_size
    landmarks = batch.landmarks
    parted = landmarks.clone()
    parted[:, 14, 1] += 3.0  # the inner lower lip drops
    rows = torch.linspace(0.2, 0.6, size)
    source = (rows[None, None, :, None] * torch.tensor([1.0, 0.7, 0.6])[None, :, None, None]).repeat(2, 1, 1, size)
    x, y = landmarks[0, 13].round().long().tolist()
    source[:, :, y, x - 4 : x + 5] = -0.3  # where the lips meet
    target = source.clone()
    gap = (slice(None), slice(None), slice(y, y + 3), slice(x - 4, x + 5))
    target[gap] = -1.0  # the dark inside of the mouth
    source_aus, target_aus = torch.zeros(2, 17), torch.zeros(2, 17)
    target_aus[:, AU_NAMES.index("AU25")] = 0.8
    pair = FramePair(source.contiguous(), source_aus, landmarks, target, target_aus, parted, batch.mirrored)
    return model, motion, pair, gap


def test_texture_pretraining_teaches_the_texture_what_the_warp_misses_only_where_the_changed_aus_act():
    """On a fixed pair, the texture darkens the gap the lips open and the mask opens there, while it stays zero
    outside the mouth's region; both generators get a gradient; the texture-only ablation learns from the same
    pair without a warp."""
    from defgan_hf import DefGAN
    from defgan_hf.face_regions import changed_region_mask
    from defgan_hf.objective import LossWeights, texture_pretraining_objective

    model, motion, pair, gap = _opening_mouth_pair()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(50):
        loss, _ = texture_pretraining_objective(model, pair, LossWeights(), texture_only=False, motion_model=motion)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
    grid = motion.landmark_grid(pair.source_landmarks, pair.target_landmarks - pair.source_landmarks)
    with torch.no_grad():
        edit = model(pair.source, pair.source_aus, pair.target_aus, pair.source_landmarks, grid)
    # The warp leaves the gap lip-coloured; the texture darkens it.
    warp_error = (edit.deformed - pair.target)[gap].abs().mean()
    assert (edit.image - pair.target)[gap].abs().mean() < 0.5 * warp_error, warp_error
    assert edit.mask[gap].mean() > 0.5
    region = changed_region_mask(pair.source_landmarks, pair.source_aus, pair.target_aus, model.image_size)
    assert edit.mask[region == 0].abs().max() == 0

    texture_only = DefGAN(model.texturer, mask_regions=True)
    loss, terms = texture_pretraining_objective(texture_only, pair, LossWeights(), texture_only=True)
    assert "texture_pretraining/au_fields" not in terms and torch.isfinite(loss)
    with pytest.raises(ValueError, match="needs a motion model"):
        texture_pretraining_objective(model, pair, LossWeights(), texture_only=False)
