"""bida_app.utils."""
