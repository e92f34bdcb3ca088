"""mobileisp: learned camera ISPs from PyTorch to phones.

Stage folders at the repository root are mapped into this namespace by pyproject.toml:
``models/`` -> ``mobileisp.models``, ``export/`` -> ``mobileisp.export``,
``android_bench/`` -> ``mobileisp.android_bench``, ``ios_bench/`` -> ``mobileisp.ios_bench``.
"""

__version__ = "0.1.0"
