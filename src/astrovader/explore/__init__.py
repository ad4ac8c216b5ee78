"""`astrovader explore`: a local web app over a trained run and its cluster catalogue
(components, members, latent map, synthetic samples, annotations, export). See app.py."""

from astrovader.explore.app import Explorer, create_app, open_explorer
from astrovader.explore.server import serve

__all__ = ["Explorer", "create_app", "open_explorer", "serve"]
