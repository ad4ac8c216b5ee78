"""Model: encoder/decoder networks, the Gaussian-mixture prior, and the loss terms."""
