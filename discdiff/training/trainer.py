"""The training loop: AdamW, warm-up + cosine, clipping, EMA, accumulation, NaN guard, exact resume.

    from discdiff.training import Trainer, load_config
    Trainer(load_config("configs/shakespeare-char-masked.yaml", ["steps=200"])).fit()

Randomness plan (what makes --resume bit-exact and a run independent of how it is split over ranks):
every draw of optimizer step s comes from a generator seeded by seed_for(seed, s, stream, index):

    stream TIMES   one stratified draw of t over the *global* batch, identical on every rank; each
                   micro-batch takes its rows' slice
    stream NOISE   the per-position noise of global micro-batch c (c counts over ranks and accumulation)
    stream GLOBAL  torch's global RNG (dropout), per rank

and the data order comes from discdiff.data.TokenLoader, whose position is saved. So resuming needs
only the step and the loader state; the checkpoint still restores every rank's global RNG states for
user code that draws from them. Each rank reads the whole global batch (cheap: memory-mapped windows)
and keeps its contiguous rows; with a fixed micro_batch_size, N processes reproduce one process
accumulating N micro-batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch

from discdiff.data import TokenLoader
from discdiff.evaluation import LikelihoodResult
from discdiff.progress import Progress, write
from discdiff.seeding import seed_global_generators

from .artifacts import CheckpointError
from .checkpoint import Checkpoint, find_resumable, latest_checkpoint, save_checkpoint, set_rng_state
from .conditioning import (
    batch_conditions,
    check_labels,
    conditioning_record,
    init_weights_from,
    scored_positions,
    with_dropped_prompts,
)
from .config import TrainConfig, config_from_dict, config_to_dict
from .data import open_data
from .distributed import init_distributed, seed_for
from .ema import EMA
from .recipe import build_diffusion, build_model, draw_times, make_objective, save_pretrained
from .rundir import open_run, trim_metrics
from .validation import EVAL_DRAWS, validation_nll

__all__ = ["EVAL_DRAWS", "Trainer", "TrainingDiverged", "lr_at"]

INIT, DATA, TIMES, NOISE, GLOBAL, EVAL, COND = range(7)  # random streams (COND: condition dropout)
# Changing these breaks exact resumption; the others (steps, logging, ...) may change between runs.
RESUME_KEYS = ("model", "diffusion", "data", "optim", "batch_size", "micro_batch_size", "seed")


class TrainingDiverged(RuntimeError):
    """Raised after max_bad_steps consecutive non-finite steps; the last checkpoint is untouched."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to optim.lr over warmup_steps, then cosine decay to min_lr_ratio * lr at cfg.steps."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """Trains cfg into cfg.out_dir, which it locks for its lifetime (released by fit() or close()).

    resume=True continues from the newest checkpoint there that verifies (a new run when there is none at
    all); overwrite=True deletes an earlier run there first; with neither, a directory that holds a run
    (checkpoints/ or pretrained/) is refused. See discdiff/training/rundir.py.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, overwrite: bool = False):
        if not isinstance(cfg.steps, int) or cfg.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {cfg.steps!r} (no step would train anything)")
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dist = dist = init_distributed(cfg.device, cfg.parallel)
        self.out = Path(cfg.out_dir)
        start = open_run(self.out, dist, resume=resume, overwrite=overwrite, log=self.log)
        self.lock, ckpt, self.damaged = start
        try:
            self._build(ckpt)
        except BaseException:
            self.close()
            raise

    def _build(self, ckpt: Checkpoint | None) -> None:
        cfg, dist = self.cfg, self.dist
        self.data = open_data(cfg.data)
        vocab = self.data.vocab_size
        self.micro, self.accum = self._batch_split()
        self.diffusion = build_diffusion(cfg.diffusion, vocab, block_size=cfg.model.block_size)
        self.objective = make_objective(cfg.diffusion, self.diffusion, vocab)
        torch.manual_seed(seed_for(cfg.seed, INIT))  # same initial weights on every rank
        self.model = build_model(cfg.model, cfg.diffusion, vocab, cfg.data.context)
        check_labels(cfg.model.num_classes, self.data.train, cfg.condition_dropout, self.diffusion,
                     cfg.model.block_size)
        if cfg.init_from and ckpt is None:  # a new run from another model's weights (resume keeps its own)
            self.log(f"initialised from {init_weights_from(self.model, cfg.init_from)}")
        if ckpt is not None:
            self._check_resumable(ckpt.state)
            with _restoring(ckpt, "model.safetensors"):
                self.model.load_state_dict(ckpt.model)  # before wrapping: DDP / FSDP start from it
        self.model.to(dist.device)
        self.wrapped = dist.wrap(self.model)
        self.forward_model = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        o = cfg.optim
        fused = dist.strategy != "fsdp"  # one kernel per step on CPU and GPU; FSDP2's DTensors use foreach
        self.opt = torch.optim.AdamW(self.wrapped.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                                     weight_decay=o.weight_decay, fused=fused)
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        self.loader = TokenLoader(self.data.train, cfg.batch_size, seed=seed_for(cfg.seed, DATA))
        self.step, self.bad_steps, self.tokens_seen = 0, 0, 0
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dist.device.type == "cuda")
        if cfg.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {cfg.precision!r}")
        self.autocast = lambda: torch.autocast(dist.device.type, torch.bfloat16, enabled=bf16)
        if ckpt is not None:
            self._restore(ckpt)
        self.log(f"resumed from {ckpt.path} at step {self.step}" if ckpt else f"starting a new run in {self.out}")

    # ------------------------------------------------------------------ setup helpers

    def _batch_split(self) -> tuple[int, int]:
        cfg, world = self.cfg, self.dist.world_size
        micro = cfg.micro_batch_size or cfg.batch_size // world
        if micro < 1 or cfg.batch_size % (micro * world):
            raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of micro_batch_size={micro} "
                             f"x world_size={world}")
        return micro, cfg.batch_size // (micro * world)

    def _check_resumable(self, saved: dict) -> None:
        now = config_to_dict(self.cfg)
        saved_cfg = config_to_dict(config_from_dict(saved["config"]))  # validated, with today's defaults
        for key in RESUME_KEYS:
            if saved_cfg[key] != now[key]:
                raise ValueError(f"cannot resume exactly: config {key!r} differs from the checkpoint's "
                                 f"({saved_cfg[key]!r} vs {now[key]!r})")
        if saved["vocab_size"] != self.data.vocab_size:
            raise ValueError(f"cannot resume: the checkpoint's vocab_size is {saved['vocab_size']}, the data's "
                             f"{self.data.vocab_size}")
        if saved["step"] > self.cfg.steps:
            raise ValueError(f"cannot resume: the checkpoint is at step {saved['step']}, beyond steps="
                             f"{self.cfg.steps} (raise steps to continue it)")

    def _restore(self, ckpt: Checkpoint) -> None:
        state = ckpt.state
        with _restoring(ckpt, "optimizer.safetensors"):
            self.dist.load_full_optimizer_state(self.model, self.opt, ckpt.optimizer)
        if self.ema is not None:
            with _restoring(ckpt, "ema.safetensors"):
                if ckpt.ema is None:
                    raise KeyError("no EMA weights")
                self.ema.load_full_state(ckpt.ema)
        with _restoring(ckpt, "state.json"):
            self.loader.load_state_dict(state["data"])
        self.step, self.bad_steps, self.tokens_seen = state["step"], state["bad_steps"], state["tokens_seen"]
        if ckpt.rng is not None:
            with _restoring(ckpt, f"rng_rank{self.dist.rank}.safetensors"):
                set_rng_state(ckpt.rng)
        if self.dist.is_main:  # forget metrics logged after the checkpoint by the run that died
            torn = trim_metrics(self.out / "metrics.jsonl", self.step)
            if torn:
                self.log(torn)

    # ------------------------------------------------------------------ one optimizer step

    def train_step(self, batch) -> dict:
        cfg, dist, step = self.cfg, self.dist, self.step
        seed_global_generators(seed_for(cfg.seed, step, GLOBAL, dist.rank), dist.device)  # dropout masks
        n_real = int(scored_positions(batch).sum())  # scored tokens in the global batch: the loss is nats per token
        times = draw_times(cfg.diffusion, self.diffusion, cfg.batch_size,
                           torch.Generator().manual_seed(seed_for(cfg.seed, step, TIMES)))
        total = torch.zeros((), dtype=torch.float64, device=dist.device)
        self.model.train()
        for j in range(self.accum):
            chunk = dist.rank * self.accum + j  # global micro-batch index
            rows = slice(chunk * self.micro, (chunk + 1) * self.micro)
            x0 = batch.tokens[rows].to(dist.device, non_blocking=True)
            mask = batch.mask[rows].to(dist.device, non_blocking=True)
            gen = torch.Generator(dist.device).manual_seed(seed_for(cfg.seed, step, NOISE, chunk))
            extra = batch_conditions(batch, rows, cfg, seed_for(cfg.seed, step, COND, chunk), dist.device)
            model = with_dropped_prompts(self.forward_model, extra, self.diffusion)
            with dist.no_sync(self.wrapped, skip=j < self.accum - 1), self.autocast():
                loss = self.objective(model, x0, mask, times[rows].to(dist.device), gen, **extra)
                # gradient of (global sum / global tokens); DDP and FSDP average over ranks, so undo that
                (loss.float().sum() * (dist.world_size / n_real)).backward()
            total += loss.detach().double().sum()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), cfg.optim.grad_clip or math.inf)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        loss_per_token = float(dist.all_reduce_sum(total)) / n_real
        skipped = not math.isfinite(grad_norm)
        if skipped:
            self._bad_step(loss_per_token, grad_norm)
        else:
            self.bad_steps = 0
            for group in self.opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            self.opt.step()
            if self.ema is not None:
                self.ema.update(step)
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += n_real
        return {"loss": loss_per_token, "grad_norm": grad_norm, "lr": lr_at(step, cfg), "skipped": skipped,
                "tokens": n_real}

    def _bad_step(self, loss: float, grad_norm: float) -> None:
        self.bad_steps += 1
        msg = (f"step {self.step}: non-finite gradients (loss {loss}, grad norm {grad_norm}); update skipped "
               f"({self.bad_steps}/{self.cfg.max_bad_steps} in a row)")
        self.log(msg)
        self._write_metrics({"step": self.step, "event": "skipped_nonfinite", "loss": str(loss)})
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingDiverged(
                f"training stopped: {self.bad_steps} consecutive steps had non-finite gradients (last at step "
                f"{self.step}). No update from them was applied; the last good checkpoint is "
                f"{latest_checkpoint(self.out)}. Try a lower optim.lr, optim.grad_clip, or precision=fp32.")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> LikelihoodResult | None:
        """Validation NLL (EMA weights when enabled) by the estimator ``discdiff eval`` uses, as a
        ``discdiff.evaluation.LikelihoodResult`` (nats per real token with its standard error), or None.

        What is measured follows the data, as in ``discdiff eval`` (``discdiff.training.validation``): on
        prompt-response pairs -log p(response | prompt) (the loss mask), on labelled data of a class-conditional
        model -log p(x | c), on EOS records bits per real token (record + its one EOS; padding apart).
        Windows: a seeded spread over the whole validation split (``spread_sample``, seed from the run's
        seed), the same at every evaluation of a run so the curve compares like with like. Work:
        ``eval_batches`` forwards' worth of ``micro`` rows. A diffusion model's chunk c holds
        max(1, micro // EVAL_DRAWS) windows, each with EVAL_DRAWS times stratified per window
        (``Diffusion.nll``); the AR baseline's chunk holds ``micro`` windows, scored exactly. Chunk c draws
        from seed_for(seed, EVAL, c) and ranks take every world_size-th chunk, then all-reduce the
        per-window values, so the result does not depend on the number of processes.
        """
        return validation_nll(self, EVAL)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict:
        """Train to cfg.steps, then validate, save a checkpoint and OUT/pretrained/; releases the run lock."""
        cfg = self.cfg
        try:
            batches = iter(self.loader)
            bar = Progress(cfg.steps, initial=self.step, desc="train",
                           enabled=bool(cfg.progress and self.dist.is_main))
            window, t0, last = [], time.perf_counter(), {}
            with bar:
                while self.step < cfg.steps:
                    window.append(self.train_step(next(batches)))
                    shown = {}
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        last = self._log_window(window, time.perf_counter() - t0, bar)
                        window, t0 = [], time.perf_counter()
                        shown = {"loss": last["loss"], "tok/s": f"{last['tokens_per_s']:.0f}"}
                    bar.update(1, **shown)
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                        self._log_eval(bar)
                    if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                        self.save()
            val = self._log_eval(bar)
            self.save()
            self.save_pretrained(self.out / "pretrained")
        finally:
            self.close()
        return {**last, "val_loss": val, "step": self.step}

    def close(self) -> None:
        """Release the run directory (fit() does it when it ends; a later save() takes it again)."""
        if hasattr(self, "lock"):
            self.lock.release()

    def _log_window(self, window: list[dict], seconds: float, bar) -> dict:
        good = [m for m in window if not m["skipped"]] or window
        row = {
            "step": self.step,
            "loss": sum(m["loss"] for m in good) / len(good),
            "lr": window[-1]["lr"],
            "grad_norm": window[-1]["grad_norm"],
            "tokens_per_s": sum(m["tokens"] for m in window) / max(seconds, 1e-9),
            "tokens": self.tokens_seen,
            "skipped": sum(m["skipped"] for m in window),
        }
        self._write_metrics(row)
        return row

    def _log_eval(self, bar) -> float | None:
        res = self.evaluate()
        if res is None:
            return None
        val, se = res.nats_per_token, res.stderr_nats_per_token
        self._write_metrics({"step": self.step, "val_loss": val, "val_stderr": se,
                             "val_bits_per_token": val / math.log(2), "val_windows": res.sequences})
        self.log(f"step {self.step}: validation {val:.4f} ± {se:.4f} nats/token ({val / math.log(2):.4f} bits; "
                 f"{res.sequences} windows spread over the split)")
        return val

    # ------------------------------------------------------------------ persistence

    def save(self) -> Path | None:
        """A resumable checkpoint (collective: call it on every rank)."""
        if self.dist.is_main:
            self.lock.acquire()
        state = {"step": self.step, "bad_steps": self.bad_steps, "tokens_seen": self.tokens_seen,
                 "data": self.loader.state_dict(), "config": config_to_dict(self.cfg),
                 "world_size": self.dist.world_size, "vocab_size": self.data.vocab_size,
                 "conditioning": conditioning_record(self.cfg.model.num_classes, self.cfg.condition_dropout,
                                                     self.data.train)}
        return save_checkpoint(
            self.out, self.step, self.dist,
            model_state=self.dist.full_model_state(self.model),
            ema_state=self.ema.full_state() if self.ema else None,
            optim_state=self.dist.full_optimizer_state(self.model, self.opt),
            state=state, keep=self.cfg.keep_checkpoints, tokenizer_dir=self.data.tokenizer_dir, damaged=self.damaged,
        )

    def save_pretrained(self, directory) -> None:
        """config.json + model.safetensors (EMA weights when enabled) + tokenizer (collective)."""
        weights = self.dist.full_model_state(self.model)
        if self.ema is not None:
            weights = {**weights, **self.ema.full_state(aliases=True)}
        if self.dist.is_main:
            self.lock.acquire()
            save_pretrained(directory, self.model, model_cfg=self.cfg.model, diffusion_cfg=self.cfg.diffusion,
                            vocab_size=self.data.vocab_size, context=self.cfg.data.context, weights=weights,
                            tokenizer_dir=self.data.tokenizer_dir, conditioning=conditioning_record(
                                self.cfg.model.num_classes, self.cfg.condition_dropout, self.data.train),
                            records=getattr(self.data.train, "record_layout", lambda: None)())
        self.dist.barrier()

    def _write_metrics(self, row: dict) -> None:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            write(f"[discdiff] {msg}")

    @classmethod
    def from_checkpoint_config(cls, out_dir, overrides: dict | None = None) -> Trainer:
        """Resume a run from the config stored in its newest checkpoint that verifies (out_dir stays out_dir)."""
        found = find_resumable(out_dir)
        if found.checkpoint is None:
            why = f" ({found.skipped[-1]})" if found.skipped else ""
            raise CheckpointError(f"{out_dir}: no checkpoint to resume from{why}")
        saved = {**found.checkpoint.state["config"], "out_dir": str(out_dir)}
        return cls(config_from_dict({**saved, **(overrides or {})}), resume=True)


@contextlib.contextmanager
def _restoring(ckpt: Checkpoint, name: str):
    """Turn a failure to restore part of a verified checkpoint into one line naming the file."""
    try:
        yield
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{ckpt.path / name}: cannot restore it ({reason})") from None
