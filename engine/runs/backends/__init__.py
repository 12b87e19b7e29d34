"""Where a run executes: `local` (a babysat process tree here), `torchrun` (the same, under
torchrun with one worker per GPU/CPU slot), `slurm` (a batch job, through the SLURM CLI)."""

from urbanrun.engine.core.config import BACKENDS  # noqa: F401 (the names live with the config that checks them)
