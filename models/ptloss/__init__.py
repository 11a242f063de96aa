"""PTLoss: perturbed-loss knowledge distillation (DESIGN.md, PTLoss section).

- ``loss``: the losses a student is trained with: hard CE, KD, label smoothing and L_PT.
- ``proxy``: the proxy teacher (the minimizer of L_PT over the simplex) by bisection on λ.
- ``select``: sampling ε candidates, keeping the one whose proxy teacher is nearest the dev labels.
- ``crossfit``: K-fold soft labels, so no example is labeled by a teacher that trained on it.
- ``students``: students built from a teacher encoder (first L layers, every other layer), a hub
  model by name, or a frozen encoder with a trainable head; all Hugging Face sequence classifiers.
- ``distill``: the training loop (progress callback, cancel check), prediction and throughput.
"""

from models.ptloss.crossfit import CrossFit, cross_fit
from models.ptloss.loss import (
    LOSSES,
    distill_loss,
    hard_ce_loss,
    kd_loss,
    label_smoothing_loss,
    ptloss,
    temper,
)
from models.ptloss.proxy import check_eps, is_valid_eps, proxy_teacher
from models.ptloss.select import Selection, sample_eps, select_eps

__all__ = [
    "LOSSES",
    "CrossFit",
    "Selection",
    "check_eps",
    "cross_fit",
    "distill_loss",
    "hard_ce_loss",
    "is_valid_eps",
    "kd_loss",
    "label_smoothing_loss",
    "proxy_teacher",
    "ptloss",
    "sample_eps",
    "select_eps",
    "temper",
]
