import pytest
import torch

from defgan_hf import (
    AU_NAMES,
    DefGAN,
    DeformationGenerator,
    Discriminator,
    TextureGenerator,
    TextureOutput,
)
from defgan_hf.models.defgan import with_au_modulation, with_field_composition
from defgan_hf.aus import au_vector
from defgan_hf.models.deformer import arrival_offsets, fields_grid
from defgan_hf.warp import grid_offsets_px, identity_grid

SIZE = 32
SMALL = dict(image_size=SIZE, width=8, num_res_blocks=1)


def small_defgan(texture_only: bool = False, au_modulation: bool = False) -> DefGAN:
    deformer = None if texture_only else DeformationGenerator(**SMALL, au_modulation=au_modulation)
    return DefGAN(TextureGenerator(**SMALL, au_modulation=au_modulation), deformer)


def batch(n: int = 2, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, size, size, generator=generator) * 2 - 1
    return image, torch.rand(n, 17, generator=generator), torch.rand(n, 17, generator=generator)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_at_default_widths_match_the_paper():
    assert 8.3e6 < count(TextureGenerator()) < 8.7e6
    assert 44.5e6 < count(Discriminator(image_size=128)) < 45.5e6
    # Same encoder as the texture generator; bilinear upsampling + 3×3 convs instead of transposed 4×4.
    assert 8.0e6 < count(DeformationGenerator()) < 8.5e6


def test_defgan_output_shapes_and_ranges():
    image, source, target = batch()
    out = small_defgan()(image, source, target)
    assert out.image.shape == out.deformed.shape == out.color.shape == (2, 3, SIZE, SIZE)
    assert out.mask.shape == (2, 1, SIZE, SIZE)
    assert out.grid.shape == (2, SIZE, SIZE, 2)
    assert out.color.min() >= -1 and out.color.max() <= 1
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    assert out.image.min() >= -1 and out.image.max() <= 1
    assert grid_offsets_px(out.grid).abs().max() <= 5.0 + 1e-4


def test_mask_selects_the_new_texture():
    """Paper's convention I_y = M·T + (1 − M)·I*_y (GANimation's code composes the other way round)."""
    model = small_defgan()
    image, source, target = batch()
    for mask_value, expected in [(1.0, "color"), (0.0, "deformed")]:
        model.texturer.forward = lambda img, aus, source=None, m=mask_value: TextureOutput(
            torch.full_like(img, 0.25), torch.full_like(img[:, :1], m)
        )
        out = model(image, source, target)
        assert torch.allclose(out.image, getattr(out, expected))
    assert not torch.allclose(out.deformed, torch.full_like(out.deformed, 0.25))


def test_texture_only_model_does_not_move_pixels():
    model = small_defgan(texture_only=True)
    assert model.texture_only and model.deformer is None
    image, source, target = batch()
    out = model(image, source, target)
    assert torch.equal(out.deformed, image)
    assert torch.equal(out.grid, identity_grid(2, SIZE, SIZE))


@pytest.mark.parametrize("au_modulation", [False, True])
def test_gradients_reach_every_parameter(au_modulation):
    model = small_defgan(au_modulation=au_modulation)
    discriminator = Discriminator(image_size=SIZE, width=8, num_layers=3)
    image, source, target = batch()
    out = model(image, source, target)
    critic, aus = discriminator(out.image)
    (critic.mean() + aus.mean() + out.image.square().mean() + out.mask.mean()).backward()
    for module in (model, discriminator):
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None, f"no gradient reaches {name}"
            assert parameter.grad.abs().sum() > 0, f"zero gradient at {name}"


def test_offset_bound_holds_whatever_the_weights():
    deformer = DeformationGenerator(**SMALL, max_offset=3.0)
    with torch.no_grad():
        deformer.offset_head.weight.normal_(std=1e3)
    image, source, target = batch()
    offsets = grid_offsets_px(deformer(image, source, target))
    assert offsets.abs().max() <= 3.0 + 1e-4
    assert offsets.abs().max() > 2.9


