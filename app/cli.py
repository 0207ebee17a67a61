"""The `notifications` command (typer + rich). Thin: every command calls the services.

    init | migrate | server | worker | dev          run and set up the service
    template list | show | create | update | delete manage templates (admin caller "cli")
    test email | template | providers               send test notifications, check providers
    stats overview | delivery | engagement | ...    statistics; stats export json|csv FILE
    provider list | add | remove | rotate-key       provider rows (config encrypted at rest)
    campaign send | status | cancel                 bulk sends from a CSV or JSON file
    gdpr export | delete                            a user's data, audit-logged
    hasura export                                   write the Hasura metadata

Each group is one module under app/commands/; this module only assembles them.
Read commands take --json (plain JSON on stdout, for scripts). Progress bars and
notices go to stderr. Exit codes: 0 ok, 1 failure, 2 usage or bad input.
"""

from __future__ import annotations

from app.commands import gdpr, hasura, processes, providers, stats, templates, testing
from app.commands.campaigns import campaign_app
from app.commands.common import app

app.command()(processes.init)
app.command()(processes.server)
app.command()(processes.worker)
app.command()(processes.dev)
app.command("migrate")(processes.migrate_command)
app.add_typer(templates.template_app, name="template")
app.add_typer(testing.test_app, name="test")
app.add_typer(stats.stats_app, name="stats")
app.add_typer(providers.provider_app, name="provider")
app.add_typer(campaign_app, name="campaign")
app.add_typer(gdpr.gdpr_app, name="gdpr")
app.add_typer(hasura.hasura_app, name="hasura")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
