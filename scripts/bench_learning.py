"""Does training learn? SFT, then GRPO, then one self-improvement round on the toy faces, scored on held-out people.

    python scripts/bench_learning.py --preset smol --out results/bench_smol [--baseline tiny] [--seeds 3]
        [--clips 1000] [--eval-clips 200] [--sft-steps N] [--grpo-steps N] [--grpo-rounds N] [--si-steps N]
        [--si-clips N]

Runs the preset's recipes (smol: scripts/recipes/smol/, tiny: scripts/recipes/toyfaces/) as `emoreason train ...`
does, with paths, seed and (optionally) step counts overridden, from the preset's base checkpoint
(`emoreason model build --preset`; tiny: the random checkpoint with its LM trained whole). Each stage is scored on
the held-out clips (test split: people never seen in training) with greedy answers and the GRPO recipe's rewards;
chance is 1/8 for the emotion. Writes DIR/summary.json ({"chance", "stages": {stage: metrics}}, the mean over
seeds) and DIR/results.json (every seed, the baseline, timings, three answers per stage). A stage whose `final`
checkpoint exists is reused, and so are its scores (eval<N>.json beside it), so a rerun picks up where a killed
one stopped. The step overrides apply to --preset only; the baseline runs its recipes as written.

``--grpo-rounds N`` runs GRPO N times, each round from the last one's checkpoint with its hard clips chosen again
by the model it starts from (DIR/.../grpo, grpo_r2, ...); the "grpo" stage is the last round. Each scored stage
keeps every clip's scores, and results.json compares consecutive stages clip by clip ("paired": the mean
difference of the reward and the emotion with a 95% paired bootstrap interval).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from emoreason.data.jsonl import read_samples
from emoreason.model.presets import PRESETS, build_preset
from emoreason.model.tiny import make_tiny_checkpoint
from emoreason.toyfaces import make_toy_dataset
from emoreason.train.data import MediaConfig
from emoreason.train.grpo import run_grpo
from emoreason.train.recipe import RecipeError
from emoreason.train.rollout import evaluate, paired_difference
from emoreason.train.self_improve import run_self_improve
from emoreason.train.sft import run_sft

RECIPES = Path(__file__).resolve().parent / "recipes"
RECIPE_DIRS = {"tiny": "toyfaces", "smol": "smol"}
STAGES = (("sft", run_sft), ("grpo", run_grpo), ("self_improve", run_self_improve))
STAGE_NAMES = [stage for stage, _ in STAGES]
METRICS = {"emotion_accuracy": "emotion", "au_f1": "au_f1", "format": "format", "reward": "reward"}


def base_checkpoint(preset: str, out: Path) -> Path:
    path = out / preset / "base"
    if not (path / "model.safetensors").is_file():
        if preset == "tiny":  # the toyfaces recipes train the whole random LM: no adapter
            make_tiny_checkpoint(path, lora=False)
        else:
            build_preset(preset, path)
    return path


def subset(data: Path, n: int) -> Path:
    """The first ``n`` training rows (beside ``data``, so media paths still resolve): the self-improvement
    round samples and retrains on these (its ``max_samples`` would cut the merged candidates off)."""
    path = data.with_name(f"train{n}.jsonl")
    rows = [line for line in data.read_text().splitlines() if json.loads(line)["split"] == "train"][:n]
    path.write_text("".join(line + "\n" for line in rows))
    return path


def run_chain(preset: str, seed: int, args, data: Path, test: list, steps: dict) -> dict:
    """SFT -> GRPO -> self-improvement for one preset and seed; each stage's held-out scores and timings."""
    recipes, run_dir, cache = RECIPES / RECIPE_DIRS[preset], args.out / preset / f"seed{seed}", args.out / "cache"
    grpo = yaml.safe_load((recipes / "grpo.yaml").read_text())
    weights = dict(zip(grpo["reward_funcs"], grpo["reward_weights"]))
    media = MediaConfig(crops="frames", evidence=False, use_audio=False)
    model, results, clips = base_checkpoint(preset, args.out), {}, {}
    rounds = [("grpo" if k == 1 else f"grpo_r{k}", "grpo", run_grpo) for k in range(1, args.grpo_rounds + 1)]
    for stage, kind, run in [("sft", "sft", run_sft), *rounds, ("self_improve", "self_improve", run_self_improve)]:
        final, started, train_s = run_dir / stage / "final", time.perf_counter(), None
        if not (final / "model.safetensors").is_file():
            hard = yaml.safe_load((recipes / f"{kind}.yaml").read_text()).get("hard_clips")
            # a round that picks its own (hard) clips picks them from the whole training split
            train_data = subset(data, args.si_clips) if kind == "self_improve" and args.si_clips and not hard else data
            argv = ["--config", str(recipes / f"{kind}.yaml"), "--model_path", str(model), "--train_data",
                    str(train_data), "--cache_dir", str(cache), "--output_dir", str(run_dir / stage),
                    "--seed", str(seed), "--disable_tqdm", "true"]  # fmt: skip
            if steps.get(kind):
                argv += ["--max_steps", str(steps[kind]), "--save_steps", str(steps[kind])]
            try:
                run(argv)
            except RecipeError as exc:  # a self-improvement round that kept no candidate has nothing to retrain on
                if stage != "self_improve":
                    raise
                results[stage] = dict.fromkeys(METRICS) | {"skipped": str(exc)}
                print(f"{preset} seed {seed} {stage}: skipped: {exc}")
                break
            train_s = time.perf_counter() - started
        scored_file = run_dir / stage / f"eval{len(test)}.json"  # a rerun re-scores nothing already scored
        old = json.loads(scored_file.read_text()) if scored_file.is_file() else {}
        if "clips" not in old:  # not scored yet, or scored before each clip's scores were kept
            scored = evaluate(str(final), test, str(cache), media, weights,
                              max_new_tokens=grpo["max_completion_length"], examples=3)  # fmt: skip
            train_s = train_s if train_s is not None else old.get("train_s")
            scored_file.write_text(json.dumps(scored | {"train_s": train_s}, indent=2))
        scored = json.loads(scored_file.read_text())
        clips[stage] = scored["clips"]
        train_s = train_s if train_s is not None else scored["train_s"]
        results[stage] = {k: scored[v] for k, v in METRICS.items()} | {
            "unfinished": scored["unfinished"], "n": scored["n"], "train_s": train_s, "eval_s": scored["seconds"],
            "rewards": {name: scored.get(name) for name in weights},  # each reward's mean (au_intensity: how strongly)
            "per_label": per_label(test, scored["clips"]),
            "examples": [{"id": s.id, "gold": s.emotion, "gold_aus": {a.code: a.intensity for a in s.aus if a.intensity},
                          "answer": text} for s, text in zip(test, scored["examples"])],
        }  # fmt: skip
        print(f"{preset} seed {seed} {stage}: " + json.dumps({k: results[stage][k] for k in METRICS}), flush=True)
        (run_dir / "partial.json").write_text(json.dumps(results, indent=2))  # each finished stage, for a commit
        model = final
    if args.grpo_rounds > 1:  # the last round is the "grpo" stage; the earlier ones keep their own names
        results["grpo_r1"], results["grpo"] = results["grpo"], results.pop(rounds[-1][0])
        clips["grpo_r1"], clips["grpo"] = clips["grpo"], clips.pop(rounds[-1][0])
    results["paired"] = {f"{after} - {before}": {key: paired_difference(clips[before], clips[after], key)
                                                 for key in ("reward", "emotion", "au_f1", *weights)}
                         for before, after in zip(STAGE_NAMES, STAGE_NAMES[1:])
                         if before in clips and after in clips}  # fmt: skip
    if (added := run_dir / "self_improve" / "final" / "self_improve.json").is_file():
        results["self_improve_round"] = {k: json.loads(added.read_text())[k] for k in ("added", "dropped")}
    return results


