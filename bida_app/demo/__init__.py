"""bida_app.demo."""
