"""Numbers no run prints, in the places real logs put numbers: a 5,000-digit GPU index, source
line, rank, exit code or step count. int() refuses strings over 4,300 digits, so `doctor` and
`metrics` of such a log (and `status` of a run that printed it) ended in an internal_error. They
are no numbers of ours: the line is read as text, and everything else in the log still counts."""

from __future__ import annotations

from test_agent_attack import agent

N = "9" * 5000
LOG = (f"Step 3/{N} loss: 0.5\n"
       f"Epoch {N[:30]}/{N[:40]} | Train Loss: 0.3\n"
       f" 50%|#####     | 5/{N[:400]} [00:01<00:01,  4.50it/s, loss=0.1]\n"
       f'  File "train.py", line {N}, in main\n'
       f"[rank0]: rank : {N} (local_rank: {N})\n"
       f"  exitcode  : {N} (pid: {N})\n"
       f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU {N} has a total capacity of "
       f"23.69 GiB of which 1.00 GiB is free.\n"
       f"CUDA out of memory. Tried to allocate 2.00 GiB (GPU {N}; 23.69 GiB total capacity; 1.00 GiB already "
       f"allocated; 1.00 GiB free; 2 GiB reserved in total by PyTorch)\n")


def test_doctor_and_metrics_of_a_log_with_5000_digit_numbers(workspace):
    log = workspace / "huge.log"
    log.write_text(LOG)
    found = agent("doctor", "doctor", str(log), cwd=workspace)
    assert "cuda_oom" in [d["kind"] for d in found["diagnoses"]]
    metrics = agent("metrics", "metrics", str(log), cwd=workspace)["sources"][0]["metrics"]
    assert metrics["train_loss"]["last"] == 0.3 and metrics["loss"]["last"] == 0.1
