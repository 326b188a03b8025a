"""The Jinja2 templates hsmcert renders (nginx, openssl.cnf, systemd), from ``templates/``.

In a checkout the templates are the top-level ``templates/`` directory; an installed wheel carries a copy
as ``hsmcert/_data/templates`` (see setup.py). :func:`hsmcert.shipped.shipped_dir` finds either.

>>> "nginx/server.conf.j2" in template_names()
True
>>> render("nginx/standalone.conf.j2", prefix="/tmp/x", workers=1, daemon=False, user=None,
...        log_level="warn", worker_connections=64, access_log=False, includes=[]).splitlines()[3]
'daemon off;'
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hsmcert.errors import HsmcertError
from hsmcert.shipped import shipped_dir

if TYPE_CHECKING:
    import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: strict about undefined names, no HTML escaping (these are configs)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )


def template_names() -> list[str]:
    """Every template, as a path relative to the templates directory."""
    return sorted(name for name in environment().list_templates() if name.endswith(".j2"))


def render(name: str, **context: Any) -> str:
    """Render one template; a name missing from the context is an error, never an empty string."""
    import jinja2

    try:
        text = environment().get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise HsmcertError(
            f"The template {name} is missing from {shipped_dir('templates')}.",
            "Reinstall hsmcert, or restore the file from the source checkout.",
        ) from exc
    return text if text.endswith("\n") else text + "\n"
