"""The Jinja2 templates hsmcert renders (nginx, systemd), from ``templates/``.

In a checkout the templates are the top-level ``templates/`` directory; an installed wheel carries a copy
as ``hsmcert/_data/templates`` (see setup.py). :func:`hsmcert.package_data.shipped_dir` finds either.

Every ``{{ value }}`` is written with the quoting of the template's format (its first directory: ``nginx/``
or ``systemd/``, see :mod:`hsmcert.syntax`), so a value can never become a directive. A template asks for
another form with a filter (``systemd_path``, ``systemd_name``, ``systemd_command``, ``nginx_directive``);
macro output and filter output are already quoted and pass unchanged.

>>> "nginx/server.conf.j2" in template_names()
True
>>> render("nginx/standalone.conf.j2", prefix="/tmp/x", workers=1, daemon=False, user=None,
...        log_level="warn", worker_connections=64, access_log=False, includes=[]).splitlines()[3]
'daemon "off";'
>>> render("nginx/standalone.conf.j2", prefix="/tmp/x y;", workers=1, daemon=False, user=None,
...        log_level="warn", worker_connections=64, access_log=False, includes=[]).splitlines()[4]
'pid "/tmp/x y;/nginx.pid";'
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from hsmcert import syntax
from hsmcert.errors import HsmcertError
from hsmcert.package_data import shipped_dir

if TYPE_CHECKING:
    import jinja2

FORMATS: dict[str, Callable[[object], str]] = {
    "nginx": syntax.nginx_string,
    "systemd": syntax.systemd_word,
}
"""Template directory -> how a value is written there unless a filter says otherwise."""


@cache
def environment(fmt: str = "nginx") -> jinja2.Environment:
    """The Jinja2 environment of one format: strict about undefined names, every value quoted for ``fmt``."""
    import jinja2
    from markupsafe import Markup

    quote = FORMATS[fmt]

    def finalize(value: object) -> object:
        # Markup is text a filter or a macro already wrote in the format; everything else is quoted.
        return value if isinstance(value, Markup) else Markup(quote(value))  # noqa: S704 - quoted for this format just now

    def marked(function: Callable[..., str]) -> Callable[..., Markup]:
        return lambda *args: Markup(function(*args))  # noqa: S704 - the filter quotes

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=True,  # with finalize: this format's quoting, never HTML's
        finalize=finalize,
    )
    env.filters.update(
        nginx_directive=marked(syntax.nginx_directive),
        systemd_path=marked(syntax.systemd_path),
        systemd_name=marked(syntax.systemd_name),
        systemd_command=marked(syntax.systemd_command),
        systemd_calendar=marked(syntax.systemd_calendar),
        systemd_timespan=marked(syntax.systemd_timespan),
    )
    return env


def template_names() -> list[str]:
    """Every template, as a path relative to the templates directory."""
    return sorted(name for name in environment().list_templates() if name.endswith(".j2"))


def render(name: str, **context: Any) -> str:
    """Render one template; a name missing from the context is an error, never an empty string."""
    import jinja2

    fmt = name.split("/", 1)[0]
    if fmt not in FORMATS:
        raise HsmcertError(f"The template {name} is of no known format ({', '.join(FORMATS)}).")
    try:
        text = environment(fmt).get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise HsmcertError(
            f"The template {name} is missing from {shipped_dir('templates')}.",
            "Reinstall hsmcert, or restore the file from the source checkout.",
        ) from exc
    return text if text.endswith("\n") else text + "\n"
