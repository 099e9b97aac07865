"""URL secrets and principal ids leave nothing but the probe's own argument list."""

from __future__ import annotations

import pytest

from bot.redact import redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.contoso.com/health?page=2", "https://api.contoso.com/health?page=2"),
        (
            "https://st.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=abcDEF%2B1%3D",
            "https://st.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=***",
        ),
        (
            "https://app.contoso.com/cb?code=0.AXo1&state=x",
            "https://app.contoso.com/cb?code=***&state=x",
        ),
        (
            "https://hooks.slack.com/services/T0001/B0001/aB3dE5fG7hJ9kL1mN3pQ5rS7",
            "https://hooks.slack.com/services/T0001/B0001/***",
        ),
        ("https://user:pw@h.contoso.com/", "https://***@h.contoso.com/"),
        (
            "https://h.contoso.com/?api_key=k1&access_token=t1",
            "https://h.contoso.com/?api_key=***&access_token=***",
        ),
        ("telnet://db.contoso.com:5432", "telnet://db.contoso.com:5432"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_any_text():
    text = (
        "probe of https://h.contoso.com/x?sig=S3CR3T failed; token xoxb-1-2-abc; "
        "Authorization: Bearer eyJ0eXAi.abc; The client 'a1b2c3d4-0000-1111-2222-333344445555' "
        "with object id 'a1b2c3d4-0000-1111-2222-333344445556' does not have authorization "
        "to perform action 'Microsoft.Network/routeTables/read'"
    )
    shown = redact(text)
    for secret in ("S3CR3T", "xoxb-1-2", "eyJ0eXAi", "a1b2c3d4-0000"):
        assert secret not in shown
    assert "Microsoft.Network/routeTables/read" in shown and "https://h.contoso.com/x" in shown
