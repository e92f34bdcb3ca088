"""Model zoo: one registry, one file per family.

Importing this package registers every model. Use :func:`create_model`, :func:`get_spec` and
:func:`list_models`.
"""

from mobileisp.models.registry import ModelSpec, TensorSpec, create_model, get_spec, list_models, register_model

from mobileisp.models import classical  # noqa: F401,E402  (registers `classical` and `libraw`)

__all__ = ["ModelSpec", "TensorSpec", "create_model", "get_spec", "list_models", "register_model"]
from mobileisp.models import cameranet, deepisp  # noqa: F401,E402
from mobileisp.models import liteisp  # noqa: F401,E402
