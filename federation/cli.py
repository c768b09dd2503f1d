"""The ``zfed`` command."""

from __future__ import annotations

from pathlib import Path

import click
import transaction

import federation
from federation import demo


@click.group()
def main() -> None:
    """zodb-federation: several databases used as one graph of persistent objects."""


@main.command("demo")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path),
                default=Path("federation-demo"))
def demo_command(directory: Path) -> None:
    """Link objects across FileStorage members in DIRECTORY, reopen them, show what is where."""
    demo.run(directory, echo=click.echo)


def _open(config: Path) -> federation.Federation:
    try:
        return federation.open_config(config)
    except federation.FederationError as error:
        raise click.ClickException(str(error)) from error


@main.command("stubs")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("member")
def stubs_command(config: Path, member: str) -> None:
    """List the stub records that MEMBER keeps (CONFIG is a federation TOML file)."""
    with _open(config) as fed, fed.open(transaction.TransactionManager()) as conn:
        try:
            stubs = conn.stubs(member)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        for stub in stubs:
            target = stub.target if stub.target is not None else f"<member id {stub.member_id}>"
            click.echo(f"{stub.oid}\t{target}\t{stub.class_name}")


@main.command("reindex")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("member")
def reindex_command(config: Path, member: str) -> None:
    """Rebuild MEMBER's stub and uuid indexes (after importing objects)."""
    tm = transaction.TransactionManager()
    with _open(config) as fed, fed.open(tm) as conn:
        try:
            report = conn.reindex(member)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        tm.commit()
    click.echo(f"{member}: {report.stubs} stubs ({report.duplicate_stubs} duplicates), "
               f"{report.uuids} uuids indexed")


@main.command("pack")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--days", type=float, default=0.0, show_default=True,
              help="Keep history newer than this many days.")
def pack_command(config: Path, days: float) -> None:
    """Pack every member, keeping objects that other members reference."""
    with _open(config) as fed:
        reports = fed.pack(days=days)
    for name, report in reports.items():
        click.echo(f"{name}: packed; {report.stubs} live stubs")
