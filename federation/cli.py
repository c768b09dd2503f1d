"""The ``zfed`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import transaction

import federation
from federation import demo


class _Commands(click.Group):
    """``zfed``'s commands: a ``FederationError`` is printed on one line, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except federation.FederationError as error:
            raise click.ClickException(" ".join(str(error).split())) from error


@click.group(cls=_Commands)
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


@main.command("bench")
@click.option("--n", "n", type=int, default=None, help="References per workload [20000].")
@click.option("--runs", type=int, default=None, help="Alternating runs per side [5].")
@click.option("--quick", is_flag=True, help="Small N and scale sizes: a smoke run.")
@click.option("--full", is_flag=True, help="Also measure 10^6 stubs (slow to build).")
@click.option("--check", is_flag=True, help="Exit with status 1 if any target is missed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the results as JSON to this file.")
@click.option("--only", multiple=True,
              type=click.Choice(["traversal", "commit", "keys", "scale", "foreign"]),
              help="Run only this workload (repeatable).")
def bench_command(n: int | None, runs: int | None, quick: bool, full: bool, check: bool,
                  json_path: Path | None, only: tuple[str, ...]) -> None:
    """Run the workloads on the federation and on native ZODB, alternating; print medians."""
    from federation import benchmark

    status = benchmark.main(n, runs, quick=quick, full=full, check=check,
                            json_path=json_path, only=only, echo=click.echo)
    if status:
        raise click.exceptions.Exit(status)
