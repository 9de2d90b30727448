"""Reports: accuracy-diff metrics, ground-truth label loaders, palettes."""
