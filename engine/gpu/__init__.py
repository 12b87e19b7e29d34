"""GPU and host telemetry: the NVML source (sampled like nvitop), the recorded source that
replays NVML readings (the hardware boundary in tests), psutil host sampling, nvidia-smi formatting.
May import engine.core and engine.runs (process trees of runs)."""
