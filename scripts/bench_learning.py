"""Does training learn? SFT, then GRPO, then one self-improvement round on the toy faces, from a random checkpoint.

    python scripts/bench_learning.py [--out results/bench_learning] [--clips 400] [--sft-steps 600]
                                     [--grpo-steps 40] [--si-steps 100]

Runs the toyfaces recipes (scripts/recipes/toyfaces/) as `emoreason train ...` does, with paths and step counts
overridden, on CPU, from a tiny random-weight checkpoint whose LM is trained whole. Each stage is scored on the
held-out clips (test split: people never seen in training) with greedy answers and the GRPO recipe's rewards;
chance is 1/8 for the emotion. A stage whose `final` checkpoint exists is reused, so a rerun only re-scores.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from emoreason.data.jsonl import read_samples
from emoreason.model.tiny import make_tiny_checkpoint
from emoreason.toyfaces import make_toy_dataset
from emoreason.train.data import MediaConfig
from emoreason.train.grpo import run_grpo
from emoreason.train.rollout import evaluate
from emoreason.train.self_improve import run_self_improve
from emoreason.train.sft import run_sft

RECIPES = Path(__file__).resolve().parent / "recipes" / "toyfaces"
ROWS = [("format", "format (strict 1, repaired 0.5)"), ("emotion", "emotion accuracy"), ("au_f1", "AU F1"),
        ("facs_consistency", "FACS consistency"), ("reward", "mean total reward"), ("unfinished", "cut at max tokens"),
        ("train_s", "training time (s)")]  # fmt: skip


def train(stage: str, run, argv: list[str], out: Path) -> tuple[Path, float]:
    final = out / stage / "final"
    if (final / "model.safetensors").is_file():
        print(f"{stage}: reusing {final}")
        return final, float("nan")
    start = time.perf_counter()
    run(argv + ["--output_dir", str(out / stage), "--disable_tqdm", "true"])
    print(f"{stage}: trained in {time.perf_counter() - start:.0f} s")
    return final, time.perf_counter() - start


def reward_curve(run_dir: Path) -> tuple[float, float] | None:
    """Mean training reward of the first and last logged GRPO steps (from the last checkpoint's state)."""
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    logged = [e["reward"] for e in json.loads(states[-1].read_text())["log_history"] if "reward" in e] if states else []
    return (logged[0], logged[-1]) if logged else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_learning"))
    parser.add_argument("--clips", type=int, default=400, help="toy clips (80%% train, 20%% held-out test)")
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--grpo-steps", type=int, default=40)
    parser.add_argument("--si-steps", type=int, default=100)
    args = parser.parse_args()
    start, out = time.perf_counter(), args.out
    data = out / "data" / "toy.jsonl"
    if not data.is_file():
        make_toy_dataset(out / "data", args.clips, seed=0, size=64)
    tiny = out / "tiny"
    if not (tiny / "model.safetensors").is_file():
        make_tiny_checkpoint(tiny, lora=False)
    common = ["--train_data", str(data), "--cache_dir", str(out / "cache")]
    sft, sft_s = train("sft", run_sft, ["--config", str(RECIPES / "sft.yaml"), "--model_path", str(tiny),
                                        "--max_steps", str(args.sft_steps), *common], out)  # fmt: skip
    grpo, grpo_s = train("grpo", run_grpo, ["--config", str(RECIPES / "grpo.yaml"), "--model_path", str(sft),
                                            "--max_steps", str(args.grpo_steps), "--save_steps",
                                            str(args.grpo_steps), *common], out)  # fmt: skip
    si, si_s = train("self_improve", run_self_improve, ["--config", str(RECIPES / "self_improve.yaml"),
                                                        "--model_path", str(grpo), "--max_steps", str(args.si_steps),
                                                        *common], out)  # fmt: skip
    recipe = yaml.safe_load((RECIPES / "grpo.yaml").read_text())
    weights = dict(zip(recipe["reward_funcs"], recipe["reward_weights"]))
    test = [s for s in read_samples(data) if s.split == "test"]
    media = MediaConfig(crops="frames", evidence=False, use_audio=False)
    results = {"chance": {"emotion": 1 / 8}}
    for name, path, seconds in (("SFT", sft, sft_s), ("GRPO", grpo, grpo_s), ("self-improvement", si, si_s)):
        results[name] = evaluate(str(path), test, str(out / "cache"), media, weights, max_new_tokens=256)
        results[name]["train_s"] = seconds
    curve = reward_curve(out / "grpo")
    added = json.loads((si / "self_improve.json").read_text())
    results["grpo_train_reward"], results["self_improve_round"] = curve, {k: added[k] for k in ("added", "dropped")}
    (out / "results.json").write_text(json.dumps(results, indent=2))

    columns = ["chance", "SFT", "GRPO", "self-improvement"]
    print(f"\nheld-out toy faces: {len(test)} clips of unseen people; greedy answers; weights {weights}\n")
    print(f"| {'metric':32} | " + " | ".join(f"{c:>16}" for c in columns) + " |")
    print(f"|{'-' * 34}|" + "|".join("-" * 18 for _ in columns) + "|")
    for key, label in ROWS:
        cells = [results[c].get(key) for c in columns]
        print(f"| {label:32} | " + " | ".join(f"{'—' if v is None else f'{v:.3f}':>16}" for v in cells) + " |")
    if curve:
        print(f"\nGRPO mean training reward: {curve[0]:.3f} (first logged step) -> {curve[1]:.3f} (last)")
    print(f"self-improvement round: {added['added']} verified answers added (dropped: {added['dropped']})")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
