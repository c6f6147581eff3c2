"""Route modules of the API, one noun each."""
