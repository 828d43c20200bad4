"""Serving through vLLM: an out-of-tree vLLM model, a face-crop video loader, a launcher and a client.

Everything that imports vLLM lives in this subpackage. vLLM finds it through the ``vllm.general_plugins`` entry
point (:func:`emoreason.serving.plugin.register`), so ``vllm serve <checkpoint>`` serves an emoreason checkpoint
like any multimodal model; ``emoreason serve`` starts the same server with safe defaults, and
``emoreason explain --server URL`` (:mod:`emoreason.serving.client`) talks to it with the ``openai`` client.
"""
