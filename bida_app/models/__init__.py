"""bida_app.models."""
