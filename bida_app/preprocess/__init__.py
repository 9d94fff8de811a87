"""bida_app.preprocess."""
