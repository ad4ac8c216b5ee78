"""Starting the explorer: check everything first (one-line errors), then serve with uvicorn on
the loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Callable

import uvicorn

from astrovader.errors import AstroVaDErError
from astrovader.explore.app import Explorer, create_app, open_explorer

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]  # Host headers a loopback server answers


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """A clear error now rather than uvicorn's after the catalogue has been loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise AstroVaDErError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or --host") from None


def serve(run_dir: str | Path, predictions: str | Path | None = None, host: str = "127.0.0.1", port: int = 8050,
          data: str | Path | None = None, map_method: str = "tsne", say: Callable[[str], None] = print) -> None:
    check_port(host, port)
    explorer = open_explorer(run_dir, predictions, data, map_method)
    loopback = is_loopback(host)
    for line in startup_lines(explorer, host, port, loopback):
        say(line)
    # Starlette compares the Host header up to its first ':', which an IPv6 address already holds.
    app = create_app(explorer, trusted_hosts=LOOPBACK_NAMES if loopback and ":" not in host else None)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def startup_lines(explorer: Explorer, host: str, port: int, loopback: bool) -> list[str]:
    catalogue = explorer.catalogue
    lines = [f"{catalogue.path}: {len(catalogue.ids):,} objects in {catalogue.n_components} components; "
             f"annotations in {explorer.annotations.path}"]
    map_state = explorer.latent.state()
    if map_state["status"] == "computing":  # said here: uvicorn's logging is not set up yet
        lines.append(f"{map_state['message']} in the background; the rest of the explorer works meanwhile")
    if not loopback:
        lines.append(f"warning: listening on {host}: anyone who can reach this machine on port {port} can see the "
                     f"catalogue and images and change the annotations (there is no login); use --host 127.0.0.1 to keep it local")
    shown = f"[{host}]" if ":" in host else host
    return [*lines, f"open http://{shown}:{port}/ (Ctrl-C to stop)"]
