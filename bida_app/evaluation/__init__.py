"""bida_app.evaluation."""
