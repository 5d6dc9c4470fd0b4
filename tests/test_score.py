"""Kernel ridge regression, the score of one architecture.

The targets are the paper's one-hot 0.9 / -0.1; the closed-form leave-one-out accuracy equals
refitting without each point; the ridge is chosen from the training labels alone (other evaluation
labels, same ridge) and separable data is learnt; a singular kernel skips the zero ridge.
"""
import numpy as np
import pytest

from nas_cntk.scoring.regression import kernel_regression, targets


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
