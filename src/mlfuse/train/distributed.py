"""Data-parallel training across processes: ``torchrun --nproc_per_node=N -m mlfuse train ...``.

gloo on CPU, nccl on CUDA. BatchNorm must see the *global* batch for a DDP run to train what one
process with the same global batch trains; torch's SyncBatchNorm is CUDA-only, so on CPU
:class:`GlobalBatchNorm2d` all-reduces the batch statistics itself (same parameters and buffers, so
checkpoints are interchangeable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mlfuse.errors import MLFuseError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistInfo:
        """The rank a launcher gave this process, without joining a process group: ``RANK``,
        ``WORLD_SIZE``, ``LOCAL_RANK`` (torchrun or any launcher that sets them), else an srun job
        step's ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``/``SLURM_NTASKS``, ``SLURM_LOCALID`` (only
        inside a step: a batch script's own environment says ``SLURM_PROCID=0`` of all tasks)."""
        env = os.environ if environ is None else environ
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        if "WORLD_SIZE" not in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
            tasks = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
            names = ("SLURM_PROCID", tasks, "SLURM_LOCALID")
        values = []
        for name, default in zip(names, ("0", "1", None), strict=True):
            text = env.get(name, default)
            try:
                values.append(None if text is None else int(text))
            except ValueError:
                raise MLFuseError(f"{name}={text!r}: expected a whole number (set by the launcher)") from None
        rank, world, local = values
        if world < 1 or not 0 <= rank < world:
            raise MLFuseError(f"{names[0]}={rank} with {names[1]}={world}: expected 0 <= rank < world size")
        return cls(rank, world, rank if local is None else local)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for_rank(device: torch.device, info: DistInfo) -> torch.device:
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch across all ranks.

    Two all-reduces per call (sum for the mean, then the centred sum of squares), both differentiable
    (``torch.distributed.nn.functional.all_reduce``), on a dedicated process group so they never
    interleave with DDP's gradient buckets. Running statistics follow ``nn.BatchNorm2d`` exactly
    (momentum update, unbiased variance).
    """

    group = None

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.tensor([x.numel() // c], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]), group=self.group)
        n = total[c]
        mean = total[:c] / n
        centred = x - mean.view(1, c, 1, 1)
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3)), group=self.group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm2d use global-batch statistics (SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if GlobalBatchNorm2d.group is None:
        GlobalBatchNorm2d.group = dist.new_group(backend="gloo")
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d  # same parameters and buffers, only forward differs
    return model


def all_mean(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average scalars across ranks (for logging only)."""
    if not info.enabled or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / info.world_size).tolist(), strict=True))


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks must agree on when to stop)."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
