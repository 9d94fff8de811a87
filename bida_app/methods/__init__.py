"""bida_app.methods."""
