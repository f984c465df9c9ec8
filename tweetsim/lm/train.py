"""The one training loop of the project's models, on transformers.Trainer.

The writer LM (tweetsim.lm.model.train_lora), the behaviour LM (tweetsim.likes.behaviour_lm.train) and
the like classifier (tweetsim.likes.classifier.train_classifier) all train through `LoopTrainer`:

- `training_args`: TrainingArguments from a loop's settings (steps, batch, gradient accumulation,
  learning rate, seed, checkpoint period, progress bar). The data order comes from the seed
  (Trainer's seedable sampler), so the same params give the same weights.
- `LoopTrainer`: Trainer with the project's learning-rate schedule (`warmup_cosine` or any
  LambdaLR multiplier), optional parameter groups (the image projector's own learning rate), an
  optional loss function (the classifier's class-weighted cross-entropy), the exact loss of every
  optimizer step (`step_losses`), the gradient norm of a probed module at the first step run, and
  checkpoints that hold only the trainable weights (LoRA, projector): a few MB, not the base model.
- `run`: resume from the last checkpoint of an interrupted run; a finished run's checkpoint is
  never resumed (it starts over), and a checkpoint of another format is never read.
- `LiveCallback`: the curves in DVCLive under the names the stages always wrote (train/loss,
  train/lr), continued on resume.

transformers' Trainer takes about 10 s to import on 2 cores, so the modules that train import this
one inside their training functions: the commands and the other stages never pay for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

logger = logging.getLogger(__name__)

# part of every checkpoint key: a checkpoint written by another layout of this module is never resumed
CHECKPOINT_FORMAT = "trainer-1"
TRAINABLE_FILE = "trainable.safetensors"
LOSSES_FILE = "step_losses.json"
MARKER_FILE = "step.json"  # in the checkpoint folder: the last complete checkpoint's step and losses


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(warmup_steps: int, steps: int) -> Callable[[int], float]:
    """LR multiplier per step (LambdaLR): linear warmup, then cosine down to 10% at `steps`."""
    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return lr_at


def warmup_linear(warmup_steps: int, steps: int) -> Callable[[int], float]:
    """LR multiplier per step: linear warmup, then linear decay to 0 at `steps`."""
    def lr_at(step: int) -> float:
        return min((step + 1) / max(1, warmup_steps), max(0.0, (steps - step) / max(1, steps - warmup_steps)))
    return lr_at


def training_args(output_dir: str | Path, *, steps: int, batch_size: int, lr: float, seed: int, grad_accum: int = 1,
                  weight_decay: float = 0.0, max_grad_norm: float = 0.0, save_every: int | None = None,
                  log_every: int = 1, eval_every: int | None = None, metric: str | None = None,
                  progress: bool = True, num_threads: int | None = None):
    """TrainingArguments of one loop. `save_every`: None = no checkpoint, 0 = at the end only, N = every N
    steps and at the end. `eval_every` + `metric`: evaluate every N steps and at the end, lower is better."""
    from transformers import TrainingArguments

    if num_threads and not torch.cuda.is_available():
        torch.set_num_threads(int(num_threads))
    saving = save_every is not None
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=int(steps), per_device_train_batch_size=int(batch_size),
        gradient_accumulation_steps=int(grad_accum), learning_rate=float(lr), weight_decay=float(weight_decay),
        max_grad_norm=float(max_grad_norm), seed=int(seed), data_seed=int(seed),
        logging_strategy="steps", logging_steps=max(1, int(log_every)),
        save_strategy="steps" if saving else "no", save_steps=int(save_every or steps) if saving else 500,
        save_total_limit=2 if saving else None, save_only_model=False,
        eval_strategy="steps" if eval_every else "no", eval_steps=int(eval_every) if eval_every else None,
        metric_for_best_model=metric, greater_is_better=False if metric else None,
        report_to="none", disable_tqdm=not progress, remove_unused_columns=False, dataloader_pin_memory=False,
        use_cpu=not torch.cuda.is_available(), include_num_input_tokens_seen="no")


def drop_inert_gguf_quantizer(model: torch.nn.Module) -> None:
    """Forget a GGUF quantizer that quantizes nothing, so Trainer agrees to train the model.

    The converted SmolLM2 folder (tweetsim.lm.model.ensure_smollm2) keeps the GGUF quantization_config of
    its source file: loaded from its safetensors, every layer is a plain float Linear and nothing is
    packed, but the leftover quantizer marks the model as quantized with a method Trainer refuses to
    train. A quantizer that did pack layers (a model loaded straight from a GGUF file) is kept."""
    for module in model.modules():
        q = getattr(module, "hf_quantizer", None) if isinstance(module, PreTrainedModel) else None
        method = getattr(getattr(q, "quantization_config", None), "quant_method", None)
        if q is not None and getattr(method, "value", method) == "gguf" and not getattr(q, "packed_modules", None):
            q.remove_quantization_config(module)


class _Bar(ProgressCallback):
    """Trainer's progress bar without a printed line per log: the loss goes into the bar."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}")

