"""bida_app.diffusion."""
