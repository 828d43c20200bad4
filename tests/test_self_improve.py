"""Self-improvement rounds: sampled completions are scored, filtered and merged with provenance; a killed round
resumes without sampling or writing a row twice; the CLI retrains SFT on the merged data."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from emoreason.cli import main  # noqa: E402
from emoreason.data.jsonl import read_jsonl  # noqa: E402
from emoreason.train import rollout  # noqa: E402
from emoreason.train.data import target_text  # noqa: E402
from emoreason.train.recipe import RecipeError  # noqa: E402
from emoreason.train.self_improve import SelfImproveRecipe, run_round, sample_candidates  # noqa: E402


def _recipe(toy, **kw) -> SelfImproveRecipe:
    data, checkpoint, root = toy
    values = dict(model_path=str(checkpoint), train_data=str(data), crops="frames", evidence=False, use_audio=False,
                  cache_dir=str(root / "cache"), target="compact", num_samples=2, max_new_tokens=8,
                  sample_batch_size=4, threshold=0.9)  # fmt: skip
    return SelfImproveRecipe(**(values | kw))


class FakeModel:
    """Stands in for rollout.generate: sample 0 of each clip is its verified compact target, sample 1 is junk."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.clips, self.fail_after = 0, [], fail_after

    def __call__(self, model, processor, cache, samples, num_samples=1, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed mid-way
        self.calls += 1
        self.clips += [s.id for s in samples]
        answers = [lambda s: target_text(s, "compact"), lambda s: "I think the person is fine."]
        return [rollout.Rollout(s, answers[k % 2](s)) for s in samples for k in range(num_samples)]


def test_round_keeps_verified_samples_with_provenance(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(rollout, "generate", FakeModel())
    recipe = _recipe(toy)
    manifest = run_round(recipe, trl.SFTConfig(output_dir=str(tmp_path / "run"), seed=0, use_cpu=True, bf16=False))
    train_ids = [r["id"] for r in read_jsonl(toy[0]) if r["split"] == "train"]
    assert manifest["sampling"]["clips"] == len(train_ids) and manifest["added"] == len(train_ids)
    assert manifest["dropped"] == {"below threshold": len(train_ids)}  # the junk answers
    merged = list(read_jsonl(manifest["out"]["path"]))
    added = [r for r in merged if r.get("provenance", {}).get("round") == 1]
    assert len(merged) == manifest["train"]["rows"] + len(added)
    assert {r["provenance"]["source_id"] for r in added} == set(train_ids)
    for row in added:
        assert row["provenance"]["generator"] == f"model:{recipe.model_path}" and row["provenance"]["reward"] >= 0.9
        assert row["rationale"].startswith("<think>Observations:") and row["split"] == "train"
    assert all(r["split"] != "test" for r in added)  # evaluation clips are never sampled into training data
    assert all(r["media"].startswith("/") for r in merged)  # the merged file lives elsewhere than the corpus


def test_killed_round_resumes_without_duplicates(toy, tmp_path, monkeypatch):
    out = tmp_path / "candidates.jsonl"
    killed = FakeModel(fail_after=1)
    monkeypatch.setattr(rollout, "generate", killed)
    with pytest.raises(KeyboardInterrupt):
        sample_candidates(_recipe(toy), out)
    assert not out.exists() and out.with_name(out.name + ".partial").exists()  # never a half-written file
    resumed = FakeModel()
    monkeypatch.setattr(rollout, "generate", resumed)
    counts = sample_candidates(_recipe(toy), out)
    assert counts["already_done"] == len(killed.clips) == 4 and not set(killed.clips) & set(resumed.clips)
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 2 * counts["clips"]
    again = sample_candidates(_recipe(toy), out)  # a finished round is not sampled again
    assert again["sampled"] == 0 and again["already_done"] == counts["clips"]
    assert [r["id"] for r in read_jsonl(out)] == ids


def test_hard_clips_round_samples_and_retrains_on_the_clips_the_model_is_least_sure_of(toy, tmp_path, monkeypatch):
    """The real model picks the clips (one teacher-forced pass); only those are sampled, the retraining data is
    their rows and kept answers, and a rerun picks the same clips without ranking again."""
    from emoreason.train import grpo

    fake = FakeModel()
    monkeypatch.setattr(rollout, "generate", fake)
    ranked = []
    real = grpo.hardest
    monkeypatch.setattr(grpo, "hardest", lambda *a, **k: ranked.append(1) or real(*a, **k))
    args = trl.SFTConfig(output_dir=str(tmp_path / "run"), seed=0, use_cpu=True, bf16=False)
    manifest = run_round(_recipe(toy, hard_clips=2), args)
    chosen = [r["id"] for r in read_jsonl(tmp_path / "run" / "data" / "round1_hard_clips.jsonl")]
    train_ids = {r["id"] for r in read_jsonl(toy[0]) if r["split"] == "train"}
    assert len(chosen) == 2 and set(chosen) <= train_ids and sorted(set(fake.clips)) == sorted(chosen)
    merged = list(read_jsonl(manifest["out"]["path"]))
    assert manifest["sampling"]["clips"] == 2 and manifest["added"] == 2 and len(merged) == 4
    assert {r.get("provenance", {}).get("source_id", r["id"]) for r in merged} == set(chosen)
    assert run_round(_recipe(toy, hard_clips=2), args)["sampling"]["already_done"] == 2 and len(ranked) == 1
    with pytest.raises(RecipeError, match="hard_clips"):
        _recipe(toy, hard_clips=-1)
    with pytest.raises(RecipeError, match="hard_score"):
        _recipe(toy, hard_score="loss")


def test_real_model_samples_are_scored(toy, tmp_path):
    counts = sample_candidates(_recipe(toy, max_samples=2), tmp_path / "c.jsonl")
    rows = list(read_jsonl(tmp_path / "c.jsonl"))
    assert counts["sampled"] == len(rows) == 4 and all(0.0 <= r["reward"] <= 1.0 for r in rows)


def test_recipe_errors_name_the_field(toy):
    for change, field in [({"reward_funcs": ["kindness"]}, "reward_funcs"), ({"threshold": 3.0}, "threshold"),
                          ({"reward_weights": [1.0]}, "reward_weights")]:  # fmt: skip
        with pytest.raises(RecipeError, match=field):
            _recipe(toy, **change)


def test_cli_round_then_sft(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(rollout, "generate", FakeModel())
    data, checkpoint, root = toy
    recipe = tmp_path / "self_improve.yaml"
    recipe.write_text(
        f"model_path: {checkpoint}\ntrain_data: {data}\ncrops: frames\nevidence: false\nuse_audio: false\n"
        f"cache_dir: {root / 'cache'}\ntarget: compact\nnum_samples: 2\nthreshold: 0.9\n"
        f"output_dir: {tmp_path / 'run'}\nmax_steps: 1\nsave_strategy: 'no'\nper_device_train_batch_size: 4\n"
        "use_cpu: true\nbf16: false\nreport_to: none\n"
    )
    assert main(["train", "self-improve", "--config", str(recipe)]) == 0
    final = tmp_path / "run" / "final"
    used = json.loads((final / "training_data.json").read_text())
    assert used["train_data"].endswith("round1_train.jsonl") and used["rows_used"] > used["skipped"]["split"]
    assert json.loads((final / "self_improve.json").read_text())["added"] > 0
    assert main(["train", "self-improve", "--config", str(recipe), "--threshold", "1.5"]) == 2
