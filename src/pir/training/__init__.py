"""Training: ``optim`` (AdamW groups, warm-up + linear decay), ``trainer`` (PIR epochs, val selection,
exact resume via ``state``), ``scene_prior`` (the instruction encoder's classifier), ``distributed``
(device choice, torchrun re-launch, process group)."""

from pir.training.distributed import DistContext, resolve_device, setup, teardown
from pir.training.optim import make_optimizer, make_scheduler, param_groups
from pir.training.state import TrainState, run_key
from pir.training.trainer import TrainOutputs, TrainSummary, train, write_curves_csv

__all__ = ["DistContext", "resolve_device", "setup", "teardown", "make_optimizer", "make_scheduler",
           "param_groups", "TrainState", "run_key", "TrainOutputs", "TrainSummary", "train", "write_curves_csv"]
