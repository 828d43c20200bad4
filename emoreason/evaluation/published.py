"""Published results on the benchmarks emoreason evaluates, for side-by-side tables in reports.

Every number here was read from the paper's own official repository (README tables written by the
authors), and each entry names where. Numbers found only in third-party lists, or only in figures,
are left out. Values are percentages exactly as printed; ``uar`` is unweighted average recall (mean
per-class recall), ``war`` weighted average recall (accuracy), ``accuracy`` top-1 accuracy.

Not included, because they could not be checked against the papers or official repositories:
Former-DFER and EC-STFL on DFEW (their repositories do not list them; only third-party rankings
do), MAE-DFER on FERV39k and MAFW and DFER-CLIP on all three (official READMEs show them only as
images), and the MAFW and FERV39k papers' own baselines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PublishedResult:
    system: str
    metric_values: dict[str, float] = field(hash=False)  # {"uar": 53.69, "war": 65.70}, in percent
    protocol: str
    source: str  # paper title, venue, year, and the table the numbers come from


_DFEW_5FOLD = "DFEW 7-class single-label clips, 5-fold cross-validation (fd1-fd5), mean over folds"
_MAFW_5FOLD = "MAFW 11-class single-label clips, 5-fold cross-validation, mean over folds"
_FERV39K = "FERV39k 7-class, official train/test split"
_RAFDB = "RAF-DB basic expressions (7 classes), official test set, top-1 accuracy"

_MAE_DFER = (
    "Sun, Lian, Liu, Tao. MAE-DFER: Efficient Masked Autoencoder for Self-supervised Dynamic Facial Expression "
    "Recognition. ACM Multimedia 2023. Official repository sunlicai/MAE-DFER, README, DFEW five-fold table "
    "('Total' row)."
)
_S2D = (
    "Chen, Li, Shan, Wang, Hong. From Static to Dynamic: Adapting Landmark-Aware Image Models for Facial Expression "
    "Recognition in Videos. IEEE Transactions on Affective Computing, 2024 (doi:10.1109/TAFFC.2024.3453443). "
    "Official repository MSA-LMC/S2D, README, 'Reported Results and Fine-tuned Weights' table, {row} row."
)
_DFEW_REPO = (
    "Jiang, Zong, Zheng, Tang, Xia, Lu, Liu. DFEW: A Large-Scale Database for Recognizing Dynamic Facial Expressions "
    "in the Wild. ACM Multimedia 2020. Official repository jiangxingxun/DFEW, README, 'Pretrained Models' table."
)
# The DFEW authors' released models were re-trained on frames extracted from the videos, not on the
# time-interpolated (TIM) frames of the paper's tables, so these are not the paper's numbers.
_DFEW_REPO_PROTOCOL = _DFEW_5FOLD + "; models re-trained by the dataset authors on extracted frames (not TIM)"

PUBLISHED: dict[str, list[PublishedResult]] = {
    "dfew": [
        PublishedResult("3D ResNet-18 (r3d_18)", {"uar": 45.11, "war": 55.70}, _DFEW_REPO_PROTOCOL, _DFEW_REPO),
        PublishedResult("MC3-18 (mc3_18)", {"uar": 46.50, "war": 57.02}, _DFEW_REPO_PROTOCOL, _DFEW_REPO),
        PublishedResult("I3D-RGB (i3d)", {"uar": 47.61, "war": 59.24}, _DFEW_REPO_PROTOCOL, _DFEW_REPO),
        PublishedResult("MAE-DFER", {"uar": 63.41, "war": 74.43}, _DFEW_5FOLD, _MAE_DFER),
        PublishedResult(
            "S2D", {"uar": 61.82, "war": 76.03}, _DFEW_5FOLD + ", without oversampling", _S2D.format(row="DFEW")
        ),  # fmt: skip
        PublishedResult(
            "S2D (oversampling)",
            {"uar": 65.45, "war": 74.81},
            _DFEW_5FOLD + ", with oversampling",
            _S2D.format(row="DFEW"),
        ),  # fmt: skip
    ],
    "ferv39k": [
        PublishedResult(
            "Former-DFER",
            {"uar": 36.88, "war": 45.72},
            _FERV39K,
            "Zhao, Liu. Former-DFER: Dynamic Facial Expression Recognition Transformer. ACM Multimedia 2021. "
            "FERV39k is not in the paper (it appeared in 2022): official repository zengqunzhao/Former-DFER, README, "
            "'Performance on FERV39k' table.",
        ),
        PublishedResult(
            "S2D", {"uar": 41.28, "war": 52.56}, _FERV39K + ", without oversampling", _S2D.format(row="FERV39K")
        ),  # fmt: skip
        PublishedResult(
            "S2D (oversampling)",
            {"uar": 43.97, "war": 46.21},
            _FERV39K + ", with oversampling",
            _S2D.format(row="FERV39K"),
        ),  # fmt: skip
    ],
    "mafw": [
        PublishedResult(
            "S2D", {"uar": 41.86, "war": 57.37}, _MAFW_5FOLD + ", without oversampling", _S2D.format(row="MAFW")
        ),  # fmt: skip
        PublishedResult(
            "S2D (oversampling)",
            {"uar": 43.40, "war": 55.22},
            _MAFW_5FOLD + ", with oversampling",
            _S2D.format(row="MAFW"),
        ),  # fmt: skip
    ],
    "rafdb": [
        PublishedResult(
            "SCN (ResNet-18)",
            {"accuracy": 87.03},
            _RAFDB + "; trained on RAF-DB only",
            "Wang, Peng, Yang, Lu, Qiao. Suppressing Uncertainties for Large-Scale Facial Expression Recognition. "
            "CVPR 2020. Official repository kaiwang960112/Self-Cure-Network, README, 'Result' section (87.03% "
            "'as the paper shows, when training with RAF-DB only').",
        ),
        PublishedResult(
            "DAN",
            {"accuracy": 89.70},
            _RAFDB,
            "Distract Your Attention: Multi-head Cross Attention Network for Facial Expression Recognition. "
            "arXiv:2109.07270, 2021. Official repository yaoing/DAN, README, 'Models' table (RAF-DB checkpoint).",
        ),
        PublishedResult(
            "POSTER V2",
            {"accuracy": 92.21},
            _RAFDB,
            "Mao, Xu, Yin, Chang, Nie, Huang. POSTER V2: A simpler and stronger facial expression recognition network. "
            "arXiv:2301.12149, 2023. Abstract, and official repository Talented-Q/POSTER_V2, README, 'Checkpoints' "
            "table.",
        ),
    ],
}


def canonical_benchmark(name: str) -> str:
    """``"RAF-DB"``, ``"raf_db"`` and ``"rafdb"`` all name the same benchmark: ``"rafdb"``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def published_for(benchmark: str) -> list[PublishedResult]:
    """The published results for ``benchmark`` (any spelling), or ``[]`` when none are recorded."""
    return list(PUBLISHED.get(canonical_benchmark(benchmark), []))


__all__ = ["PUBLISHED", "PublishedResult", "canonical_benchmark", "published_for"]
