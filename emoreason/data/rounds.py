"""The self-improvement loop's data side (Facial-R1): keep the model's verified samples, with provenance.

Each round takes the current training file and candidate completions sampled from the current model
(each with the reward the training rewards gave it), keeps the candidates whose reward reaches the
threshold and that pass the same checks as synthesised data, and writes the merged training file plus
a manifest (input hashes, threshold, counts) so that the round can be reproduced and audited.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from emoreason.data.jsonl import ResumableWriter, read_jsonl
from emoreason.data.schema import Sample
from emoreason.data.synth import EVAL_SPLITS, verify


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def merge_round(train: str | Path, candidates: str | Path, out: str | Path, round_index: int,
                threshold: float) -> dict:  # fmt: skip
    """Write ``out`` = the rows of ``train`` + verified candidates; returns (and saves) the manifest.

    Candidate rows are samples with ``completion`` (the model's text), ``reward`` (its total training
    reward) and ``model`` (which checkpoint wrote it). Rows of evaluation splits are never merged.
    """
    counts: Counter = Counter()
    kept: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for row in sorted(read_jsonl(candidates), key=lambda r: (r.get("id", ""), r.get("completion", ""))):
        completion, reward, model = row.pop("completion", None), row.pop("reward", None), row.pop("model", None)
        sample = Sample.from_dict({k: v for k, v in row.items() if k != "rationale"})
        key = (sample.id, hashlib.sha1((completion or "").encode()).hexdigest()[:10])
        problem = (
            "evaluation sample" if sample.split in EVAL_SPLITS
            else "missing completion or reward" if completion is None or reward is None
            else "below threshold" if reward < threshold
            else "duplicate" if key in seen
            else verify(completion, sample)
        )  # fmt: skip
        if problem:
            counts[problem.split(":")[0]] += 1
            continue
        seen.add(key)
        kept.append(sample.to_dict() | {"id": f"{sample.id}-r{round_index}-{key[1]}", "rationale": completion,
                                        "provenance": {"source_id": sample.id, "generator": f"model:{model}",
                                                       "round": round_index, "reward": reward}})  # fmt: skip
    with ResumableWriter(out, overwrite=True) as writer:
        for row in read_jsonl(train):
            writer.write(row)
        base = writer.written
        for row in kept:
            writer.write(row)
    manifest = {
        "round": round_index, "threshold": threshold,
        "train": {"path": str(train), "sha256": file_sha256(train), "rows": base},
        "candidates": {"path": str(candidates), "sha256": file_sha256(candidates)},
        "added": len(kept), "dropped": dict(counts), "out": {"path": str(out), "sha256": file_sha256(out)},
    }  # fmt: skip
    Path(str(out) + ".manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
