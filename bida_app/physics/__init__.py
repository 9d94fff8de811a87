"""bida_app.physics."""
