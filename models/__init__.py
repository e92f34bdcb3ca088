"""Model zoo: one registry, one file per family.

Importing this package registers every model. Use :func:`create_model`, :func:`get_spec` and
:func:`list_models`.
"""

from mobileisp.models.registry import ModelSpec, TensorSpec, create_model, get_spec, list_models, register_model

# importing a family registers its presets
from mobileisp.models import classical  # noqa: F401,E402  (classical, libraw)
from mobileisp.models import liteisp  # noqa: F401,E402  (liteisp, liteisp-mobile)
from mobileisp.models import cameranet  # noqa: F401,E402  (cameranet, cameranet-pruned)
from mobileisp.models import deepisp  # noqa: F401,E402  (deepisp, deepisp-lite)
from mobileisp.models import paramisp  # noqa: F401,E402  (paramisp, paramisp-lite)
from mobileisp.models import crispnet  # noqa: F401,E402  (crispnet)

__all__ = ["ModelSpec", "TensorSpec", "create_model", "get_spec", "list_models", "register_model"]
