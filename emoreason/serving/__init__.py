"""Serving through vLLM: an out-of-tree vLLM model, a face-crop video loader, a launcher and a client.

Everything that imports vLLM lives in this subpackage. vLLM finds it through the ``vllm.general_plugins`` entry
point (:func:`emoreason.serving.plugin.register`), so ``vllm serve <checkpoint>`` serves an emoreason checkpoint
like any multimodal model; ``emoreason serve`` starts the same server with safe defaults, and
``emoreason explain --server URL`` (:mod:`emoreason.serving.client`) talks to it with the ``openai`` client.
"""


class ServerError(RuntimeError):
    """The emoreason server could not be reached or refused a request; the message says which and why.

    ``status`` is the HTTP status of a refused request (400 for a bad video), ``None`` when unreachable."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServeError(ValueError):
    """A checkpoint or option that ``emoreason serve`` cannot serve; the message says why."""
