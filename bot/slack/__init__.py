"""The Slack surface: Block Kit messages (`blocks`), commands, the Bolt app, threads."""
