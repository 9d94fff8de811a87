"""bida_app.workflows."""
