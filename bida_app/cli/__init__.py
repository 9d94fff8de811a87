"""bida_app.cli."""
