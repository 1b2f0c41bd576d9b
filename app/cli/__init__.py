"""Command-line groups the application adds to `flask`: `flask cards ...`."""
