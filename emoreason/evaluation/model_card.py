"""A model card (``README.md``) for an emoreason checkpoint, after Mitchell et al. (2019), "Model Cards for
Model Reporting".

Everything on the card is read from the checkpoint folder (``config.json``, ``lora/adapter_config.json``,
``training_data.json``) and from evaluation runs (``results.json``); the fixed text (intended use, the EU AI
Act prohibition, limitations, ethics) lives in ``templates/model_card.md.jinja``. The YAML front matter makes
it a Hugging Face model card.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from importlib import resources
from pathlib import Path

import jinja2

from emoreason import __version__
from emoreason.au import AU_CODES, REGIONS
from emoreason.evaluation.report import NA, SUMMARY_HEADER, load_runs, per_class_rows, summary_row

TEMPLATE = "model_card.md.jinja"
TAGS = ["emotion-recognition", "facial-action-units", "facs", "video", "multimodal", "explainability"]
_PARTS = {  # config key -> (role, size fields worth printing)
    "face_config": ("face tower", ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")),
    "audio_config": ("audio tower (encoder)", ("d_model", "encoder_layers", "encoder_attention_heads", "num_mel_bins")),
    "text_config": ("language model", ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                       "intermediate_size", "vocab_size")),
}  # fmt: skip


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _components(config: dict) -> list[dict]:
    parts = []
    for key, (role, fields) in _PARTS.items():
        sub = config.get(key) or {}
        size = ", ".join(
            f"{f.replace('num_', '').replace('_', ' ')} {sub[f]}" for f in fields if sub.get(f) is not None
        )
        parts.append({"role": role, "model_type": sub.get("model_type", "unknown"), "size": size or NA,
                      "base": f"`{sub['_name_or_path']}`" if sub.get("_name_or_path") else "not recorded"})  # fmt: skip
    return parts


def _budget(config: dict) -> dict:
    slots, queries = config.get("face_temporal_slots", 4), config.get("face_queries_per_region", 1)
    codes = config.get("au_codes") or list(AU_CODES)  # EmoReasonConfig's default
    return {"regions": len(REGIONS), "queries": queries, "slots": slots, "face_tokens": len(REGIONS) * queries * slots,
            "audio_tokens": config.get("num_audio_tokens", 16), "max_frames": config.get("max_frames", 16),
            "au_count": len(codes), "au_codes": ", ".join(codes), "freeze_towers": config.get("freeze_towers", True)}  # fmt: skip


def _lora(checkpoint: Path) -> dict | None:
    path = checkpoint / "lora" / "adapter_config.json"
    if not path.is_file():
        return None
    adapter = _read_json(path)
    targets = adapter.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else sorted(targets)
    return {"r": adapter.get("r", NA), "alpha": adapter.get("lora_alpha", NA), "dropout": adapter.get("lora_dropout", NA),
            "targets": ", ".join(f"`{t}`" for t in targets) or NA}  # fmt: skip


def _training_data(checkpoint: Path) -> list[str] | None:
    """``training_data.json`` as bullet lines: one per key of an object, one per item of a list."""
    path = checkpoint / "training_data.json"
    if not path.is_file():
        return None
    data = _read_json(path)
    if isinstance(data, dict):
        return [f"{key}: {_show(value)}" for key, value in data.items()]
    return [_show(item) for item in data] if isinstance(data, list) else [_show(data)]


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sampling error only)."""
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def _interval(run: dict) -> str:
    emotion = run["metrics"].get("emotion") or {}
    war, n = emotion.get("war", emotion.get("accuracy")), emotion.get("n")
    if war is None or not n:
        return f"WAR 95% interval: {NA}."
    lo, hi = _wilson(war, n)
    return f"WAR {100 * war:.2f} (95% Wilson interval {100 * lo:.2f}-{100 * hi:.2f}, n = {n})."


def _same_path(path: str | None, checkpoint: Path) -> bool:
    return bool(path) and Path(path).expanduser().resolve() == checkpoint.resolve()


def _evaluation(checkpoint: Path, results_dir: Path | None) -> tuple[list[dict], str]:
    if results_dir is None:
        return [], "No evaluation results were given when this card was written (`results_dir` was not set)."
    runs = load_runs(results_dir)
    if not runs:
        return [], f"No evaluation runs (`results.json`) were found below `{results_dir}`."
    mine = [r for r in runs if _same_path((r.get("model") or {}).get("path"), checkpoint)]
    if mine:
        return mine, f"Runs below `{results_dir}` whose model is this checkpoint:"
    return runs, (f"No run below `{results_dir}` names this checkpoint as its model, so all {len(runs)} runs there "
                  "are shown (including other models and backends): read the Model column.")  # fmt: skip


def write_model_card(checkpoint: str | Path, results_dir: str | Path | None = None) -> Path:
    """Write ``<checkpoint>/README.md``, a model card with YAML front matter for the Hugging Face Hub.

    Args:
        checkpoint: an emoreason checkpoint folder (must hold ``config.json``).
        results_dir: a folder of evaluation runs; the runs whose ``model.path`` is this checkpoint are
            tabulated (all runs if none is), with per-class breakdowns.

    Returns:
        The path of the written card.

    Raises:
        FileNotFoundError: ``checkpoint/config.json`` (named in the message) or ``results_dir`` is missing.
        ValueError: a JSON file in the checkpoint or a ``results.json`` is malformed (named in the message).

    >>> write_model_card("checkpoints/sft", "results")  # doctest: +SKIP
    PosixPath('checkpoints/sft/README.md')
    """
    checkpoint = Path(checkpoint)
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; is {checkpoint} an emoreason checkpoint folder?")
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    runs, eval_note = _evaluation(checkpoint, Path(results_dir) if results_dir is not None else None)
    lora = _lora(checkpoint)
    today = date.today()
    context = {
        "name": checkpoint.resolve().name, "checkpoint": checkpoint.as_posix(), "version": __version__,
        "date": today.isoformat(), "year": today.year, "tags": TAGS + (["lora"] if lora else []),
        "cite_key": re.sub(r"\W+", "_", checkpoint.resolve().name).strip("_").lower() or "checkpoint",
        "components": _components(config), "budget": _budget(config), "lora": lora,
        "training_data": _training_data(checkpoint), "eval_note": eval_note, "header": SUMMARY_HEADER,
        "runs": [summary_row(r) for r in runs],
        "breakdowns": [{"run": r["run"], "interval": _interval(r), "rows": per_class_rows(r)}
                       for r in runs if per_class_rows(r)],
    }  # fmt: skip
    source = (resources.files("emoreason") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    out = checkpoint / "README.md"
    out.write_text(env.from_string(source).render(**context), encoding="utf-8")
    return out


__all__ = ["write_model_card"]
