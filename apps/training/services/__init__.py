"""PRBoost on a project: launch the training jobs and do their work.

Job kinds (apps/training/kinds.py), each a thin task in workers/prboost_tasks.py over one
function here:

- :func:`warm_cache` — embeddings and the LM answer index for the project's texts (the one-time
  pass; resumable through the models' disk cache in ``settings.FRUGAL_MODEL_CACHE_DIR``);
- :func:`run_round` — one boosting round from the previous round's saved loop state; the new
  Round, its suggested rules and its state are written in one transaction at the very end, so a
  round that fails or is cancelled leaves the previous round's state and labels untouched;
- :func:`refresh_labels` — accepted rules + label model → pool labels (``label_source="rules"``);
- :func:`finalize` — self-training → pool labels and confidences the export serves
  (``label_source="model"``, ``label_version="prboost round N"``).

Every function takes a ``progress(fraction, message)`` callback (the job's; it raises when the
job is cancelled) and a ``log(line)`` callback.

The package, by concern: ``common`` (errors, constants, the live rounds, small helpers),
``launching`` (settings, template previews, training jobs, the automatic next round), ``state``
(the loop's saved state and bringing it up to date), ``rounds`` (warm cache, a round) and
``labels`` (refresh and finalize). Callers import from the package.
"""

from apps.jobs.artifacts import artifact_storage
from apps.training.data import TrainingDataError
from apps.training.services.common import (
    FINAL_ARTIFACT,
    LEARNER_C,
    STATE_ARTIFACT,
    TrainingError,
    active_training_job,
    latest_live_round,
    live_rounds,
    reconcile_rounds,
    rule_counts,
)
from apps.training.services.labels import (
    finalize,
    label_margins,
    latest_label_set,
    refresh_labels,
)
from apps.training.services.launching import (
    launch_training_job,
    maybe_start_next_round,
    template_preview,
    update_prboost_settings,
)
from apps.training.services.rounds import run_round, warm_cache
from apps.training.services.state import load_loop_state, load_state, save_loop_state

__all__ = [
    "FINAL_ARTIFACT",
    "LEARNER_C",
    "STATE_ARTIFACT",
    "TrainingDataError",
    "TrainingError",
    "active_training_job",
    "artifact_storage",
    "finalize",
    "label_margins",
    "latest_label_set",
    "latest_live_round",
    "launch_training_job",
    "live_rounds",
    "load_loop_state",
    "load_state",
    "maybe_start_next_round",
    "reconcile_rounds",
    "refresh_labels",
    "rule_counts",
    "run_round",
    "save_loop_state",
    "template_preview",
    "update_prboost_settings",
    "warm_cache",
]
