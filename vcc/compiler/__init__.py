"""The graph IR, the build driver and the command line."""
