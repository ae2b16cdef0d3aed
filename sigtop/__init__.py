"""sigtop: a live, top-like monitor of Linux signals, counted exactly in the kernel (eBPF)."""


def version() -> str:
    """sigtop's version, from the installed package's metadata (one definition: pyproject.toml)."""
    from importlib import metadata

    try:
        return metadata.version("sigtop")
    except metadata.PackageNotFoundError:
        return "unknown"
