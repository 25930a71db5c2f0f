"""Applications on built models: the Predictor, export, class heatmaps and image helpers."""