def test_discriminator_outputs():
    discriminator = Discriminator(image_size=64, width=8, num_layers=4)
    critic, aus = discriminator(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert critic.shape == (3, 1, 4, 4)
    assert aus.shape == (3, 17)


def test_the_critic_learns_the_aus_of_rendered_faces():
    """The AU head fits exact labels in a few hundred steps at the default model's learning rate: 400 renders of
    one face, held-out renders with new expressions, 400 steps (seconds on one CPU thread). With PyTorch's
    default initialisation the un-normalised trunk shrinks its features layer after layer, and the error stays
    above this bound (0.57 of the variance against 0.28)."""
    import numpy as np
    import torch.nn.functional as F

    from defgan_hf.synthetic import render_face, sample_aus, sample_identity

    def renders(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        aus = [sample_aus(rng) for _ in range(count)]
        images = torch.stack([render_face(identity, au, 64).to_tensor() for au in aus])
        return images, torch.from_numpy(np.stack(aus)).float()

    torch.manual_seed(0)
    identity = sample_identity(0, 0)
    (train_images, train_aus), (test_images, test_aus) = renders(400, 1), renders(200, 2)
    discriminator = Discriminator(image_size=64, width=16, num_layers=4)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    generator = torch.Generator().manual_seed(1)
    for _ in range(400):
        index = torch.randint(0, len(train_images), (16,), generator=generator)
        loss = F.mse_loss(discriminator(train_images[index]).aus, train_aus[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error = F.mse_loss(discriminator(test_images).aus.clamp(0, 1), test_aus)
    assert error < 0.35 * test_aus.var(0, unbiased=False).mean()


@pytest.mark.parametrize(
    "make",
    [
        lambda: TextureGenerator(image_size=30, num_downsamples=2),
        lambda: Discriminator(image_size=100, num_layers=6),
        lambda: DeformationGenerator(max_offset=0),
        lambda: DefGAN(TextureGenerator(**SMALL), DeformationGenerator(image_size=64, width=8, num_res_blocks=1)),
    ],
)
def test_inconsistent_sizes_are_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_wrong_input_shapes_say_what_is_expected():
    model = small_defgan()
    image, source, target = batch()
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        model(torch.rand(2, 3, 64, 64), source, target)
    with pytest.raises(ValueError, match="target_aus"):
        model(image, source, target[:, :5])
    with pytest.raises(ValueError, match="source_aus"):
        model(image, source[:1], target)


def test_au_modulation_is_added_at_zero_to_a_trained_model():
    torch.manual_seed(0)
    model = small_defgan().eval()
    modulated = with_au_modulation(model).eval()
    assert modulated.deformer.au_modulation and modulated.texturer.au_modulation
    assert with_au_modulation(modulated).deformer is modulated.deformer  # already modulated: unchanged
    image, source, target = batch()
    with torch.no_grad():
        before, after = model(image, source, target), modulated(image, source, target)
    assert torch.equal(before.grid, after.grid) and torch.equal(before.image, after.image)


# Conditioning on the AU change, and texture confined to the changed AUs' regions (not in the paper).


def change_conditioned_defgan(size: int = SIZE, landmark_input: bool = False) -> DefGAN:
    sizes = dict(image_size=size, width=8, num_res_blocks=1, conditioning="change")
    return DefGAN(TextureGenerator(**sizes, upsampling="bilinear", au_modulation=True),
                  DeformationGenerator(**sizes, landmark_input=landmark_input), mask_regions=True)  # fmt: skip


def face_landmarks(size: int, n: int = 2) -> torch.Tensor:
    """A made-up face mesh: the 478 points of a mean face (the default model's motion model) scaled to ``size``."""
    from defgan_hf import DEFAULT_MODEL
    from defgan_hf.motion import MotionModel

    mean = MotionModel.from_pretrained(DEFAULT_MODEL, subfolder="motion").mean_landmarks
    points = torch.cat([mean, mean[:10]])  # irises: any points inside the face will do here
    return ((points + 0.5) * size / 128 - 0.5).expand(n, -1, -1)


def trained_a_little(model: DefGAN) -> DefGAN:
    """Give every weight a value away from its initialisation, so that the tests do not pass by zero weights."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.parametrize("landmark_input", [False, True])
def test_an_edit_that_changes_no_au_returns_the_crop(landmark_input):
    torch.manual_seed(0)
    model = trained_a_little(change_conditioned_defgan(landmark_input=landmark_input))
    image, source, _ = batch()
    out = model(image, source, source, face_landmarks(SIZE))
    assert torch.equal(out.grid, identity_grid(2, SIZE, SIZE)) and not out.mask.any()
    assert (out.image - image).abs().max() <= 1 / 255
    changed = model(image, source, (source + 0.5).clamp(0, 1), face_landmarks(SIZE))
    assert grid_offsets_px(changed.grid).abs().max() > 0 and changed.mask.max() > 0


def test_a_change_conditioned_deformer_is_a_sum_of_per_au_fields_weighted_by_the_change():
    torch.manual_seed(0)
    deformer = trained_a_little(change_conditioned_defgan()).deformer
    image, source, target = batch()
    fields = deformer.au_fields(image)
    assert fields.shape == (2, 17, 2, SIZE, SIZE)
    # One AU changed: the offset is that AU's field times the change (before the tanh bound).
    one = source.clone()
    one[:, 3] = (source[:, 3] + 0.1).clamp(max=1.0)
    change = (one - source)[:, 3, None, None, None]
    offsets = grid_offsets_px(deformer(image, source, one)).permute(0, 3, 1, 2)
    expected = deformer.max_offset * torch.tanh(change * fields[:, 3] / deformer.max_offset)
    assert torch.allclose(offsets, expected, atol=1e-4)
    with pytest.raises(ValueError, match="au_modulation needs conditioning='paper'"):
        DeformationGenerator(image_size=SIZE, width=8, num_res_blocks=1, conditioning="change", au_modulation=True)


def test_a_deformer_that_reads_landmarks_moves_its_fields_with_them_and_asks_for_them(tmp_path):
    torch.manual_seed(0)
    deformer = trained_a_little(change_conditioned_defgan(64, landmark_input=True)).deformer
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    landmarks = face_landmarks(64, 1)
    fields = deformer.au_fields(image, landmarks)
    # The same photo with the face's landmarks 6 px lower: the network reads where the features are.
    lowered = deformer.au_fields(image, landmarks + torch.tensor([0.0, 6.0]))
    assert (lowered - fields).abs().mean() > 0.05 * fields.abs().mean()
    with pytest.raises(ValueError, match="pass its landmarks"):
        deformer.au_fields(image)
    deformer.save_pretrained(tmp_path)
    loaded = DeformationGenerator.from_pretrained(tmp_path)
    assert loaded.landmark_input and torch.equal(loaded.au_fields(image, landmarks), fields)


def test_in_1_plus_4_the_brow_lowerers_field_does_not_lower_the_inner_brows_but_still_draws_them_together():
    size = 128
    fields = torch.zeros(1, 17, 2, size, size)
    fields[:, AU_NAMES.index("AU04")] = torch.tensor([1.0, 3.0])[:, None, None]  # x and y offsets everywhere
    landmarks = face_landmarks(size, 1)
    source = torch.zeros(1, 17)
    grief = au_vector({"AU01": 0.5, "AU04": 0.5})[None]
    offsets = grid_offsets_px(fields_grid(fields, source, grief, 1000.0, landmarks))[0]  # a bound far away: linear
    summed = grid_offsets_px(fields_grid(fields, source, grief, 1000.0))[0]
    assert torch.allclose(summed, torch.tensor([0.5, 1.5]), atol=1e-3)
    (head_x, head_y), (tail_x, tail_y) = landmarks[0, 107].round().long(), landmarks[0, 70].round().long()
    assert offsets[head_y, head_x, 1].abs() < 0.1 and offsets[head_y, head_x, 0] == pytest.approx(0.5, abs=0.05)
    assert torch.allclose(offsets[tail_y, tail_x], summed[tail_y, tail_x], atol=0.05)
    # The brow lowerer alone, and no change, are composed as a sum.
    lowerer = au_vector({"AU04": 0.5})[None]
    assert torch.equal(fields_grid(fields, source, lowerer, 1000.0, landmarks), fields_grid(fields, source, lowerer, 1000.0))
    assert torch.equal(fields_grid(fields, source, source, 8.0, landmarks), identity_grid(1, size, size))


def test_arrival_offsets_move_a_feature_all_the_way_where_offsets_at_rest_move_it_part_way():
    size, (x, y), motion, width = 64, (30.0, 32.0), 3.0, 4.0
    rows, columns = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    # A feature at (x, y) moved 3 px down, the motion fading over 4 px around it: its backward offset drawn at rest.
    bump = torch.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * width**2))
    rest = torch.stack((torch.zeros_like(bump), -motion * bump))[None]

    def shown(offsets: torch.Tensor) -> float:
        """How far the warp moves the feature: minus the backward offset where it should arrive."""
        return -float(offsets[0, 1, int(y + motion), int(x)])

    assert shown(rest) < 0.8 * motion
    assert shown(arrival_offsets(rest, 10)) == pytest.approx(motion, rel=0.05)
    assert torch.equal(arrival_offsets(torch.zeros_like(rest), 10), torch.zeros_like(rest))


def test_arrival_offsets_settle_where_the_warp_stretches_the_face_to_twice_its_size():
    # Everything above row 32 moves 8 px up, the band from row 32 to 40 is stretched over rows 24 to 40: plain
    # fixed-point steps swing between the offset and 0 there, for ever.
    size, bottom = 64, 40
    rows = torch.arange(size).float()[:, None].expand(size, size)
    rest = torch.stack((torch.zeros_like(rows), (bottom - rows).clamp(0, 8)))[None]
    stretched = torch.arange(bottom - 15, bottom)
    wanted = (bottom - stretched.float()) / 2  # the band's point at row r is shown at r − (bottom − r)
    assert torch.allclose(arrival_offsets(rest, 10)[0, 1, stretched, 32], wanted, atol=0.05)


def test_a_deformer_places_its_fields_where_the_landmarks_arrive_and_clamps_them_when_built_to(tmp_path):
    torch.manual_seed(0)
    model = trained_a_little(change_conditioned_defgan(64, landmark_input=True))
    composed = with_field_composition(model, arrival_steps=10, bound="clamp")
    deformer = composed.deformer
    image, landmarks = torch.rand(1, 3, 64, 64) * 2 - 1, face_landmarks(64, 1)
    assert composed.texturer is model.texturer
    assert torch.equal(deformer.au_fields(image, landmarks), model.deformer.au_fields(image, landmarks))
    source, target = torch.zeros(1, 17), au_vector({"AU12": 0.8, "AU26": 0.5})[None]
    fields = deformer.au_fields(image, landmarks)
    offsets = torch.einsum("nk,nkchw->nchw", target - source, fields)
    expected = arrival_offsets(offsets, 10).clamp(-deformer.max_offset, deformer.max_offset).permute(0, 2, 3, 1)
    assert torch.allclose(grid_offsets_px(deformer(image, source, target, landmarks)), expected, atol=1e-4)
    assert torch.equal(deformer(image, source, source, landmarks), identity_grid(1, 64, 64))
    deformer.save_pretrained(tmp_path)
    loaded = DeformationGenerator.from_pretrained(tmp_path)
    assert (loaded.arrival_steps, loaded.bound) == (10, "clamp")
    with pytest.raises(ValueError, match="need conditioning='change'"):
        DeformationGenerator(image_size=64, width=8, num_res_blocks=1, arrival_steps=3)
    with pytest.raises(ValueError, match="bound must be one of tanh, clamp"):
        with_field_composition(model, bound="sigmoid")
    with pytest.raises(ValueError, match="Unknown field composition settings: arrival"):
        with_field_composition(model, arrival=3)


def test_a_deformer_composes_1_plus_4_only_when_built_to_and_asks_for_what_it_needs():
    torch.manual_seed(0)
    model = trained_a_little(change_conditioned_defgan(64, landmark_input=True))
    image, landmarks = torch.rand(1, 3, 64, 64) * 2 - 1, face_landmarks(64, 1)
    source, grief = torch.zeros(1, 17), au_vector({"AU01": 0.5, "AU04": 0.5})[None]
    combined = with_field_composition(model, inner_brow_combination=True)
    assert combined.deformer.inner_brow_combination and combined.texturer is model.texturer
    fields = model.deformer.au_fields(image, landmarks)
    expected = fields_grid(fields, source, grief, model.deformer.max_offset, landmarks)
    assert torch.allclose(combined(image, source, grief, landmarks).grid, expected, atol=1e-6)
    assert not torch.allclose(model(image, source, grief, landmarks).grid, expected, atol=1e-3)
    for aus in ({"AU01": 0.5}, {"AU04": 0.5, "AU12": 0.3}):
        target = au_vector(aus)[None]
        assert torch.equal(combined(image, source, target, landmarks).image, model(image, source, target, landmarks).image)
    with pytest.raises(ValueError, match="pass them"):
        combined.deformer.fields_grid(fields, source, grief)
    with pytest.raises(ValueError, match="landmark_input=True"):
        DeformationGenerator(image_size=64, width=8, num_res_blocks=1, conditioning="change", inner_brow_combination=True)
    with pytest.raises(ValueError, match="texture-only"):
        with_field_composition(small_defgan(texture_only=True), inner_brow_combination=True)


def test_landmark_maps_light_each_region_where_its_landmarks_are_and_flip_with_the_face():
    from defgan_hf.face_regions import REGION_SEEDS, landmark_heatmaps

    size = 64
    landmarks = face_landmarks(size, 1)
    maps = landmark_heatmaps(landmarks, size)
    assert maps.shape == (1, len(REGION_SEEDS), size, size) and maps.min() >= 0 and maps.max() <= 1
    brows = list(REGION_SEEDS).index("brows")
    x, y = landmarks[0, REGION_SEEDS["brows"][0][0]].round().long().tolist()
    chin_x, chin_y = landmarks[0, 152].round().long().tolist()
    assert maps[0, brows, y, x] > 0.8 and maps[0, brows, chin_y, chin_x] < 1e-3
    # A face flipped left-right with its landmarks gets the flipped maps (each region holds both sides).
    flipped = landmarks.clone()
    flipped[..., 0] = size - 1 - flipped[..., 0]
    assert torch.allclose(landmark_heatmaps(flipped, size), maps.flip(-1), atol=1e-3)
    # A face without landmarks (NaN in the data) gets empty maps, not NaN.
    assert torch.equal(landmark_heatmaps(torch.full_like(landmarks, float("nan")), size), torch.zeros_like(maps))


def test_the_mask_is_zero_outside_the_regions_of_the_changed_aus():
    from defgan_hf import AU_NAMES
    from defgan_hf.face_regions import TEXTURE_RADIUS, changed_region_mask

    torch.manual_seed(0)
    size = 64
    model = trained_a_little(change_conditioned_defgan(size))
    image = torch.rand(1, 3, size, size) * 2 - 1
    source = torch.zeros(1, 17)
    target = source.clone()
    target[0, AU_NAMES.index("AU45")] = 1.0  # a blink: the lids only
    landmarks = face_landmarks(size, 1)
    out = model(image, source, target, landmarks)
    region = changed_region_mask(landmarks, source, target, size)
    assert out.mask.max() > 0 and not out.mask[region == 0].any()
    assert torch.equal(out.region, region)  # the objective reads it from the edit instead of drawing it again
    # The lids' region is around the eyes: nothing near the mouth.
    mouth = landmarks[0, [13, 14, 61, 291]].mean(dim=0).round().long()
    x, y = mouth.tolist()
    reach = int(TEXTURE_RADIUS * size)
    assert not out.mask[0, 0, y - 2 : y + 3, x - reach // 2 : x + reach // 2 + 1].any()
    with pytest.raises(ValueError, match="landmarks"):
        model(image, source, target)
