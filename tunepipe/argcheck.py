"""Checks for values handed to git, dvc, torchrun or prefect as command-line arguments.

A flow parameter, a CLI option or a params.yaml field may come from someone who can start a run
but not log in to the worker. Passed on unchecked, `--upload-pack=<cmd>` is a git option that runs
a command, `ext::<cmd>` is a git transport that runs one, and `-oProxyCommand=<cmd>` reaches ssh.
Every such value is checked here before any command runs, and callers also put it after `--`
(where the command takes one) and never through a shell.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess

from tunepipe.errors import PipelineError

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# git's `<transport>::<address>` form runs the helper git-remote-<transport> (ext:: runs a command).
TRANSPORT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")
URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
# scp-like `[user@]host:path`: a colon before any slash (git's own rule for it).
SCP = re.compile(r"(?:[^@/]*@)?(?P<host>[^/:]+):")
GIT_SCHEMES = ("https", "http", "ssh", "git", "file", "git+ssh", "ssh+git")
# What Prefect refuses in deployment and work pool names (prefect's BANNED_CHARACTERS).
PREFECT_BANNED = "/%&<>"
HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _fail(what: str, value: str, expected: str) -> PipelineError:
    return PipelineError(f"{what} {value!r}: {expected}")


def check_plain(value: object, what: str) -> str:
    """A non-empty string that no command can read as an option: no leading '-', no control
    characters (a newline would start a new line in git's config or a log)."""
    if not isinstance(value, str) or not value:
        raise PipelineError(f"{what}: expected a non-empty string, got {value!r}")
    if value.startswith("-"):
        raise _fail(what, value, "must not start with '-' (a command would read it as an option)")
    if CONTROL.search(value):
        raise _fail(what, value, "must not contain control characters or line breaks")
    return value


def check_prefect_name(value: object, what: str, flow_prefix: bool = False) -> str:
    """A Prefect deployment or work pool name: plain, without the characters Prefect refuses;
    `flow_prefix`: `flow/deployment` as `prefect deploy --name` also takes it."""
    name = check_plain(value, what)
    parts = name.split("/", 1) if flow_prefix else [name]
    for part in parts:
        if not part or part in (".", "..") or any(c in PREFECT_BANNED for c in part):
            expected = "expected a name without " + " ".join(PREFECT_BANNED)
            raise _fail(what, name, expected + (" (or flow/deployment)" if flow_prefix else ""))
    return name


def first_line(text: str) -> str:
    """A command's error output as one line (git's first `fatal:` says what went wrong)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def check_ref(value: object, what: str) -> str:
    """A branch, tag or commit as `git check-ref-format --allow-onelevel` accepts it: no `..`,
    spaces, `:`, `~`, `^`; a leading '+' (a forced refspec to `git fetch`) is refused too."""
    ref = check_plain(value, what)
    if ref.startswith("+"):
        raise _fail(what, ref, "must not start with '+' (git fetch would read it as a forced refspec)")
    proc = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        expected = "not a valid git branch, tag or commit name (see `git check-ref-format`; e.g. main, v1.2)"
        raise _fail(what, ref, expected)
    return ref


def check_remote(value: object, what: str, schemes: tuple[str, ...] | None = GIT_SCHEMES) -> str:
    """A remote to clone, fetch or push: a URL with one of `schemes` (None: any scheme, as DVC's
    remotes take s3://, gs://, ...), an scp-like `user@host:path`, or a local path. Refused: a
    leading '-', git's `<transport>::` form (ext::, fd::) and a host that starts with '-'."""
    text = check_plain(value, what)
    if TRANSPORT.match(text):
        expected = "the `<transport>::` form is refused (git's ext:: runs a command); give a URL or a path"
        raise _fail(what, text, expected)
    url = URL.fullmatch(text)
    if url:
        scheme = url["scheme"].lower()
        if schemes is not None and scheme not in schemes:
            raise _fail(what, text, f"URL scheme {scheme!r} is not one of {', '.join(schemes)}")
        host = url["rest"].split("/", 1)[0].rpartition("@")[2]
        if host.startswith("-"):
            raise _fail(what, text, "the host must not start with '-' (ssh would read it as an option)")
        return text
    scp = SCP.match(text)
    if scp and scp["host"].startswith("-"):
        raise _fail(what, text, "the host must not start with '-' (ssh would read it as an option)")
    return text


def is_host(value: object) -> bool:
    """A host name (letters, digits, '-' and '.', no label starting or ending with '-') or an IP
    address (IPv6 may be in brackets): what torchrun's --master-addr needs, and nothing else."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    try:
        ipaddress.ip_address(value.removeprefix("[").removesuffix("]") if value.startswith("[") else value)
        return True
    except ValueError:
        pass
    return all(HOST_LABEL.fullmatch(label) for label in value.removesuffix(".").split("."))
