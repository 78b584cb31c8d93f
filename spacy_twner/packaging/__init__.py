"""Shipping a trained pipeline: runtime conversion (int8, smoothing), meta.json, the model card, the wheel."""
