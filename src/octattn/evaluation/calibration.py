"""Calibration: temperature scaling (Guo et al., 2017), one scalar T that makes
softmax(logits / T) honest, and an optional class-prior correction.

The temperature is fitted on the validation split by minimising the negative log-likelihood;
it changes no prediction (argmax is unchanged), only how confident the probabilities are.

The prior correction undoes what class balancing does to the outputs. A model trained with
a balanced sampler or inverse-frequency loss weights learns as if every class were equally
common, so on data with the training set's frequencies it over-calls the rare classes (on
OCTDL, where 58% of test scans are AMD, such a model called 37% of AMD scans AMD). Adding
``power * (log p_natural - log p_trained)`` to the scaled logits moves the outputs back toward
the real frequencies (the logit adjustment of Menon et al., 2021, applied after training);
``power`` 1 is the Bayes correction for accuracy, and the power that maximises validation
macro-F1 usually lies between 0 and 1, so it is fitted on validation too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import f1_score


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature that minimises validation NLL, searched in log space with L-BFGS."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


PRIOR_POWERS = np.linspace(0.0, 1.0, 21)
"""The powers of the prior correction tried on validation."""


def softmax(logits: np.ndarray, temperature: float = 1.0, bias: Sequence[float] | None = None) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature + bias``, numerically stable."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if bias is not None and len(bias):
        z = z + np.asarray(bias, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def prior_shift(natural_counts: npt.ArrayLike, trained_counts: npt.ArrayLike) -> np.ndarray:
    """``log p_natural - log p_trained`` per class: how far the class frequencies a model was
    trained under (after balancing) are from the data's own. Zero where they agree; a class
    with no training scan counts as half a scan, so the shift stays finite."""
    natural = np.maximum(np.asarray(natural_counts, dtype=np.float64), 0.5)
    trained = np.maximum(np.asarray(trained_counts, dtype=np.float64), 0.5)
    return np.log(natural / natural.sum()) - np.log(trained / trained.sum())


def fit_prior_power(logits: np.ndarray, labels: np.ndarray, temperature: float, shift: np.ndarray) -> float:
    """The power of ``shift`` (see :func:`prior_shift`) that maximises validation macro-F1 of
    ``argmax(logits / temperature + power * shift)``, from :data:`PRIOR_POWERS`; ties go to
    the smaller power (the smaller change)."""
    labels = np.asarray(labels)
    z = np.asarray(logits, dtype=np.float64) / temperature
    present = np.unique(labels)  # macro-F1 over the classes validation has, as the run reports it
    scores = [
        f1_score(labels, (z + power * shift).argmax(1), labels=present, average="macro", zero_division=0)
        for power in PRIOR_POWERS
    ]
    return float(PRIOR_POWERS[int(np.argmax(scores))])
