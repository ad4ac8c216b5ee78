"""User-facing errors: one line that names the file or field and the problem."""


class AstroVaDErError(Exception):
    """An error the CLI prints as one line (no traceback) and exits with status 2."""


class InputError(AstroVaDErError):
    """A data file, catalogue or folder that cannot be used as given."""


class ImageError(AstroVaDErError):
    """One image that cannot be decoded or preprocessed; its message is the reject reason."""


class TrainingError(AstroVaDErError):
    """Training cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""