class LoopTrainer(Trainer):
    """Trainer with the project's schedule, parameter groups, loss, step losses and small checkpoints.

    lr_lambda: LR multiplier per optimizer step (a LambdaLR), the schedules the former loops used.
    param_groups: optimizer groups (AdamW) instead of Trainer's decay / no-decay split.
    loss_fn(logits, labels): replaces the model's own loss.
    grad_probe: a module whose gradient norm at the first step run is kept in `first_grad_norm`
      (the image projector: > 0 shows the image path really trains).
    evaluate_fn(trainer) -> dict: replaces Trainer's evaluation loop (metrics without the eval_ prefix).
    """

    def __init__(self, *args, lr_lambda: Callable[[int], float] | None = None, param_groups: list[dict] | None = None,
                 loss_fn: Callable | None = None, grad_probe: torch.nn.Module | None = None,
                 evaluate_fn: Callable | None = None, **kwargs):
        if kwargs.get("model") is not None:
            drop_inert_gguf_quantizer(kwargs["model"])
        super().__init__(*args, **kwargs)
        self.lr_lambda, self.param_groups, self.loss_fn = lr_lambda, param_groups, loss_fn
        self.grad_probe, self.evaluate_fn = grad_probe, evaluate_fn
        self.first_grad_norm: float | None = None
        self.step_losses: list[float] = []
        self._pending_loss: float | None = None
        if loss_fn is not None:  # a per-batch mean: Trainer divides it by the accumulation steps itself
            self.model_accepts_loss_kwargs = False
            self.loss_is_scaled_for_ga = False
        if not self.args.disable_tqdm:
            self.remove_callback(ProgressCallback)
            self.add_callback(_Bar())

    # ------------------------------------------------------------------------------ optimisation
    def create_optimizer(self, model=None):
        if self.optimizer is None and self.param_groups is not None:
            self.optimizer = torch.optim.AdamW(self.param_groups, weight_decay=self.args.weight_decay)
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.lr_lambda is not None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.lr_lambda)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_fn is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)  # already scaled for accumulation
        self._pending_loss = (self._pending_loss or 0.0) + float(loss)
        if self.grad_probe is not None and self.first_grad_norm is None:
            self.first_grad_norm = float(sum(p.grad.detach().float().norm() ** 2 for p in self.grad_probe.parameters()
                                             if p.grad is not None) ** 0.5)
        return loss

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # called right after each optimizer step (and at an epoch's end, with no step pending)
        if self._pending_loss is not None:
            self.step_losses.append(self._pending_loss)
            self._pending_loss = None
        return super()._maybe_log_save_evaluate(*args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if self.evaluate_fn is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.evaluate_fn(self).items()}
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ------------------------------------------------------------------------------ checkpoints
    def _trainable(self) -> dict[str, torch.Tensor]:
        inner = self.accelerator.unwrap_model(self.model)
        return {n: p.detach().cpu().contiguous() for n, p in inner.named_parameters() if p.requires_grad}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # the trainable weights only: a checkpoint of the frozen base would cost its full size each time
        if not self.args.should_save:
            return
        from safetensors.torch import save_file

        os.makedirs(output_dir, exist_ok=True)
        save_file(self._trainable(), os.path.join(output_dir, TRAINABLE_FILE), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from safetensors.torch import load_file

        state = load_file(os.path.join(resume_from_checkpoint, TRAINABLE_FILE))
        inner = self.accelerator.unwrap_model(model or self.model)
        params = dict(inner.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        if missing or set(state) - set(params):
            raise ValueError(f"checkpoint {resume_from_checkpoint} does not fit the model: missing {missing[:3]}, "
                             f"unexpected {sorted(set(state) - set(params))[:3]}")
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(v.to(params[n].device, params[n].dtype))
        losses = Path(resume_from_checkpoint) / LOSSES_FILE
        self.step_losses = json.loads(losses.read_text()) if losses.is_file() else []

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            run_dir = Path(self._get_output_dir(trial=trial))
            step = self.state.global_step
            (run_dir / f"checkpoint-{step}" / LOSSES_FILE).write_text(json.dumps(self.step_losses))
            # written last: marks the checkpoint complete
            (run_dir / MARKER_FILE).write_text(json.dumps({"step": step, "losses": self.step_losses,
                                                           "finished": step >= self.state.max_steps}))

class LiveCallback(TrainerCallback):
    """DVCLive curves train/loss and train/lr every `log_every` steps; a resumed run continues the curves."""

    def __init__(self, live_dir: str | Path, trainer):
        self.live_dir, self.trainer, self.live = Path(live_dir), trainer, None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from dvclive import Live

        self.live = Live(str(self.live_dir), resume=state.global_step > 0, dvcyaml=None, save_dvc_exp=False)
        if state.global_step:
            self.live.step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.live is None or not logs or "loss" not in logs:
            return
        self.live.log_metric("train/loss", self.trainer.step_losses[-1])
        self.live.log_metric("train/lr", logs.get("learning_rate", self.trainer._get_learning_rate()))
        self.live.next_step()

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()
            self.live = None


def resume_point(checkpoint_dir: str | Path | None, steps: int, resume: bool) -> str | None:
    """The checkpoint to resume from: the last one of an interrupted run in `checkpoint_dir`, else None.

    A finished run's checkpoint (its step >= `steps`) is not resumed: re-running a finished
    configuration (a code change the key does not see) trains it again from the start, with its
    curves, instead of loading its end state and training zero steps. Without `resume`, or when
    starting over, the folder's old checkpoints are removed so none is picked up later (only those: the
    folder may be shared)."""
    if checkpoint_dir is None:
        return None
    folder = Path(checkpoint_dir)
    marker = folder / MARKER_FILE  # names the last complete checkpoint (a killed save leaves a partial one)
    done = json.loads(marker.read_text())["step"] if marker.is_file() else None
    last = folder / f"checkpoint-{done}"
    if done is not None and resume and (last / TRAINABLE_FILE).is_file():
        # logged as warnings: the stages configure no logging and this must show in `dvc repro`
        if done < steps:
            logger.warning("resuming from %s at step %d of %d", last, done, steps)
            return str(last)
        logger.warning("%s is the checkpoint of a finished run (step %d of %d): training from the start", last, done, steps)
    for stale in folder.glob("checkpoint-*") if folder.is_dir() else ():
        shutil.rmtree(stale)
    (folder / MARKER_FILE).unlink(missing_ok=True)
    return None


def run(trainer, checkpoint_dir: str | Path | None, resume: bool = True) -> dict:
    """Train (resuming where `resume_point` says); returns resumed_from, steps, seconds_per_step, losses."""
    import time

    start_from = resume_point(checkpoint_dir, trainer.args.max_steps, resume)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=start_from)
    seconds = time.perf_counter() - t0
    start = int(Path(start_from).name.rsplit("-", 1)[1]) if start_from else 0
    n_run = trainer.state.global_step - start
    return {"resumed_from": start, "steps": trainer.state.global_step, "losses": list(trainer.step_losses),
            "seconds_per_step": seconds / n_run if n_run else float("nan")}


def scratch_dir() -> str:
    """An output folder for a Trainer that writes no checkpoint (Trainer always wants one)."""
    return tempfile.mkdtemp(prefix="tweetsim-train-")
