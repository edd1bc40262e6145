"""KFuncDB's web page (its vhost's `/`): the tools a model may call, what each needs and the policy in force.

Read-only on purpose: no forms and no scripts, so a page an administrator opens cannot be made to run a tool.
Every value is escaped; the Remote-User Caddy sets after Authelia is shown so the reader knows who is signed in.
"""
from __future__ import annotations

from html import escape

from .policy import Policy

# Inline styles only: the page's Content-Security-Policy forbids every other source.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ccc;padding:.4em;"
         "text-align:left;vertical-align:top}.refused{color:#a00}.available{color:#070}code{font-size:.95em}")


def render(tools: list[dict], policy: Policy, user: str | None) -> str:
    """The page for ``tools`` (Registry.describe()) under ``policy``; ``user`` is the signed-in name, if any."""
    allowed = ", ".join(f"<code>{escape(cap)}</code>" for cap in sorted(policy.allowed)) or "none (no host access)"
    rows = "".join(_row(tool) for tool in tools) or '<tr><td colspan="4">No tools are registered.</td></tr>'
    signed_in = f'<p id="signed-in">Signed in as <strong>{escape(user)}</strong>.</p>' if user else ""
    available = sum(1 for tool in tools if tool["available"])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>KFuncDB: tools and capability policy</title><style>{STYLE}</style></head><body>"
        f'<h1 id="kfuncdb">KFuncDB: tools and capability policy</h1>{signed_in}'
        f'<p id="policy">Capabilities this host grants (KFUNCDB_ALLOW_CAPS): {allowed}.</p>'
        f'<p id="summary">{available} of {len(tools)} tools are available to models; a tool whose plugin needs a '
        "capability the policy does not grant is refused, at load and at every call.</p>"
        '<table id="tools"><thead><tr><th>Tool</th><th>Plugin</th><th>Capabilities</th><th>State</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></body></html>")


def _row(tool: dict) -> str:
    caps = ", ".join(f"<code>{escape(cap)}</code>" for cap in tool["capabilities"]) or "none"
    if tool["available"]:
        state = '<span class="available">available</span>'
    else:
        missing = ", ".join(escape(cap) for cap in tool.get("missingCapabilities", []))
        state = f'<span class="refused">refused{": needs " + missing if missing else ""}</span>'
    return (f'<tr><td><code>{escape(tool["name"])}</code><br>{escape(tool["description"])}</td>'
            f'<td>{escape(tool["plugin"])}</td><td>{caps}</td><td>{state}</td></tr>')
