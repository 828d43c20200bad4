"""A teacher LLM behind any OpenAI-compatible endpoint (vLLM, a hosted API) that writes rationales.

The teacher sees the sample's gold labels, its AU evidence and its description, and is asked for the
emoreason answer format; what it returns is verified like any other target (see ``synth.verify``).
"""

from __future__ import annotations

import logging
import random

from emoreason.data import DataError
from emoreason.data.schema import Sample
from emoreason.report import AUReport

logger = logging.getLogger(__name__)


class TeacherError(DataError):
    """The teacher endpoint cannot be reached or refuses the request; the message says which."""


class Teacher:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, temperature: float = 0.7,
                 timeout: float = 120.0, max_tokens: int = 768):  # fmt: skip
        try:
            from openai import OpenAI
        except ImportError as exc:
            raise ImportError("the teacher needs the openai client: pip install 'emoreason[synth]'") from exc
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=1)
        self.base_url, self.model = base_url, model
        self.temperature, self.max_tokens = temperature, max_tokens

    def check(self) -> None:
        """Fail early, with the endpoint in the message, if the server is down or lacks the model."""
        import openai

        try:
            served = [m.id for m in self.client.models.list()]
        except openai.OpenAIError as exc:
            raise TeacherError(f"teacher endpoint {self.base_url} is not reachable ({exc})") from exc
        if self.model not in served:
            raise TeacherError(f"teacher endpoint {self.base_url} does not serve {self.model!r}; it serves {served}")

    def prompt(self, sample: Sample, evidence: list[AUReport]) -> str:
        from jinja2 import Environment, PackageLoader

        env = Environment(loader=PackageLoader("emoreason", "templates"), autoescape=False, keep_trailing_newline=True)
        return env.get_template("teacher_rationale.jinja").render(sample=sample, evidence=evidence)

    def rationale(self, sample: Sample, evidence: list[AUReport], rng: random.Random) -> str | None:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": self.prompt(sample, evidence)}],
                temperature=self.temperature, max_tokens=self.max_tokens, seed=rng.randrange(2**31),
            )  # fmt: skip
        except openai.APIConnectionError as exc:
            raise TeacherError(f"teacher endpoint {self.base_url} is not reachable ({exc})") from exc
        except openai.APIStatusError as exc:
            logger.warning("teacher refused sample %s: %s", sample.id, exc)
            return None
        return response.choices[0].message.content or None
