"""The evidence maps are exact: on a real (tiny) Keras CNN with average pooling, the map's mean
over positions plus the intercept is the classifier's logit; the face-box share and the choice
of images are what they say."""

from __future__ import annotations

import numpy as np
import pytest

from spark_tasks import evidence

pytestmark = pytest.mark.spark


def test_the_maps_mean_plus_the_intercept_is_the_logit(tiny_model):
    from spark_tasks.model_input import decode
    from tests.fixtures_images import make_images

    loaded, spatial = evidence.spatial_model(str(tiny_model), "avg", "none")
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(1, loaded.dim))
    intercept = np.array([0.37])
    images = sorted(make_images(tiny_model.parent / "ev-images", per_class=3).glob("*/*"))
    batch = loaded.preprocess(np.stack([decode(p.read_bytes(), loaded.size) for p in images]))
    features = np.asarray(loaded.model(batch), dtype=np.float64)  # what the featurizer stores
    fmap = np.asarray(spatial(batch), dtype=np.float64)  # (n, h, w, k), k = dim
    assert fmap.ndim == 4 and fmap.shape[-1] == loaded.dim and fmap.shape[1] * fmap.shape[2] > 1
    maps = fmap @ weights.T  # (n, h, w, 1): sum_k w_k F_k(x, y)
    logits = features @ weights.T + intercept
    np.testing.assert_allclose(maps.mean(axis=(1, 2)) + intercept, logits, rtol=1e-5, atol=1e-5)
    assert np.ptp(maps) > 0  # a map, not a constant


def test_max_pooling_has_no_exact_map_and_says_so(tiny_model):
    with pytest.raises(evidence.NoExactMapError, match="pooling='max'"):
        evidence.spatial_model(str(tiny_model), "max", "none")


def test_box_share_counts_each_cell_by_its_part_in_the_box():
    ev = np.zeros((4, 4))
    ev[0, 0] = 3.0  # top-left cell
    ev[3, 3] = 1.0
    ev[1, 1] = -5.0  # negative evidence never counts
    assert evidence.box_share(ev, (0.0, 0.0, 0.25, 0.25)) == pytest.approx(0.75)
    assert evidence.box_share(ev, (0.0, 0.0, 0.125, 0.25)) == pytest.approx(3 * 0.5 / 4)
    assert evidence.box_share(-np.abs(ev), (0, 0, 1, 1)) is None


def test_binomial_evidence_argues_for_the_last_class_against_the_first():
    maps = np.arange(4.0).reshape(2, 2, 1) - 1.5
    ev = evidence.class_evidence(maps, 2)
    np.testing.assert_array_equal(ev[..., 1], maps[..., 0])
    np.testing.assert_array_equal(ev[..., 0], -maps[..., 0])
    three = np.random.default_rng(0).normal(size=(2, 2, 3))
    np.testing.assert_allclose(evidence.class_evidence(three, 3).sum(axis=-1), 0, atol=1e-12)


def test_choose_takes_every_miss_and_the_extremes_of_each_class():
    preds = [
        {"path": f"m{i}", "label": "m", "predicted": "m", "probability": 0.5 + i / 20}
        for i in range(6)
    ]
    preds.append({"path": "r0", "label": "r", "predicted": "m", "probability": 0.9})
    preds.append({"path": "r1", "label": "r", "predicted": "r", "probability": 0.8})
    chosen = evidence.choose(preds, ["m", "r"])
    assert chosen["r0"] == "misclassified" and chosen["r1"] == "most confident correct"
    assert {p for p, g in chosen.items() if g == "most confident correct"} == {"m5", "m4", "r1"}
    assert {p for p, g in chosen.items() if g == "least confident correct"} == {"m0", "m1"}
