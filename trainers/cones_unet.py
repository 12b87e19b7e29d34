"""Demo trainer: a small, real version of UrbanRepML's cone training.

    python -m trainers.cones_unet --epochs 30 --batch-size 8

Masked reconstruction on a synthetic hexagon lattice: a third of the fine cells of each cone are
hidden (and the rest noised); the U-Net fills them in from their neighbours across resolutions.
It writes what real scripts write: `Epoch i/N | Train Loss … | Val Loss … | LR …` lines, a tqdm
bar on stderr, a closing summary, and one JSON line per step to $URBANRUN_METRICS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .cone_data import FEATURES, LazyConeBatcher, build_cones
from .cone_unet_model import ConeUNet

MASK_FRACTION = 0.3
NOISE = 0.1
GIB = 1024 ** 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainers.cones_unet", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8, help="cones per batch")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")], default=[32, 64, 128])
    p.add_argument("--amp", action="store_true", help="mixed precision (autocast; GradScaler on CUDA)")
    p.add_argument("--grad-checkpoint", action="store_true", help="checkpoint the U-Net blocks")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--cones", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: the run folder)")
    p.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "cones", "patience"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class MetricsWriter:
    """One JSON object per line to $URBANRUN_METRICS (when set), flushed per line."""

    def __init__(self, path: str | None):
        self.fh = open(path, "a", encoding="utf-8") if path else None

    def write(self, **values) -> None:
        if self.fh:
            self.fh.write(json.dumps(values) + "\n")
            self.fh.flush()


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch.cuda.is_available() is False")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def masked_inputs(batch: dict, device: torch.device, generator: torch.Generator):
    x = batch["x"].to(device)
    n = x.shape[0]
    mask = (torch.rand(n, 1, generator=generator) < MASK_FRACTION).to(device)
    noise = torch.randn(x.shape, generator=generator).to(device) * NOISE
    inputs = torch.cat([(x + noise) * (~mask), mask.float()], dim=1)
    edges = [e.to(device) for e in batch["edge_index"]]
    parents = [p.to(device) for p in batch["parent"]]
    return inputs, edges, parents, x, mask.squeeze(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    out = args.out or Path(os.environ.get("URBANRUN_RUN_DIR", "cones_out"))
    out.mkdir(parents=True, exist_ok=True)
    metrics = MetricsWriter(os.environ.get("URBANRUN_METRICS"))

    t0 = time.time()
    files = build_cones(args.cones, args.seed, args.cache_dir)
    n_val = max(1, len(files) // 8)
    train_files, val_files = files[n_val:], files[:n_val]
    print(f"Cones: {len(files)} ({len(train_files)} train, {len(val_files)} val), cached in {files[0].parent} "
          f"[{time.time() - t0:.1f}s]")
    train = LazyConeBatcher(train_files, args.batch_size, shuffle=True, seed=args.seed)
    val = LazyConeBatcher(val_files, args.batch_size, shuffle=False)

    model = ConeUNet(FEATURES + 1, args.dims, FEATURES, grad_checkpoint=args.grad_checkpoint).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    total_steps = args.epochs * len(train)
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    warmup = max(1, total_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, total_steps)))))
    use_cuda_amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda_amp)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    params = sum(p.numel() for p in model.parameters())
    print(f"Model: ConeUNet dims={args.dims} params={params:,} device={device} amp={args.amp} "
          f"grad_checkpoint={args.grad_checkpoint} batch_size={args.batch_size} cones/batch")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    gen = torch.Generator().manual_seed(args.seed + 1)
    best, best_epoch, stale, step = math.inf, 0, 0, 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        train.set_epoch(epoch)
        loader = DataLoader(train, batch_size=None, shuffle=False, num_workers=args.workers)
        bar = tqdm(loader, desc=f"Epoch {epoch}/{args.epochs}", file=sys.stderr, ncols=100, mininterval=0.5)
        losses = []
        for batch in bar:
            t_step = time.time()
            inputs, edges, parents, target, mask = masked_inputs(batch, device, gen)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                pred = model(inputs, edges, parents)
                loss = torch.nn.functional.mse_loss(pred[mask].float(), target[mask])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            value = loss.item()
            losses.append(value)
            point = {"step": step, "epoch": epoch, "time": time.time(), "loss": value,
                     "lr": opt.param_groups[0]["lr"],
                     "samples_per_s": batch["num_cones"] / max(time.time() - t_step, 1e-9)}
            if device.type == "cuda":
                point.update(mem_allocated_gb=torch.cuda.memory_allocated(device) / GIB,
                             mem_reserved_gb=torch.cuda.memory_reserved(device) / GIB,
                             mem_peak_gb=torch.cuda.max_memory_allocated(device) / GIB,
                             # urbanrun's contract: bytes, for when NVML cannot see processes (WDDM)
                             gpu_mem=torch.cuda.max_memory_allocated(device))
            metrics.write(**point)
            bar.set_postfix(loss=f"{value:.4f}")
            if args.max_steps and step >= args.max_steps:
                break
        bar.close()
        val_loss = evaluate(model, val, device, args.amp, amp_dtype, args.seed)
        train_loss = sum(losses) / max(1, len(losses))
        lr = opt.param_groups[0]["lr"]
        print(f"Epoch {epoch}/{args.epochs} | Train Loss: {train_loss:.4f} | Val Loss: {val_loss:.4f} | LR: {lr:.1e}")
        metrics.write(step=step, epoch=epoch, time=time.time(), train_loss_epoch=train_loss, val_loss=val_loss)
        if val_loss < best:
            best, best_epoch, stale = val_loss, epoch, 0
            torch.save({"model": model.state_dict(), "epoch": epoch, "val_loss": val_loss, "args": vars(args)},
                       out / "best.pt")
        else:
            stale += 1
            if stale >= args.patience:
                print(f"Early stopping: no validation improvement for {args.patience} epochs")
                break
        if args.max_steps and step >= args.max_steps:
            print(f"Stopping: reached --max-steps {args.max_steps}")
            break

    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / GIB:.2f} GB" if device.type == "cuda" else ""
    print(f"Training complete: best val loss {best:.4f} at epoch {best_epoch}; {step} steps in "
          f"{time.time() - t0:.1f}s{peak}; checkpoint {out / 'best.pt'}")
    return 0


@torch.no_grad()
def evaluate(model, batcher, device, amp: bool, amp_dtype, seed: int) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(seed + 2)  # the same masks every epoch: comparable numbers
    total, count = 0.0, 0
    for i in range(len(batcher)):
        inputs, edges, parents, target, mask = masked_inputs(batcher[i], device, gen)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            pred = model(inputs, edges, parents)
        total += torch.nn.functional.mse_loss(pred[mask].float(), target[mask], reduction="sum").item()
        count += int(mask.sum()) * target.shape[1]
    return total / max(1, count)


if __name__ == "__main__":
    sys.exit(main())
