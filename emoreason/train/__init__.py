"""Training: data, rewards, SFT and GRPO with TRL."""
