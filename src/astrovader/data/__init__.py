"""Data: catalogues, image decoding and preprocessing, the cache, splits, loaders, simulation."""
