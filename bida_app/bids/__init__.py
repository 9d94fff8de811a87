"""bida_app.bids."""
