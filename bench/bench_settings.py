"""The studio's own settings, with collected static files kept in VAR_DIR.

The benchmarks run the app exactly as `make run` does (DEBUG off, the manifest
static storage), but in a throwaway VAR_DIR, so nothing they do touches the
repository's var/ or staticfiles/.
"""

from exeml_site.settings import *  # noqa: F403
from exeml_site.settings import VAR_DIR

STATIC_ROOT = VAR_DIR / "static"
