"""bida_app.training."""
