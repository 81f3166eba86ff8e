"""The optional dependencies (the package's extras) and the error that names the one to install
when an integration module is imported without it."""

from __future__ import annotations

#: The extra that installs each optional top-level package (pyproject.toml's extras).
EXTRA_OF = {"flask": "flask", "prometheus_client": "prometheus", "opentelemetry": "otel",
            "rich": "report"}


def missing_extra(exc: ImportError, module: str) -> ImportError:
    """The error to raise from ``module`` when importing one of its optional dependencies raised
    ``exc``: a ``ModuleNotFoundError`` naming the extra to install when ``exc`` is that package
    missing, else ``exc`` itself (a broken installation is not hidden behind a hint)."""
    package = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF.get(package)
    if extra is None or not isinstance(exc, ModuleNotFoundError):
        return exc
    return ModuleNotFoundError(
        f"{module} needs {package}, which is not installed: "
        f'pip install "sherlock-ai[{extra}]"', name=exc.name)
