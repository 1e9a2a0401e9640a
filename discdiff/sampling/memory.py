"""Refuse a sampling request that cannot fit in memory, before anything is allocated."""

from __future__ import annotations

import os

import torch

__all__ = ["address_space_left", "available_memory", "check_memory", "sampling_memory"]


def sampling_memory(num_samples: int, length: int, num_states: int, *, steps: int | None, trajectory_len: int,
                    guidance: bool, dtype: torch.dtype | None = None) -> int:
    """Bytes a sampler holds at once (an estimate, not a bound):

        model outputs [B', L, S] in ``dtype`` + their float64 working copies + the time grid of steps + 1
        float64 values + the trajectory (``trajectory_len`` states [B, L] of int64),

    with B' = 2B under guidance (both passes in one batch).
    """
    itemsize = torch.empty((), dtype=dtype or torch.get_default_dtype()).element_size()
    rows = num_samples * (2 if guidance else 1)
    outputs = rows * length * num_states * (itemsize + 8)
    grid = 8 * (steps + 1) if steps is not None else 0
    return outputs + grid + trajectory_len * num_samples * length * 8


def available_memory(device=None) -> int | None:
    """Free bytes on ``device``: torch.cuda.mem_get_info on CUDA; on Linux the kernel's MemAvailable
    (free pages plus reclaimable cache), else free physical pages (SC_AVPHYS_PAGES); None when the
    platform does not say."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def address_space_left() -> int | None:
    """Bytes this process may still map under its address-space limit (``ulimit -v``, RLIMIT_AS), or None."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as status:
            used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        return max(limit - used, 0)
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def check_memory(needed: int, device=None) -> None:
    """Raise ValueError (one line) when ``needed`` bytes exceed the memory available on ``device`` (on the
    CPU also what the process's address-space limit leaves)."""
    free = available_memory(device)
    if device is None or torch.device(device).type == "cpu":
        left = address_space_left()
        free = left if free is None else free if left is None else min(free, left)
    if free is not None and needed > free:
        raise ValueError(f"this request needs about {needed / 2**30:.3g} GiB but {free / 2**30:.3g} GiB is "
                         "available; ask for fewer samples, a shorter length or fewer steps")
