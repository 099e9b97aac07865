"""A credential for the Azure SDK clients in sandbox mode.

The sandbox accepts any bearer token, but azure-core still insists on a credential and on
HTTPS; this one never talks to Entra ID, so sandbox runs work offline and without secrets.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from bot.sandbox.arm import SANDBOX_TOKEN

_TEN_YEARS_S = 10 * 365 * 24 * 3600


class StaticTokenCredential:
    """Implements azure-core's `TokenCredential` and `SupportsTokenInfo` protocols."""

    def __init__(self, token: str = SANDBOX_TOKEN) -> None:
        self.token = token
        self._expires_on = int(time.time()) + _TEN_YEARS_S

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, self._expires_on)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, self._expires_on)

    def close(self) -> None:
        """Nothing to release; present because `SupportsTokenInfo` requires it."""

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
