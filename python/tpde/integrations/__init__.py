"""Framework integrations (optional extras): `tpde.integrations.hf` (Hugging Face
Trainer, `pip install "tpde[hf]"`) and `tpde.integrations.lightning` (`"tpde[lightning]"`)."""
