"""Kernel ridge regression and the other scores of one kernel.

The targets are the paper's one-hot 0.9 / -0.1; the closed-form leave-one-out accuracy equals
refitting without each point; the ridge is chosen from the training labels alone (other evaluation
labels, same ridge) and separable data is learnt; a singular kernel skips the zero ridge. The
leave-one-out over all images equals refitting too, and picks the ridge of least squared error;
the alignment and the condition number equal their textbook formulas; every score has a direction.
"""
import math

import numpy as np
import pytest

from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.measures import SCORE_NAMES, check_score_name, oriented
from nas_cntk.scoring.regression import (
    MAX_LOG_CONDITION,
    RELATIVE_RIDGES,
    alignment,
    kernel_regression,
    kernel_scores,
    leave_one_out,
    log_condition,
    targets,
)


def test_targets_are_the_papers():
    y = targets(np.array([2, 0]))
    assert y.shape == (2, 10) and y[0, 2] == 0.9 and y[1, 0] == 0.9 and np.allclose(y.sum(1), 0)


def brute_force_loo_accuracy(k, labels, ridge):
    """Refit without each training point: what the closed form must equal."""
    y, hits = targets(labels), 0
    for i in range(len(k)):
        keep = np.arange(len(k)) != i
        alpha = np.linalg.solve(k[np.ix_(keep, keep)] + ridge * np.eye(len(k) - 1), y[keep])
        hits += (k[i, keep] @ alpha).argmax() == labels[i]
    return hits / len(k)


def test_leave_one_out_closed_form_equals_refitting():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 8))
    labels = rng.integers(0, 10, 40)
    k = features @ features.T + 0.5 * np.eye(40)
    result = kernel_regression(k, labels, k[:5], labels[:5])
    assert result.loo_accuracy == pytest.approx(brute_force_loo_accuracy(k, labels, result.ridge))
    assert result.ridge == pytest.approx(result.relative_ridge * np.mean(np.diag(k)))


def test_ridge_is_chosen_without_evaluation_labels_and_separable_data_is_learnt():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(10, 20)) * 5
    labels = np.repeat(np.arange(10), 6)
    x = centres[labels] + rng.normal(size=(60, 20))
    test_labels = np.arange(10)
    x_test = centres[test_labels] + rng.normal(size=(10, 20))
    k, k_test = x @ x.T, x_test @ x.T
    good = kernel_regression(k, labels, k_test, test_labels)
    assert good.accuracy == 1.0 and good.loo_accuracy > 0.9
    shuffled = kernel_regression(k, labels, k_test, test_labels[::-1])  # other eval labels, same ridge
    assert shuffled.ridge == good.ridge and shuffled.accuracy < 0.5


def test_singular_kernel_skips_the_zero_ridge():
    x = np.random.default_rng(2).normal(size=(30, 3))
    labels = np.arange(30) % 10
    result = kernel_regression(x @ x.T, labels, x[:3] @ x.T, labels[:3])  # rank 3: ridge 0 is singular
    assert result.relative_ridge > 0


def brute_force_loo(k, labels, ridge):
    """Accuracy and squared error of predicting each image from a fit on all the others."""
    y, hits, error = targets(labels), 0, 0.0
    for i in range(len(k)):
        keep = np.arange(len(k)) != i
        prediction = k[i, keep] @ np.linalg.solve(k[np.ix_(keep, keep)] + ridge * np.eye(len(k) - 1), y[keep])
        hits += prediction.argmax() == labels[i]
        error += np.sum((prediction - y[i]) ** 2)
    return hits / len(k), error / len(k)


def noisy_classes(seed: int, n: int = 50):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = rng.normal(size=(10, 12))[labels] + 1.5 * rng.normal(size=(n, 12))
    return x @ x.T + 0.1 * np.eye(n), labels


def test_leave_one_out_over_all_images_equals_refitting_at_the_ridge_of_least_error():
    k, labels = noisy_classes(3)
    accuracy, error, relative = leave_one_out(k, labels)
    scale = np.mean(np.diag(k))
    assert (accuracy, error) == pytest.approx(brute_force_loo(k, labels, relative * scale))
    others = [brute_force_loo(k, labels, r * scale)[1] for r in RELATIVE_RIDGES]
    assert error == pytest.approx(min(others))


def test_alignment_is_the_centred_frobenius_cosine():
    k, labels = noisy_classes(4)
    n = len(k)
    h = np.eye(n) - 1 / n
    yy = h @ targets(labels) @ targets(labels).T @ h
    kc = h @ k @ h
    assert alignment(k, labels) == pytest.approx(np.sum(kc * yy) / (np.linalg.norm(kc) * np.linalg.norm(yy)))
    assert alignment(3.0 * k + 7.0, labels) == pytest.approx(alignment(k, labels))  # scale and offset drop out
    assert alignment(targets(labels) @ targets(labels).T, labels) == pytest.approx(1.0)
    assert alignment(np.ones((n, n)), labels) == 0.0


def test_log_condition_is_the_condition_number_capped_where_singular():
    k, _ = noisy_classes(5)
    assert log_condition(k) == pytest.approx(math.log10(np.linalg.cond(k)))
    x = np.random.default_rng(6).normal(size=(20, 3))
    assert log_condition(x @ x.T) == MAX_LOG_CONDITION
    assert log_condition(np.zeros((4, 4))) == MAX_LOG_CONDITION


def test_kernel_scores_split_training_and_validation_images():
    k, labels = noisy_classes(7, 60)
    scores = kernel_scores(k, labels, 40)
    regression = kernel_regression(k[:40, :40], labels[:40], k[40:, :40], labels[40:])
    assert (scores.val_accuracy, scores.ridge, scores.train_loo_accuracy) == \
        (regression.accuracy, regression.ridge, regression.loo_accuracy)
    alpha = np.linalg.solve(k[:40, :40] + regression.ridge * np.eye(40), targets(labels[:40]))
    predicted = k[40:, :40] @ alpha
    assert scores.val_sq_error == pytest.approx(np.mean(np.sum((predicted - targets(labels[40:])) ** 2, 1)))
    assert scores.loo_accuracy == leave_one_out(k, labels)[0]


def test_every_score_has_a_direction_and_a_bad_name_is_one_line():
    assert oriented("cntk_val_accuracy", 0.3) == 0.3 and oriented("cntk_loo_sq_error", 0.3) == -0.3
    assert len(SCORE_NAMES) == 12 and all(check_score_name(name) == name for name in SCORE_NAMES)
    with pytest.raises(NasCntkError, match="--objective: expected one of cntk_val_accuracy, .* got 'accuracy'"):
        check_score_name("accuracy")
