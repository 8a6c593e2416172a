"""One module per concern; each returns a list of `models.Finding`."""
