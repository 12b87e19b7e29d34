"""Runs as processes and records: the run store (run.toml, exit status), the supervisor
(launch, reattach, kill), the babysitter, process trees and the backends (local, torchrun, SLURM).
May import engine.core only."""