def per_label(test: list, clips: list[dict]) -> dict:
    """Emotion accuracy of each gold label (a stage can trade one class for another at the same mean)."""
    gold, hits = {s.id: s.emotion for s in test}, {}
    for clip in clips:
        hits.setdefault(gold[clip["id"]], []).append(clip["emotion"] or 0.0)
    return {label: round(sum(v) / len(v), 3) for label, v in sorted(hits.items())}


def mean(chains: list[dict]) -> dict:
    def average(values):
        return None if None in values else sum(values) / len(values)

    return {stage: {k: average([c[stage][k] for c in chains]) for k in METRICS} for stage, _ in STAGES}


def cell(value: float | None) -> str:
    return f"{'—' if value is None else f'{value:.3f}':>16}"


def print_table(rows: list[tuple[str, dict]], n: int, chance: float) -> None:
    print(f"\nheld-out toy faces: {n} clips of unseen people; greedy answers; chance {chance:.3f}\n")
    print(f"| {'run':24} | {'stage':12} | " + " | ".join(f"{k:>16}" for k in METRICS) + " |")
    print(f"|{'-' * 26}|{'-' * 14}|" + "|".join("-" * 18 for _ in METRICS) + "|")
    for name, chain in rows:
        for stage, _ in STAGES:
            print(f"| {name:24} | {stage:12} | " + " | ".join(cell(chain[stage][k]) for k in METRICS) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="smol")
    parser.add_argument("--out", type=Path, default=Path("results/bench_learning"))
    parser.add_argument("--baseline", choices=PRESETS, help="also run this preset (seed 0) as a baseline row")
    parser.add_argument("--seeds", type=int, default=1, help="train seeds 0..N-1 (each a full chain)")
    parser.add_argument("--clips", type=int, default=1000, help="toy clips (80%% train, 20%% held-out test)")
    parser.add_argument("--eval-clips", type=int, default=200, help="held-out clips scored (at most the test split)")
    parser.add_argument("--sft-steps", type=int, help="override the recipe's max_steps (likewise below)")
    parser.add_argument("--grpo-steps", type=int)
    parser.add_argument(
        "--grpo-rounds",
        type=int,
        default=1,
        help="GRPO rounds, each from the last (hard clips chosen again each round)",
    )
    parser.add_argument("--si-steps", type=int)
    parser.add_argument(
        "--si-clips",
        type=int,
        help="training clips the self-improvement round samples (the first N; unused when its recipe sets hard_clips)",
    )
    args = parser.parse_args()
    if args.grpo_rounds < 1:
        parser.error(f"--grpo-rounds must be >= 1, got {args.grpo_rounds}")
    start, data = time.perf_counter(), args.out / "data" / "toy.jsonl"
    if not data.is_file():
        make_toy_dataset(args.out / "data", args.clips, seed=0, size=64)
    test = [s for s in read_samples(data) if s.split == "test"][: args.eval_clips]
    steps = {"sft": args.sft_steps, "grpo": args.grpo_steps, "self_improve": args.si_steps}
    chains = [run_chain(args.preset, seed, args, data, test, steps) for seed in range(args.seeds)]
    chance = 1 / 8
    summary = {"chance": chance, "stages": mean(chains), "seeds": args.seeds, "eval_clips": len(test),
               "seconds": time.perf_counter() - start}  # fmt: skip
    baseline = run_chain(args.baseline, 0, args, data, test, {}) if args.baseline else None
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "results.json").write_text(json.dumps({"summary": summary, "seeds": chains, "baseline": baseline,
                                                       "argv": sys.argv[1:]}, indent=2))  # fmt: skip
    rows = [(f"{args.preset} seed {i}", c) for i, c in enumerate(chains)]
    rows += [(f"{args.preset} mean of {len(chains)}", summary["stages"])] if len(chains) > 1 else []
    rows += [(f"{args.baseline} (baseline) seed 0", baseline)] if baseline else []
    print_table(rows, len(test), chance)
    for name, chain in rows:
        for stage, _ in STAGES:
            for example in chain.get(stage, {}).get("examples", []):
                print(f"\n{name} {stage} [{example['id']}, gold {example['gold']}, AUs {example['gold_aus']}]:\n"
                      f"{example['answer']}")  # fmt: skip
    for name, chain in rows:
        for stage, _ in STAGES:
            if labels := chain.get(stage, {}).get("per_label"):
                shares = ", ".join(f"{label} {value:.2f}" for label, value in labels.items())
                print(f"{name} {stage}, emotion accuracy by label: {shares}")
        for pair, keys in chain.get("paired", {}).items():
            print(f"{name} {pair}, clip by clip: " + "; ".join(
                f"{key} {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] ({d['better']} up, {d['worse']} down)"
                for key, d in keys.items() if d))  # fmt: skip
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
