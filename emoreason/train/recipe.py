"""The recipe dataclasses: what every training stage is told (the checkpoint to start from, the data, media
preprocessing, LoRA) and the checks on those fields.

:class:`TrainRecipe` is the dataclass half of a recipe; TRL's config (``SFTConfig``, ``GRPOConfig``) is the other
half, and ``TrlParser`` reads both from one YAML file plus command-line overrides
(:func:`emoreason.train.stage.parse_recipe`). Problems a user can fix (a missing file, an unknown option) fail at
start with a :class:`RecipeError` that names the field. Each stage's recipe also says which rows it can train on
(:meth:`TrainRecipe.trainable`), so one :func:`~emoreason.train.stage.load_rows` serves every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from emoreason.constants import DEFAULT_ANALYSIS_FPS
from emoreason.data import DataError
from emoreason.data.schema import Sample
from emoreason.train.data import CROP_MODES, TARGET_STYLES, MediaConfig


class RecipeError(DataError):
    """A recipe field (or a TRL argument) that cannot work; the message names the field and says what to do."""


def check_reward_names(names: list[str]) -> None:
    """RecipeError naming ``reward_funcs`` unless every name is a known reward (and there is one)."""
    from emoreason.train.rewards import REWARDS

    unknown = [name for name in names if name not in REWARDS]
    if unknown or not names:
        raise RecipeError(f"reward_funcs: unknown reward(s) {unknown or '(none given)'}; "
                          f"known rewards: {sorted(REWARDS)}")  # fmt: skip


@dataclass
class TrainRecipe:
    """Model, data and media fields shared by the SFT and GRPO recipes.

    A stage's recipe sets ``lacks`` (the skipped-count name of a row it cannot train on, e.g. ``"no target"``)
    and :meth:`trainable` (the test behind it).
    """

    lacks: ClassVar[str] = "nothing to train on"

    model_path: str = field(metadata={"help": "emoreason checkpoint directory to start from"})
    train_data: str = field(metadata={"help": "sample rows (.jsonl) with labels and optional rationales"})
    split: str | None = field(default="train", metadata={"help": "use rows of this split (None: all)"})
    crops: str = field(default="detect", metadata={"help": "detect: align the main face; frames: frames are crops"})
    evidence: bool = field(default=True, metadata={"help": "textualised AU/prosody evidence in the prompt"})
    use_audio: bool = field(default=True, metadata={"help": "feed the audio track"})
    fps: float = field(default=DEFAULT_ANALYSIS_FPS, metadata={"help": "analysis frames per second"})
    cache_dir: str = field(default=".cache/emoreason", metadata={"help": "preprocessed media cache"})
    lora: bool = field(default=True, metadata={"help": "LoRA on the LM (False: train the whole LM)"})
    freeze_language_model: bool = field(default=False, metadata={"help": "alignment: train only the compressor and "
                                        "connectors, the LM frozen (needs lora: false)"})  # fmt: skip
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input (0: none; its random "
                                "numbers cost 15% of a CPU step, and peft's default is 0 too)"})  # fmt: skip
    target: str = field(default="facs", metadata={"help": "facs: the FACS reasoner's chain of thought; compact: "
                                                          "one line of AUs and the conclusion"})  # fmt: skip
    max_samples: int | None = None
    prepare_workers: int = field(default=1, metadata={"help": "media cache preparation: 1 in this process as the "
                                 "rows are read; N > 1: N Ray workers (the [scale] extra) before training starts"})  # fmt: skip
    ray_address: str | None = field(default=None, metadata={"help": "prepare the media cache on this Ray cluster "
                                    "('auto' or HOST:PORT; the cache_dir must be shared by its nodes)"})  # fmt: skip
    prepare_only: bool = field(default=False, metadata={"help": "prepare the media cache, then stop (no training)"})

    def __post_init__(self) -> None:
        for name in ("model_path", "train_data"):
            if not Path(getattr(self, name)).exists():
                raise RecipeError(f"{name}: {getattr(self, name)} does not exist")
        if self.crops not in CROP_MODES:
            raise RecipeError(f"crops: expected one of {CROP_MODES}, got {self.crops!r}")
        if self.target not in TARGET_STYLES:
            raise RecipeError(f"target: expected one of {TARGET_STYLES}, got {self.target!r}")
        if self.freeze_language_model and self.lora:
            raise RecipeError("freeze_language_model: an alignment stage trains no LoRA; set lora: false with it")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise RecipeError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.prepare_workers < 1:
            raise RecipeError(f"prepare_workers must be >= 1, got {self.prepare_workers}")
        if self.fps <= 0 or self.lora_r < 1 or (self.max_samples is not None and self.max_samples < 1):
            raise RecipeError(f"fps, lora_r and max_samples must be positive: {self.fps}, {self.lora_r}, "
                              f"{self.max_samples}")  # fmt: skip

    def media_config(self) -> MediaConfig:
        return MediaConfig(self.crops, self.fps, self.evidence, self.use_audio)

    def trainable(self, sample: Sample) -> bool:
        """Whether this stage can train on ``sample`` of the recipe's split (its media are checked apart); a
        row that can never be right for the recipe raises RecipeError instead."""
        raise NotImplementedError(f"{type(self).__name__} does not say which rows it trains on")
