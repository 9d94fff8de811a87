"""bida_app.reports."""
