"""Values that go into fix commands: checked against their grammar, then shell-quoted.

A fix line is pasted into an operator's shell, and many of its values come from people
who are not the operator: a cluster tenant names pods and images and sets labels, anyone
with write access to a resource group names NSG rules and routes. A pod whose image is
`app:1.0 --image x; curl … | sh` must not become a line that runs the script. So every
interpolated value goes through `arg`: a value that fits the grammar it must follow (an
image reference, an ARM name, a DNS name, a CIDR, …) is `shlex.quote`d; one that does not
becomes a placeholder that is harmless in a shell (quoted `'<…>'`) and says why. Every fix
line is then checked (`is_safe`) by `safe_line`, which `bot.codes.finding` applies to every
finding: no shell operator outside quotes, ever, whatever a handler built.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Literal

Grammar = Literal[
    "arm_name", "arm_id", "dns_name", "k8s_name", "label", "image", "cidr", "port", "word"
]

# ARM names: letters, digits and `._-()` (resource groups allow the widest set; other
# types are narrower, but none allows a shell character):
# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
_ARM_NAME = r"[A-Za-z0-9_()][A-Za-z0-9_.()-]{0,89}"
_GRAMMARS: dict[str, re.Pattern[str]] = {
    "arm_name": re.compile(_ARM_NAME),
    "arm_id": re.compile(rf"(/{_ARM_NAME})+"),
    # A DNS name or wildcard FQDN (firewall rules take `*.example.com`).
    "dns_name": re.compile(
        r"(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
        r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
    ),
    # DNS-1123 subdomain: Kubernetes object names (pods, nodes, namespaces).
    "k8s_name": re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"),
    # A label value (or `key=value` selector term): alphanumerics and `-_./=`.
    "label": re.compile(r"[A-Za-z0-9]([A-Za-z0-9_./=-]{0,315}[A-Za-z0-9])?"),
    # An image reference (distribution/reference): [host[:port]/]path[:tag][@digest].
    "image": re.compile(
        r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
        r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,})?"
    ),
    "port": re.compile(r"\*|[0-9]{1,5}(-[0-9]{1,5})?"),
    "word": re.compile(r"[A-Za-z0-9_.:=,/+-]{1,256}"),
}
_WHAT = {
    "arm_name": "an Azure resource name",
    "arm_id": "an Azure resource id",
    "dns_name": "a DNS name",
    "k8s_name": "a Kubernetes name",
    "label": "a Kubernetes label",
    "image": "an image reference",
    "cidr": "an IPv4 address or prefix",
    "port": "a port or port range",
    "word": "a plain word",
}
# Outside quotes a shell treats these specially: command separators, pipes, redirections,
# substitutions, globbing and comments in the middle of a line.
_OPERATORS = set(";&|<>()`$*?[]{}~!#\\\n\r")


def fits(value: object, grammar: Grammar) -> bool:
    text = str(value)
    if grammar == "cidr":
        try:
            ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            return False
        return "/" in text or text.count(".") == 3
    return _GRAMMARS[grammar].fullmatch(text) is not None


def placeholder(name: str) -> str:
    """A stand-in the operator fills in; quoted, so a shell reads it as one plain word."""
    return shlex.quote(f"<{_printable(name)}>")


def arg(value: object, grammar: Grammar, name: str) -> str:
    """`value` quoted for a shell when it follows its grammar; else a placeholder naming
    what to fill in and why the value was left out."""
    if value is not None and fits(value, grammar):
        return shlex.quote(str(value))
    return placeholder(f"{name}: withheld, not {_WHAT[grammar]}")


def args(values: list[str], grammar: Grammar, name: str) -> str:
    return " ".join(arg(v, grammar, name) for v in values)


# `CMD <<'TAG'` + body + `TAG`: a quoted here-document, whose body the shell never expands
# (`kubectl apply -f - <<'EOF'` with a manifest). Safe when the command is, and no body line
# could end it early.
_HEREDOC = re.compile(r"^(?P<cmd>[^\n]*?) <<'(?P<tag>[A-Z_]{2,16})'\n(?P<body>.*)\n(?P=tag)$", re.S)


def is_safe(line: str) -> bool:
    """No shell operator outside single quotes, and nothing that expands inside double
    quotes: what a pasted line runs is exactly the command it shows. A comment line is
    safe when it is one line; a quoted here-document when its command is and its body
    cannot close it early."""
    if heredoc := _HEREDOC.match(line):
        body = heredoc["body"].replace("\r", "\n").split("\n")
        return heredoc["tag"] not in body and is_safe(heredoc["cmd"])
    if line.lstrip().startswith("#"):
        return not any(c in line for c in "\n\r")
    quote = None
    for i, char in enumerate(line):
        if quote == "'":
            quote = None if char == "'" else quote
        elif quote == '"':
            if char in "$`\\\n\r":
                return False
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i > 0 and line[i - 1] in " \t":
            # A trailing comment (`cmd   # why`): the shell runs nothing after it.
            return not any(c in line[i:] for c in "\n\r") and _splits(line[:i])
        elif char in _OPERATORS:
            return False
    return quote is None and _splits(line)


def _splits(line: str) -> bool:
    try:
        shlex.split(line)
    except ValueError:
        return False
    return True


# Placeholders written as `<name>` in a template: quoted so the shell does not read them
# as redirections.
_BARE_PLACEHOLDER = re.compile(r"(?<![\w'])<([A-Za-z][A-Za-z0-9 _.-]*)>")


def safe_line(line: str) -> str:
    """A fix line as it may be shown: template placeholders quoted, and a line that would
    still run anything but its command replaced by a note saying so."""
    if line.lstrip().startswith("#"):
        return _printable(line)
    if _HEREDOC.match(line):
        return line if is_safe(line) else _WITHHELD
    quoted = _BARE_PLACEHOLDER.sub(lambda m: placeholder(m.group(1)), line)
    if is_safe(quoted):
        return quoted
    return _WITHHELD


_WITHHELD = "# a command was withheld here: a value in it is not safe to paste into a shell"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
