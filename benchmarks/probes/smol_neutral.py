"""Probes behind the learning proof's contempt/neutral findings (BENCHMARKS.md, issue 20), run from the repo root:

    .venv/bin/python benchmarks/probes/smol_neutral.py warm 300 1000 3000     # face warm-up from the base model
    .venv/bin/python benchmarks/probes/smol_neutral.py head CHECKPOINT...     # a trained checkpoint's AU head
    .venv/bin/python benchmarks/probes/smol_neutral.py conclusion CHECKPOINT  # teacher-forced conclusion
    .venv/bin/python benchmarks/probes/smol_neutral.py labels CHECKPOINT      # p(gold label) at "Conclusion:"
    .venv/bin/python benchmarks/probes/smol_neutral.py answers CHECKPOINT...  # greedy answers, neutral clips
    .venv/bin/python benchmarks/probes/smol_neutral.py intensity CHECKPOINT   # is how strongly in the face path?
    .venv/bin/python benchmarks/probes/smol_neutral.py learn 1000 3000         # can the compressor learn it?
    .venv/bin/python benchmarks/probes/smol_neutral.py stated EVAL_JSON...     # do the answers' intensities follow?
    .venv/bin/python benchmarks/probes/smol_neutral.py levels CHECKPOINT      # the intensity head's own reading
    .venv/bin/python benchmarks/probes/smol_neutral.py ceiling EVAL_JSON 0.894 # the reward a better answer could reach

On a bench_learning run's toy data (``--run``, default results/bench_smol_v8: its data, cache and base model;
v11 is a hard-linked copy). ``head``/``warm``: the compressor's AU micro-F1 and its AU14 probability on held-out
contempt vs neutral clips, with the best single threshold's accuracy between the two. ``conclusion``: the logit
of " neutral" minus " contempt" right after "Conclusion:" with the gold answer's observations swapped, and of
" no" (no Action Unit active) minus " AU" at the first observation.
"""

import argparse
import collections
import copy
import json
import time
from pathlib import Path

import torch

from emoreason.data.jsonl import read_samples
from emoreason.train.data import MediaConfig
from emoreason.train.grpo import GRPORecipe
from emoreason.train.rollout import evaluate
from emoreason.train.sft import Collator, warm_up_face_tokens
from emoreason.train.stage import load_model, load_processor_and_cache, load_rows
from emoreason.train.tower_cache import TowerCache


