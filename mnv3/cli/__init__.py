"""Command-line interface (console script ``mnv3``)."""
