"""Who may talk to the studio, and what it hands out (issue 26). The studio reads and writes
the whole workspace, so a web page the user happens to visit must not reach it:

- Host check: a page that rebinds its own name to 127.0.0.1 (DNS rebinding) still sends its
  own name as Host, so only the studio's own address is accepted (as Jupyter, the Ray
  dashboard and code-server do);
- Origin check: a state-changing request from another origin (even another port on this
  machine, which SameSite treats as the same site) is refused;
- a per-run secret token, from the URL the command prints or the HttpOnly cookie that the
  page sets, on everything but the page's own script and style sheet;
- /files serves only the media and reports the page shows, never hidden files or weights;
- a Content-Security-Policy on every response, so that a name that slips into markup still
  runs no script.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

PAGE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; img-src 'self' data: blob:; media-src 'self' blob:; "
            "style-src 'self'")
# The evaluate report has its own inline <style> and is framed by the Report tab; no script.
FILES_CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; base-uri 'none'; "
             "form-action 'none'; frame-ancestors 'self'; img-src 'self' data: blob:; "
             "media-src 'self' blob:; style-src 'self' 'unsafe-inline'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

LOCAL = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The page's own code: nothing of the workspace.
PUBLIC = frozenset({"/app.js", "/masks.js", "/style.css"})
PAGES = frozenset({"/", "/index.html"})
# What the page shows through /files: crops and plots, the report's page, images and videos.
SERVED = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".html",
                    ".mp4", ".mkv", ".mov", ".webm", ".avi"})
NO_TOKEN_PAGE = ("intracoder studio: this page needs its token. Open the URL that "
                 "`intracoder studio` printed when it started (it ends in ?token=...).\n")


class Refused(Exception):
    """A request the studio does not answer: ``status`` and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _bare(host: str) -> str:
    return host.strip().lower().strip("[]")


def split_host(value: str, scheme: str = "http") -> tuple[str, int] | None:
    """A Host header (or an origin's netloc) as (host, port); None when it is not one."""
    if not value or any(c in value for c in "@/\\?# \t"):
        return None
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or (443 if scheme == "https" else 80)


class Gate:
    """The checks every request passes before the app sees it."""

    def __init__(self, token: str, bound_host: str):
        self.token = token.encode()
        bound = _bare(bound_host)
        self.hosts = LOCAL | {bound}
        self.any_ip = bound in WILDCARD  # listening everywhere: any address, never a name

    def accepts(self, host: str) -> bool:
        if host in self.hosts:
            return True
        if not self.any_ip:
            return False
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def valid(self, candidate: str | None) -> bool:
        # compare_digest takes its time whatever the guess; bytes, as it refuses non-ASCII str
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.token)

    def check(self, method: str, path: str, scheme: str, headers, query_token: str | None,
              cookie_token: str | None) -> None:
        """Raises Refused unless the request may go on."""
        host_header = headers.get("host", "")
        own = split_host(host_header, scheme)
        if own is None or not self.accepts(own[0]):
            raise Refused(403, f"Host {host_header!r} is not this studio's address: open the "
                               "URL that intracoder studio printed")
        origin = headers.get("origin")
        if method.upper() in UNSAFE_METHODS and origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            theirs = parts and split_host(parts.netloc, parts.scheme)
            if not theirs or parts.scheme != scheme or theirs[1] != own[1] \
                    or not self.accepts(theirs[0]):
                raise Refused(403, f"a request from another site ({origin}) is refused")
        if path in PUBLIC:
            return
        if not (self.valid(query_token) or self.valid(cookie_token)):
            raise Refused(401, "no valid token: open the URL that intracoder studio printed "
                               "(it ends in ?token=...)")


def served_file(root: Path, path: str) -> Path:
    """The workspace file behind /files/PATH, or Refused: only what the page shows."""
    if "\x00" in path:
        raise Refused(400, "a NUL byte in a file path")
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or "\\" in path:
        raise Refused(403, f"{path}: outside the workspace")
    if any(part.startswith(".") for part in rel.parts):  # dotfiles and dot-folders
        raise Refused(403, f"{path}: hidden files are not served")
    target = (root / rel).resolve()
    if target == root or root not in target.parents:  # a symlink leading out
        raise Refused(403, f"{path}: outside the workspace")
    if any(part.startswith(".") for part in target.relative_to(root).parts):
        raise Refused(403, f"{path}: hidden files are not served")
    if target.suffix.lower() not in SERVED:  # weights, checkpoints' state, settings, code
        raise Refused(403, f"{path}: not a file the studio shows")
    if not target.is_file():
        raise Refused(404, f"{path}: no such file")
    return target


def page_url(host: str, port: int, token: str) -> str:
    """The URL the command prints: the address the browser can open, with the token."""
    bare = _bare(host)
    shown = "127.0.0.1" if bare in WILDCARD else bare
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"