class Probe:
    def __init__(self, run: Path, checkpoint: Path | None = None):
        self.run = run
        base = self.recipe("train", checkpoint or run / "smol" / "base")
        self.model = load_model(base)
        self.processor, cache = load_processor_and_cache(base)
        self.train, _ = load_rows(base, cache)
        self.test, _ = load_rows(self.recipe("test"), cache)
        self.collator = Collator(self.processor, cache, "compact", TowerCache(self.model, base.cache_dir))

    def recipe(self, split: str, checkpoint: Path | None = None) -> GRPORecipe:
        return GRPORecipe(model_path=str(checkpoint or self.run / "smol" / "base"),
                          train_data=str(self.run / "data" / "toy.jsonl"), split=split,
                          cache_dir=str(self.run / "cache"), target="compact", crops="frames", evidence=False,
                          use_audio=False)  # fmt: skip

    def batch(self, rows: list[dict]) -> dict:
        return self.collator([{"row": json.dumps(x)} for x in rows])

    def report(self, model, tag: str) -> None:
        probs, gold = [], []
        with torch.no_grad():
            for start in range(0, len(self.test), 50):
                b = self.batch(self.test[start : start + 50])
                _, logits = model.encode_faces(None, b["frame_mask"], face_features=b["face_features"])
                probs.append(logits.sigmoid())
                gold.append(b["au_labels"])
        p, y = torch.cat(probs), torch.cat(gold)
        hits = ((p > 0.5) & (y > 0.5)).sum().item()
        f1 = 2 * hits / ((p > 0.5).sum().item() + (y > 0.5).sum().item())
        au14 = model.config.au_codes.index("AU14")
        by = collections.defaultdict(list)
        for row, row_p in zip(self.test, p):
            by[row["emotion"]].append(row_p[au14].item())
        c, n = sorted(by["contempt"]), sorted(by["neutral"])
        best = max(sum(v >= t for v in c) + sum(v < t for v in n) for t in [i / 100 for i in range(101)])
        print(f"{tag}: AU micro-F1 {f1:.3f}; AU14 p, contempt median {c[len(c) // 2]:.3f} min {c[0]:.3f}; "
              f"neutral median {n[len(n) // 2]:.3f} max {n[-1]:.3f}; best threshold {best}/{len(c) + len(n)}",
              flush=True)  # fmt: skip

    def conclusion(self) -> None:
        tok = self.processor.tokenizer
        neutral, contempt = (tok(f" {w}", add_special_tokens=False)["input_ids"][0] for w in ("neutral", "contempt"))
        marker = tok(" Conclusion:", add_special_tokens=False)["input_ids"]
        no, au = (tok(f" {w}", add_special_tokens=False)["input_ids"][0] for w in ("no", "AU"))
        for face in ("neutral", "contempt"):
            for text, au14 in (("no Action Unit active", 0.0), ("AU14 D", 4.5)):
                rows = [self.with_au14(x, au14) for x in self.test if x["emotion"] == face]
                b = self.batch(rows)
                b.pop("au_labels", None)
                with torch.no_grad():
                    logits = self.model(**{k: v for k, v in b.items() if k != "labels"}).logits
                gaps, first = [], []
                for i, seq in enumerate(b["input_ids"].tolist()):
                    if text.startswith("no"):  # the first observation token: " no" (no AU) against " AU"
                        at = next(j for j in range(len(seq)) if seq[j] == no and b["labels"][i, j] != -100) - 1
                        logp = logits[i, at].float().log_softmax(-1)
                        first.append((logp[no] - logp[au]).item())
                    at = next(j for j in range(len(seq)) if seq[j : j + len(marker)] == marker) + len(marker) - 1
                    logp = logits[i, at].float().log_softmax(-1)
                    gaps.append((logp[neutral] - logp[contempt]).item())
                gaps.sort()
                print(f"face {face:8s} observations {text!r}: neutral - contempt median {gaps[len(gaps) // 2]:+.2f} "
                      f"[{gaps[0]:+.2f}, {gaps[-1]:+.2f}]; concludes neutral {sum(g > 0 for g in gaps)}/{len(gaps)}",
                      flush=True)  # fmt: skip
                if first:
                    first.sort()
                    print(f"face {face:8s} first observation: ' no' - ' AU' median {first[len(first) // 2]:+.2f} "
                          f"[{first[0]:+.2f}, {first[-1]:+.2f}]; writes ' no' {sum(g > 0 for g in first)}/{len(first)}",
                          flush=True)  # fmt: skip

    def labels(self, n_train: int) -> None:
        """Teacher-forced on the gold answer: the probability of each label's first token right after
        "Conclusion:", renormalised over the label space; per gold label, the mean p(gold), how often it is the
        argmax, what it is mistaken for, and the mean p(1-p) (a GRPO group's emotion-reward variance)."""
        tok = self.processor.tokenizer
        names = sorted({x["emotion"] for x in self.train})
        ids = [tok(f" {w}", add_special_tokens=False)["input_ids"][0] for w in names]
        assert len(set(ids)) == len(ids), "labels share a first token"
        marker = tok(" Conclusion:", add_special_tokens=False)["input_ids"]
        for split, rows in (("test", self.test), (f"train[:{n_train}]", self.train[:n_train])):
            by = collections.defaultdict(list)
            for start in range(0, len(rows), 8):
                b = self.batch(rows[start : start + 8])
                b.pop("au_labels", None)
                with torch.no_grad():
                    logits = self.model(**{k: v for k, v in b.items() if k != "labels"}).logits
                for i, seq in enumerate(b["input_ids"].tolist()):
                    at = next(j for j in range(len(seq)) if seq[j : j + len(marker)] == marker) + len(marker) - 1
                    p = logits[i, at].float()[ids].softmax(-1)
                    gold = rows[start + i]["emotion"]
                    by[gold].append((p[names.index(gold)].item(), names[int(p.argmax())]))
            print(split, flush=True)
            for gold in names:
                ps = [p for p, _ in by[gold]]
                wrong = collections.Counter(a for _, a in by[gold] if a != gold)
                print(f"  {gold:9s} n {len(ps):3d} mean p {sum(ps) / len(ps):.3f} argmax right "
                      f"{sum(a == gold for _, a in by[gold]) / len(ps):.2f} p(1-p) {sum(p * (1 - p) for p in ps) / len(ps):.3f} "
                      f"in [.05,.95] {sum(0.05 < p < 0.95 for p in ps)} mistaken for {dict(wrong)}", flush=True)  # fmt: skip

    def intensity(self) -> None:
        """Does the face path carry how strongly the AUs move? Ridge regression (fit on the training clips, scored
        on the held-out ones) from each stage of the face path, pooled over frames and positions (mean and max), to
        the clip's apex level (the mean gold intensity of its present AUs; neutral clips left out), against always
        predicting the training mean."""
        feats, levels = {}, {}
        for split, rows in (("train", self.train), ("test", self.test)):
            rows = [x for x in rows if any(a["intensity"] >= 1 for a in x["aus"])]
            levels[split] = torch.tensor([sum(a["intensity"] for a in x["aus"] if a["intensity"] >= 1)
                                          / sum(a["intensity"] >= 1 for a in x["aus"]) for x in rows])  # fmt: skip
            out = collections.defaultdict(list)
            for start in range(0, len(rows), 50):
                b = self.batch(rows[start : start + 50])
                tower = b["face_features"].float()  # [B, T, P, D] the frozen tower's outputs
                with torch.no_grad():
                    tokens, logits = self.model.encode_faces(None, b["frame_mask"], face_features=b["face_features"])
                out["tower"].append(torch.cat([tower.flatten(1, -2).mean(1), tower.flatten(1, -2).amax(1)], -1))
                out["compressed tokens"].append(torch.cat([tokens.float().flatten(1, -2).mean(1),
                                                           tokens.float().flatten(1, -2).amax(1)], -1))  # fmt: skip
                out["AU head logits"].append(logits.float().flatten(1))
            feats[split] = {k: torch.cat(v) for k, v in out.items()}
        y, y_test = levels["train"], levels["test"]
        base = (y_test - y.mean()).abs().mean().item()
        print(f"apex level: train {len(y)} clips, held-out {len(y_test)}; constant {y.mean():.2f}: MAE {base:.3f}")
        for name in feats["train"]:
            x, x_test = feats["train"][name], feats["test"][name]
            mu, sd = x.mean(0), x.std(0) + 1e-6
            x, x_test = torch.cat([(x - mu) / sd, torch.ones(len(x), 1)], 1), torch.cat([(x_test - mu) / sd,
                                                                                          torch.ones(len(x_test), 1)], 1)  # fmt: skip
            best = None
            for lam in (0.1, 1.0, 10.0, 100.0, 1000.0):  # chosen on the last fifth of the training clips
                cut = len(x) * 4 // 5
                w = torch.linalg.solve(x[:cut].T @ x[:cut] + lam * torch.eye(x.shape[1]), x[:cut].T @ y[:cut])
                err = (x[cut:] @ w - y[cut:]).abs().mean().item()
                best = min(best or (err, lam), (err, lam))
            w = torch.linalg.solve(x.T @ x + best[1] * torch.eye(x.shape[1]), x.T @ y)
            pred = x_test @ w
            r2 = 1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
            print(f"  {name:18s} ({x.shape[1] - 1} numbers, ridge {best[1]:g}): held-out MAE "
                  f"{(pred - y_test).abs().mean():.3f}, R^2 {r2:.3f}", flush=True)  # fmt: skip

    def levels(self) -> None:
        """A trained checkpoint's intensity head (``face_au_levels``) on the held-out clips: over the gold-present
        AUs (>= 1) the AU head also reads as present, the head's value and its FACS letter's level (what the level
        token says, rounded: A = 1 ... E = 5) against the gold intensity, and the training clips' mean for
        comparison. What the head reads is the most an answer's intensities can follow the face."""
        train = [a["intensity"] for x in self.train for a in x["aus"] if a["intensity"] >= 1]
        mean, codes = sum(train) / len(train), list(self.model.config.au_codes)
        pairs = []
        with torch.no_grad():
            for start in range(0, len(self.test), 50):
                rows = self.test[start : start + 50]
                b = self.batch(rows)
                _, out = self.model.compress_faces(None, b["frame_mask"], face_features=b["face_features"])
                if out.au_intensity is None:
                    raise SystemExit("this checkpoint has no intensity head (face_au_levels is off)")
                for row, logits, values in zip(rows, out.au_logits.float(), out.au_intensity.float()):
                    pairs += [(values[codes.index(a["code"])].item(), a["intensity"]) for a in row["aus"]
                              if a["intensity"] >= 1 and logits[codes.index(a["code"])] > 0]  # fmt: skip
        if len(pairs) < 2:
            raise SystemExit(f"{len(pairs)} held-out gold-present AUs the AU head reads: nothing to compare")
        head = torch.tensor([h for h, _ in pairs])
        gold = torch.tensor([g for _, g in pairs])
        level = head.round().clamp(1, 5)
        print(f"{len(pairs)} held-out gold-present AUs the AU head reads; always {mean:.2f}: MAE "
              f"{(gold - mean).abs().mean():.3f}", flush=True)  # fmt: skip
        for name, said in (("head", head), ("its letter", level)):
            r = torch.corrcoef(torch.stack([said, gold]))[0, 1].item()
            mae = (said - gold).abs().mean().item()
            print(f"  {name:10s} mean {said.mean():.2f} (gold {gold.mean():.2f}), correlation {r:.3f}, MAE {mae:.3f}"
                  f" (intensity reward at most {1 - mae / 5:.3f})", flush=True)  # fmt: skip

    def learn_intensity(self, steps: int, lr: float = 5e-4, batch_size: int = 8) -> None:
        """The face warm-up (:func:`warm_up_face_tokens`: the compressor on the cached tower outputs, AU loss) with
        an intensity head beside the AU head (one weight vector per AU on its region's mean token, as the AU head)
        and a squared-error loss on the present AUs' intensities; the held-out MAE of the present AUs' intensity
        against always predicting the training mean, and the AU micro-F1 (does the second loss cost the first?)."""
        from emoreason.model.modeling import au_head_loss

        model = copy.deepcopy(self.model)
        compressor, codes = model.face_compressor, list(model.config.au_codes)

        def tensors(rows):
            parts = [self.batch(rows[i : i + 64]) for i in range(0, len(rows), 64)]
            frames = max(b["face_features"].shape[1] for b in parts)
            pad = torch.nn.functional.pad
            feats = torch.cat([pad(b["face_features"].float(), (0, 0, 0, 0, 0, frames - b["face_features"].shape[1]))
                               for b in parts])  # fmt: skip
            mask = torch.cat([pad(b["frame_mask"].bool(), (0, frames - b["frame_mask"].shape[1])) for b in parts])
            level = torch.tensor([[next((a["intensity"] for a in x["aus"] if a["code"] == c), 0.0) for c in codes]
                                  for x in rows])  # fmt: skip
            return feats, mask, torch.cat([b["au_labels"] for b in parts]), level

        train, test = tensors(self.train), tensors(self.test)
        weight = torch.nn.Parameter(torch.zeros(len(codes), compressor.hidden_size))
        bias = torch.nn.Parameter(torch.full((len(codes),), float(train[3][train[3] >= 1].mean())))

        def run(data, index):
            out = compressor(data[0][index], frame_mask=data[1][index])
            pooled = out.tokens.unflatten(1, (compressor.num_regions, -1)).mean(2)[:, compressor.au_region]
            return out.au_logits, (pooled * weight).sum(-1) + bias

        def report(tag):
            with torch.no_grad():
                logits, pred = run(test, torch.arange(len(test[0])))
            present, y = test[3] >= 1, test[3]
            hits = ((logits > 0) & (test[2] > 0.5)).sum().item()
            f1 = 2 * hits / ((logits > 0).sum().item() + (test[2] > 0.5).sum().item())
            mae = (pred - y)[present].abs().mean().item()
            const = (train[3][train[3] >= 1].mean() - y[present]).abs().mean().item()
            r = torch.corrcoef(torch.stack([pred[present], y[present]]))[0, 1].item()
            print(f"{tag}: held-out AU micro-F1 {f1:.3f}; present AUs' intensity MAE {mae:.3f} (constant {const:.3f}), "
                  f"r {r:.3f}", flush=True)  # fmt: skip

        optimizer = torch.optim.AdamW([p for p in compressor.parameters() if p.requires_grad] + [weight, bias], lr=lr)
        generator, done, start = torch.Generator().manual_seed(0), 0, time.perf_counter()
        for target in sorted(self.steps):
            for _ in range(target - done):
                index = torch.randint(0, len(train[0]), (batch_size,), generator=generator)
                logits, pred = run(train, index)
                present = train[3][index] >= 1
                loss = au_head_loss(logits, train[2][index]) + ((pred - train[3][index])[present] ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            done = target
            report(f"{target} steps ({time.perf_counter() - start:.0f} s)")

    @staticmethod
    def with_au14(row: dict, au14: float) -> dict:
        out = copy.deepcopy(row)
        for au in out["aus"]:
            au["intensity"] = au14 if au["code"] == "AU14" else 0.0
        return out


def answers(run: Path, checkpoints: list[Path]) -> None:
    test = [s for s in read_samples(run / "data" / "toy.jsonl") if s.split == "test"]
    rows = [s for s in test if s.emotion == "neutral"][:2] + [s for s in test if s.emotion == "contempt"][:1]
    media = MediaConfig(crops="frames", evidence=False, use_audio=False)
    weights = {"format": 0.5, "emotion": 1.0, "au_f1": 1.0, "facs_consistency": 0.5}
    for checkpoint in checkpoints:
        scored = evaluate(str(checkpoint), rows, str(run / "cache"), media, weights, max_new_tokens=224, examples=3)
        print(checkpoint)
        for sample, text in zip(rows, scored["examples"]):
            print(f"  {sample.emotion}: {text}")


def stated(run: Path, scored: list[Path]) -> None:
    """The intensities a stage's stored answers state (``eval<N>.json``'s ``answer`` per clip; the observation
    letters A = 1 ... E = 5, and the answer JSON's) against the clips' gold apex intensities, over the gold-present
    AUs (>= 1) the answer names in both: Pearson correlation and mean absolute error, and always answering the mean
    gold intensity of the training clips' present AUs for comparison."""
    from emoreason.answer import parse_answer
    from emoreason.train.rewards import observed_aus

    samples = {s.id: s for s in read_samples(run / "data" / "toy.jsonl")}
    train = [a.intensity for s in samples.values() if s.split == "train" for a in s.aus if (a.intensity or 0) >= 1]
    mean = sum(train) / len(train)
    for path in scored:
        pairs, clips = [], json.loads(path.read_text()).get("clips") if path.is_file() else None
        if not clips or any("answer" not in c or c.get("id") not in samples for c in clips):
            raise SystemExit(f"{path}: expected an eval<N>.json whose clips keep their answer, of --run {run}'s data")
        for clip in clips:
            gold = {a.code: a.intensity for a in samples[clip["id"]].aus if (a.intensity or 0) >= 1}
            pred = parse_answer(clip["answer"])
            letters = observed_aus(pred.reasoning) or {}
            values = {a.code: a.intensity for a in pred.aus if a.intensity is not None}
            pairs += [(letters[c], values[c], v) for c, v in gold.items() if letters.get(c) and c in values]
        if len(pairs) < 2:
            print(f"{path}: {len(pairs)} gold-present AUs named in both the letters and the JSON: nothing to compare")
            continue
        golds = torch.tensor([g for *_, g in pairs])
        print(f"{path}: {len(pairs)} gold-present AUs named; always {mean:.2f}: MAE {(golds - mean).abs().mean():.3f}")
        for i, name in enumerate(("letters", "JSON")):
            said = torch.tensor([p[i] for p in pairs], dtype=torch.float32)
            r = torch.corrcoef(torch.stack([said, golds]))[0, 1].item() if said.std() > 0 else float("nan")
            print(f"  {name:7s} mean {said.mean():.2f} (gold {golds.mean():.2f}), correlation {r:.3f}, "
                  f"MAE {(said - golds).abs().mean():.3f}", flush=True)  # fmt: skip


def ceiling(scored: Path, levels: list[float]) -> None:
    """The mean reward of a stage's stored scores (``eval<N>.json``, the smol GRPO recipe's weights) with each clip's
    intensity reward raised to ``level`` where it is lower, and with that and every other reward at 1: what a
    policy that states the intensities as well as the face path reads them (``levels``) could reach."""
    import yaml

    recipe = yaml.safe_load(Path("scripts/recipes/smol/grpo.yaml").read_text())
    weights = dict(zip(recipe["reward_funcs"], recipe["reward_weights"]))
    try:
        clips = json.loads(scored.read_text())["clips"] if scored.is_file() else None
    except (ValueError, KeyError):
        clips = None
    if not clips or any(set(weights) - set(c) for c in clips):
        raise SystemExit(f"{scored}: expected an eval<N>.json scored with {', '.join(weights)}")

    def total(clip: dict, level: float, rest: bool) -> float:
        scores = {k: clip[k] for k in weights if clip[k] is not None}
        if "au_intensity" in scores:
            scores["au_intensity"] = max(scores["au_intensity"], level)
        if rest:
            scores |= {k: 1.0 for k in scores if k != "au_intensity"}
        return sum(weights[k] * v for k, v in scores.items()) / sum(weights[k] for k in scores)

    print(f"{scored}: {len(clips)} clips, mean reward {sum(c['reward'] for c in clips) / len(clips):.4f}")
    for level in levels:
        only, every = (sum(total(c, level, rest) for c in clips) / len(clips) for rest in (False, True))
        print(f"  intensity at least {level:.3f}: {only:.4f}; and every other reward 1: {every:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "what", choices=["warm", "head", "conclusion", "labels", "answers", "intensity", "learn", "stated", "levels", "ceiling"]
    )
    parser.add_argument("args", nargs="+", help="warm-up steps (warm) or checkpoints")
    parser.add_argument("--run", type=Path, default=Path("results/bench_smol_v8"))
    parser.add_argument("--train", type=int, default=200, help="labels: training clips to probe too (the first N)")
    args = parser.parse_args()
    if args.what == "answers":
        return answers(args.run, [Path(a) for a in args.args])
    if args.what == "stated":
        return stated(args.run, [Path(a) for a in args.args])
    if args.what == "ceiling":
        try:
            levels = [float(a) for a in args.args[1:]]
        except ValueError:
            raise SystemExit("ceiling: expected EVAL_JSON then intensity levels (numbers, e.g. 0.894)") from None
        return ceiling(Path(args.args[0]), levels)
    if args.what == "learn":
        probe = Probe(args.run)
        probe.steps = [int(a) for a in args.args]
        return probe.learn_intensity(max(probe.steps))
    if args.what == "warm":
        probe = Probe(args.run)
        rows = [json.dumps(x) for x in probe.train]
        for steps in map(int, args.args):
            model, start = copy.deepcopy(probe.model), time.perf_counter()
            warm_up_face_tokens(model, probe.collator, rows, steps, 5e-4, 8, 0)
            probe.report(model, f"warm-up {steps} steps ({time.perf_counter() - start:.0f} s)")
        return None
    for checkpoint in map(Path, args.args):
        probe = Probe(args.run, checkpoint)
        if args.what == "head":
            probe.report(probe.model, str(checkpoint))
        elif args.what == "labels":
            probe.labels(args.train)
        elif args.what == "intensity":
            probe.intensity()
        elif args.what == "levels":
            probe.levels()
        else:
            probe.conclusion()
    return None


if __name__ == "__main__":
    main()
