import pytest
import torch

from defgan_hf import (
    AU_FACS_NAMES,
    AU_NAMES,
    EXPRESSIONS,
    au_vector,
    canonical_au_name,
    expression_vector,
    interpolate_expression,
)

OPENFACE_ORDER = "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 AU26 AU45".split()


def test_au_names_follow_openface_order_with_facs_names():
    assert list(AU_NAMES) == OPENFACE_ORDER
    assert list(AU_FACS_NAMES) == OPENFACE_ORDER
    assert AU_FACS_NAMES["AU12"] == "Lip Corner Puller"
    assert AU_FACS_NAMES["AU45"] == "Blink"


@pytest.mark.parametrize("spelling", ["AU12", "au12", "AU012", "AU12_r", " au 12 "])
def test_canonical_au_name_accepts_common_spellings(spelling):
    assert canonical_au_name(spelling) == "AU12"


@pytest.mark.parametrize("name", ["AU03", "AU99", "smile", ""])
def test_unknown_au_lists_valid_names(name):
    with pytest.raises(ValueError, match="AU01, AU02, AU04"):
        canonical_au_name(name)


def test_au_vector_sets_named_entries_only():
    vector = au_vector({"AU12": 0.8, "AU6": 0.5})
    assert vector.shape == (17,)
    assert vector[AU_NAMES.index("AU12")] == pytest.approx(0.8)
    assert vector[AU_NAMES.index("AU06")] == pytest.approx(0.5)
    assert vector.sum() == pytest.approx(1.3)


def test_au_vector_keeps_base_and_does_not_modify_it():
    base = torch.full((2, 17), 0.25)
    vector = au_vector({"AU26": 1.0}, base=base)
    assert torch.all(base == 0.25)
    assert torch.all(vector[:, AU_NAMES.index("AU26")] == 1.0)
    assert torch.all(vector[:, AU_NAMES.index("AU01")] == 0.25)


def test_au_vector_rejects_openface_scale_values():
    with pytest.raises(ValueError, match="divided by 5"):
        au_vector({"AU12": 4.0})


def test_presets_are_valid_prototypes():
    assert set(EXPRESSIONS) == {"happy", "sad", "angry", "fear", "surprise", "disgust", "contempt", "neutral"}
    for vector in EXPRESSIONS.values():
        assert vector.shape == (17,)
        assert torch.all((vector >= 0) & (vector <= 1))
    active = {name: {AU_NAMES[i] for i in torch.nonzero(v).flatten().tolist()} for name, v in EXPRESSIONS.items()}
    assert {"AU06", "AU12"} <= active["happy"]
    assert {"AU01", "AU04", "AU15"} <= active["sad"]
    assert {"AU01", "AU02", "AU05", "AU26"} <= active["surprise"]
    assert {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"} <= active["fear"]
    assert {"AU04", "AU05", "AU07", "AU23"} <= active["angry"]
    assert {"AU09", "AU10", "AU15", "AU17"} <= active["disgust"]
    assert {"AU12", "AU14"} <= active["contempt"]
    assert active["neutral"] == set()


def test_expression_vector_is_a_copy_and_case_insensitive():
    vector = expression_vector("Happy")
    vector.zero_()
    assert EXPRESSIONS["happy"].sum() > 0


def test_unknown_expression_lists_valid_ones():
    with pytest.raises(ValueError, match="happy, sad, angry"):
        expression_vector("joyful")


def test_interpolation_goes_from_source_to_preset():
    source = torch.rand(3, 17)
    preset = EXPRESSIONS["surprise"]
    assert torch.allclose(interpolate_expression(source, "surprise", 0.0), source)
    assert torch.allclose(interpolate_expression(source, "surprise", 1.0), preset.expand(3, 17))
    halfway = interpolate_expression(source, "surprise", 0.5)
    assert torch.allclose(halfway, (source + preset) / 2)


@pytest.mark.parametrize("intensity", [-0.1, 1.5])
def test_interpolation_rejects_intensity_outside_unit_interval(intensity):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_expression(torch.zeros(17), "happy", intensity)
