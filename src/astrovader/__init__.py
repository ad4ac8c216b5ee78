"""AstroVaDEr: unsupervised galaxy morphology with a Gaussian-mixture variational autoencoder.

VaDE (Jiang et al. 2016) trained with the s3VDC recipe (Cao et al. 2020), as in
Spindler, Geach & Smith (2020, MNRAS), without the defects of the public code.
"""

from astrovader.config import Config

__all__ = ["Config", "AstroVaDEr"]
__version__ = "0.1.0"


def __getattr__(name):
    # The estimator pulls in torch and Lightning; import it only when asked for.
    if name == "AstroVaDEr":
        from astrovader.estimator import AstroVaDEr

        return AstroVaDEr
    raise AttributeError(name)
