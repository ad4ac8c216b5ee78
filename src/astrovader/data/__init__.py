"""Data: catalogues, image decoding and preprocessing, FITS, the cache, splits, loaders; where
the images come from (simulation, survey cutouts) is `data.sources`."""
