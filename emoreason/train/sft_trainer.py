"""The SFT trainer: TRL's ``SFTTrainer`` with the loss the emoreason model computes itself.

Its own module, at module level, so it can be imported, documented and tested; it needs ``trl``, so only the SFT
stage (:func:`emoreason.train.sft.build_trainer`) imports it.
"""

from __future__ import annotations

import torch
from trl import SFTTrainer


class EmoReasonSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer whose loss is the model's: token cross-entropy at the answer positions only, plus the AU
    head's weighted loss.

    One override, ``compute_loss`` (TRL 1.16 says to subclass for a custom loss; its ``compute_loss_func`` is
    deprecated). TRL's own paths cost what this model does not need: ``compute_loss_func`` gets the logits of every
    position (the full-vocabulary log-softmax over a prompt that is two thirds of a row) and then runs a second,
    no-grad forward for the entropy and token-accuracy metrics; its fused LM head scores every position off
    Triton devices (CPU) and drops the AU loss. Here one forward gathers the answer positions' hidden states before
    the LM head (``EmoReasonForConditionalGeneration.answer_loss``) and the metrics come from those same logits.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(**inputs, use_cache=False, num_items_in_batch=num_items_in_batch)
        loss = outputs.lm_loss
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # the token count is every rank's; DDP averages gradients
        if outputs.au_loss is not None:
            # a per-micro-batch mean: with num_items_in_batch the Trainer leaves accumulation to the loss
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + model_config(model).au_loss_weight * outputs.au_loss / steps
        self._log_answer_metrics(mode, outputs, inputs)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _log_answer_metrics(self, mode: str, outputs, inputs: dict) -> None:
        """TRL's entropy and token accuracy (over the answer tokens), plus the AU head's loss, from the logits the
        loss already built: no second forward."""
        logits, labels = outputs.logits.float(), inputs["labels"]  # [N, V], [B, L]
        targets = labels[:, 1:][labels[:, 1:] != -100].to(logits.device)
        count = self.accelerator.gather_for_metrics(torch.tensor(float(len(targets)), device=logits.device)).sum()
        log_probs = logits.log_softmax(-1)
        entropy = -(log_probs.exp() * log_probs).sum()
        correct = (logits.argmax(-1) == targets).sum().float()
        entropy, correct = (self.accelerator.gather_for_metrics(x).sum() for x in (entropy, correct))
        self._metrics[mode]["entropy"].append((entropy / count).item() if count > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((correct / count).item() if count > 0 else 0.0)
        if outputs.au_loss is not None:
            self._metrics[mode]["au_loss"].append(self.accelerator.gather_for_metrics(outputs.au_loss.detach()).mean()
                                                  .item())  # fmt: skip
        if mode == "train":
            self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


def model_config(model):
    """The emoreason config of ``model``, through DDP/FSDP wrappers."""
    return getattr(model, "module", model).config

