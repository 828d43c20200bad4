"""Reasoning backends that turn AU evidence into an explained conclusion."""
