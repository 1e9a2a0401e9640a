"""Process groups and model wrapping for `torchrun --nproc_per_node=N -m discdiff train ...`.

One process per device; gloo on CPU, nccl on GPU. "ddp" replicates the model and all-reduces gradients;
"fsdp" shards parameters, gradients and optimizer state with FSDP2 (`torch.distributed.fsdp.fully_shard`,
one unit per transformer block plus the root). Checkpoints always hold full (unsharded) tensors, so a
run saved on N processes resumes on any other number with the same micro-batch size.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from discdiff.seeding import seed_for  # re-exported: every seed of a run (splitmix64)

__all__ = ["Dist", "init_distributed", "seed_for"]


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    strategy: str = "none"  # "none", "ddp" or "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def from_main(self, values: list[int]) -> list[int]:
        """Rank 0's integers on every rank (a sum in which the other ranks add zeros; no pickle)."""
        t = torch.tensor(values if self.is_main else [0] * len(values), dtype=torch.int64, device=self.device)
        return [int(v) for v in self.all_reduce_sum(t).tolist()]

    # ------------------------------------------------------------------ wrapping

    def wrap(self, model: nn.Module) -> nn.Module:
        """The training module: the model itself, DDP(model), or the model sharded in place (FSDP2)."""
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # no per-forward buffer sync: the only buffers are constant rotary tables.
            return DDP(model, device_ids=ids, forward_sync_buffers=False)
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in getattr(model, "blocks", []):
                fully_shard(block)
            fully_shard(model)
        return model

    def reshard(self, model: nn.Module) -> None:
        """FSDP2 keeps the root's all-gathered parameters after a forward and reuses them in the next one;
        call this around any in-place change of the sharded parameters (the EMA swap) so none is stale."""
        if self.strategy == "fsdp":
            for module in model.modules():
                if hasattr(module, "reshard"):
                    module.reshard()

    def no_sync(self, wrapped: nn.Module, skip: bool):
        """Within gradient accumulation: skip the gradient reduction of all but the last micro-batch."""
        if not skip or self.strategy == "none":
            return contextlib.nullcontext()
        if self.strategy == "ddp":
            return wrapped.no_sync()
        return _fsdp_no_sync(wrapped)

    # ------------------------------------------------------------------ full state for checkpoints

    def full_model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every parameter and persistent buffer as a full CPU tensor (tied weights once), on every rank."""
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def load_full_model_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        else:
            model.load_state_dict(state)

    def full_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_optimizer_state_dict(model, opt, options=opts)
        return opt.state_dict()

    def load_full_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(state)

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto", strategy: str = "ddp") -> Dist:
    """Join the process group torchrun set up (WORLD_SIZE > 1), or run alone."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {strategy!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size == 1:
        return Dist(device=dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world_size, device=dev, strategy=strategy)
