"""Training: ``optim`` (AdamW groups, warm-up + linear decay), ``trainer`` (PIR epochs, val selection,
exact resume via ``state``), ``scene_prior`` (the instruction encoder's classifier), ``launch``
(GPU count, torchrun re-launch, process group).

Import the submodule you need: this package imports nothing on its own, so a stage that only
wants ``pir.training.launch`` does not load the trainer.
"""
