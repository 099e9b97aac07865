"""Who may use a cluster from Slack: the channel, always, and where the configuration names
user groups, membership of one of them.

Membership comes from Slack (`usergroups.users.list`) and is remembered for a minute: the
listener asks before it acks, so a cold lookup costs one short Web API call and a warm one
nothing, and a change to a group takes effect within the minute. When Slack will not say,
the request is refused with the reason: nothing is authorized on an error.
"""

from __future__ import annotations

import contextlib
import threading

from cachetools import TTLCache
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.destination import judge
from bot.directory import Directory
from bot.endpoint import Endpoint

MEMBERS_TTL_S = 60
LOOKUP_TIMEOUT_S = 2  # the lookup runs before the ack, which Slack wants within 3 s


class Authorization:
    """Slack-side authorization: may this user, in this channel, use this cluster, probe
    this destination, approve a bypass (not Azure RBAC, nor how the bot reaches a
    cluster's API server: bot/collect/kube.py's KubeConnection)."""

    def __init__(self, directory: Directory, client: WebClient, ttl_s: float = MEMBERS_TTL_S):
        self.directory = directory
        # Its own client, one try: no waiting out a 429's Retry-After, nor a second
        # timeout, while Slack waits for the ack.
        self._slack = WebClient(
            token=client.token,
            base_url=client.base_url,
            timeout=LOOKUP_TIMEOUT_S,
            retry_handlers=[],
        )
        self._members: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1024, ttl=ttl_s)
        self._lock = threading.Lock()

    def refusal(self, alias: str, channel: str, user: str) -> str | None:
        """Why `user` may not use `alias` from `channel`, or None when they may. A reason
        never says anything about a cluster this channel may not see."""
        directory = self.directory
        if not directory.allowed(alias, channel):
            # One answer whether the alias is unknown or forbidden: a refusal must not
            # tell a channel which clusters exist beyond the ones it may see.
            reason = (
                f"this channel may not check {alias!r} (or there is no such cluster); ask "
                "the bot's operators to add this channel to the cluster's `channels`"
            )
            visible = directory.visible(channel)
            if visible:
                reason += f". Clusters this channel may check: {', '.join(visible)}"
            return reason
        groups = directory.user_groups.get(alias, ())
        if not groups:
            return None
        try:
            if any(user in self._members_of(group) for group in groups):
                return None
        except SlackApiError as exc:
            why = f"Slack said: {exc.response.get('error', 'no answer')}"
        except OSError:
            why = "Slack did not answer"
        else:
            listed = ", ".join(f"`{g}`" for g in groups)
            return (
                f"only members of the user groups {listed} may check {alias!r}; ask the "
                "bot's operators or a group manager to add you"
            )
        return (
            f"cannot check whether you are in the user groups that may use {alias!r} ({why}); "
            "try again, and if it persists tell the bot's operators (the app needs the "
            "usergroups:read scope, and the groups must exist)"
        )

    def destination(self, alias: str, user: str, endpoint: Endpoint) -> tuple[str | None, bool]:
        """(why the probe may not aim at `endpoint` for this user, or None; whether the
        cluster's private allowance applies to them). Membership of
        `allowPrivateUserGroups` is asked of Slack like `userGroups`; an error grants
        nothing."""
        config = self.directory.policy(alias)
        groups = config.allow_private_user_groups
        in_groups = not groups
        if groups:
            with contextlib.suppress(SlackApiError, OSError):
                in_groups = any(user in self._members_of(g) for g in groups)
        refusal = judge(endpoint, config.policy(in_groups))
        return (str(refusal) if refusal else None), in_groups

    def in_any(self, user: str, groups: tuple[str, ...]) -> bool:
        """Whether `user` is in one of `groups` (Slack's errors propagate: never a yes)."""
        return any(user in self._members_of(group) for group in groups)

    def _members_of(self, group: str) -> frozenset[str]:
        with self._lock:
            members = self._members.get(group)
        if members is None:
            members = frozenset(self._slack.usergroups_users_list(usergroup=group)["users"])
            with self._lock:
                self._members[group] = members
        return members
