"""Ground-truth benchmark of interpretability methods."""
