"""Training: data pipelines, losses and metrics, fine-tuning and distributed runs."""
