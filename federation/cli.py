"""The ``zfed`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import transaction

import federation
from federation import demo, maintenance
from federation.gc import iter_collectable

CONFIG = click.Path(exists=True, dir_okay=False, path_type=Path)


class _Commands(click.Group):
    """``zfed``'s commands: a ``FederationError`` is printed on one line, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except federation.FederationError as error:
            raise click.ClickException(" ".join(str(error).split())) from error


@click.group(cls=_Commands, invoke_without_command=True)
@click.version_option(package_name="zodb-federation", prog_name="zfed")
@click.pass_context
def main(ctx: click.Context) -> None:
    """zodb-federation: several databases used as one graph of persistent objects.

    CONFIG is a federation's configuration file, in TOML or ZODB's ZConfig format
    (docs/operations.md).
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@main.command("demo", short_help="Run the demo federation in DIRECTORY.")
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


@main.command("stubs", short_help="List the stub records a member keeps.")
@click.argument("config", type=CONFIG)
@click.argument("member")
def stubs_command(config: Path, member: str) -> None:
    """List the stub records that MEMBER keeps, by oid: oid, target, target class."""
    with _open(config) as fed, fed.open(transaction.TransactionManager()) as conn:
        try:
            stubs = sorted(conn.stubs(member), key=lambda stub: stub.oid)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        if not stubs:
            click.echo(f"{member}: no stubs")
        for stub in stubs:
            target = stub.target if stub.target is not None else f"<member id {stub.member_id}>"
            click.echo(f"{stub.oid}\t{target}\t{stub.class_name}")


@main.command("reindex", short_help="Rebuild a member's stub and uuid indexes.")
@click.argument("config", type=CONFIG)
@click.argument("member")
def reindex_command(config: Path, member: str) -> None:
    """Bring MEMBER's stub and uuid indexes in line with its records (after an import)."""
    tm = transaction.TransactionManager()
    progress = _Progress()
    with _open(config) as fed, fed.open(tm) as conn:
        try:
            for attempt in tm.attempts():
                with attempt:
                    report = maintenance.reindex(conn, member, progress=progress)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        finally:
            progress.close()
    click.echo(f"{member}: {report.stubs} stubs ({report.duplicate_stubs} duplicates), "
               f"{report.uuids} uuids indexed; {report.added} entries added or corrected, "
               f"{report.removed} removed")


_EXCLUDE = click.option(
    "--exclude", multiple=True, metavar="MEMBER",
    help="Leave MEMBER out (repeatable): it is not read, so objects that only it references "
         "count as garbage.")


@main.command("pack", short_help="Pack every member, keeping cross-member targets.")
@click.argument("config", type=CONFIG)
@click.option("--days", type=float, default=0.0, show_default=True,
              help="Keep history newer than this many days.")
@_EXCLUDE
@click.option("--dry-run", is_flag=True, help="List what would be collected; change nothing.")
def pack_command(config: Path, days: float, exclude: tuple[str, ...], dry_run: bool) -> None:
    """Collect the garbage of every member and pack them, keeping cross-member references.

    Refuses to run when a member cannot be read, unless it is excluded.
    """
    progress = _Progress()
    with _open(config) as fed:
        try:
            report = fed.pack(days=days, exclude=exclude, dry_run=dry_run, progress=progress)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        finally:
            progress.close()
    if dry_run:
        for name, oid in iter_collectable(report):
            click.echo(f"{name}\toid {oid} (0x{oid:x})\twould be collected")
    click.echo(report.summary())


@main.command("check", short_help="Report broken references and index problems.")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_EXCLUDE
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--repair", is_flag=True,
              help="Rebuild the indexes of members with index findings (nothing else).")
def check_command(config: Path, exclude: tuple[str, ...], as_json: bool, repair: bool) -> None:
    """Read every member and report broken references and index problems.

    Exit status 1 when anything is found (even if --repair fixed it).
    """
    progress = _Progress()
    with _open(config) as fed:
        try:
            report = fed.check(exclude=exclude, repair=repair, progress=progress)
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        finally:
            progress.close()
    click.echo(report.to_json() if as_json else "\n".join(report.lines()))
    if not report.ok:
        raise click.exceptions.Exit(1)


@main.command("migrate", short_help="Rewrite native multi-database references into stubs.")
@click.argument("config", type=CONFIG)
@click.option("--to-native", is_flag=True,
              help="Rewrite stub references to ZODB members into native references instead.")
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              metavar="N", help="Records rewritten per transaction.")
@click.option("--dry-run", is_flag=True,
              help="Count what would be rewritten, per member and class; change nothing.")
@click.option("--member", "members", multiple=True, metavar="MEMBER",
              help="Migrate only MEMBER's records (repeatable); all ZODB members by default.")
def migrate_command(config: Path, to_native: bool, batch: int, dry_run: bool,
                    members: tuple[str, ...]) -> None:
    """Rewrite ZODB native multi-database references into stubs, member by member.

    Each transaction rewrites at most N records; an interrupted run is
    finished by running it again.  With --to-native, stubs naming objects of
    ZODB members become native references again (those naming foreign
    records stay, and are counted).
    """
    progress = _Progress()
    with _open(config) as fed:
        try:
            report = fed.migrate(to_native=to_native, batch=batch, dry_run=dry_run,
                                 members=members or None, progress=progress)
        finally:
            progress.close()
    click.echo("\n".join(report.lines()))


class _Progress:
    """A progress bar on a terminal's standard error; silent in scripts."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.bar: Any = None
        self.phase = ""
        self.done = 0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self.enabled or not total:
            return
        if phase != self.phase:
            self.close()
            self.phase, self.done = phase, 0
            self.bar = click.progressbar(length=total, label=phase, file=self.stream,
                                         show_pos=True)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@main.command("recover", short_help="Settle transactions a crash left half-done.")
@click.argument("config", type=CONFIG)
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@click.option("--commit", "commits", multiple=True, metavar="GID",
              help="Settle this in-doubt transaction by finishing what is left of it.")
@click.option("--abort", "aborts", multiple=True, metavar="GID",
              help="Settle this in-doubt transaction by rolling back what can be.")
def recover_command(config: Path, dry_run: bool, commits: tuple[str, ...],
                    aborts: tuple[str, ...]) -> None:
    """List and settle the transactions over several members that a crash left half-done.

    federation.open() settles them by itself; this command shows those it
    cannot settle without guessing (in doubt, exit status 1) and settles
    them on your word with --commit or --abort (docs/transactions.md).
    """
    decisions = {gid: True for gid in commits} | {gid: False for gid in aborts}
    with federation.open_config(config, recover=False) as fed:
        report = fed.recover(decisions=decisions, dry_run=dry_run)
    settled = {*report.committed, *report.rolled_back, *(item.gid for item in report.in_doubt)}
    unknown = sorted(set(decisions) - settled)
    if unknown:
        raise click.ClickException(
            f"No transaction {unknown[0]} is in the journal of this federation; "
            "'zfed recover CONFIG' lists those in doubt.")
    verb = "would be " if dry_run else ""
    for gid in report.committed:
        click.echo(f"{gid}: {verb}committed")
    for gid in report.rolled_back:
        click.echo(f"{gid}: {verb}rolled back")
    for item in report.in_doubt:
        click.echo(f"in doubt: {item}")
    if not (report.committed or report.rolled_back or report.in_doubt):
        click.echo("Nothing to recover.")
    if report.in_doubt:
        raise click.exceptions.Exit(1)


@main.command("bench", short_help="Compare the federation with native ZODB.")
@click.option("--n", "n", type=int, default=None, help="References per workload [20000].")
@click.option("--runs", type=int, default=None, help="Alternating runs per side [5].")
@click.option("--quick", is_flag=True, help="Small N and scale sizes: a smoke run.")
@click.option("--full", is_flag=True, help="Also measure 10^6 stubs (slow to build).")
@click.option("--check", is_flag=True, help="Exit with status 1 if any target is missed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the results as JSON to this file.")
@click.option("--only", multiple=True,
              type=click.Choice(["traversal", "commit", "keys", "scale", "foreign", "members"]),
              help="Run only this workload (repeatable).")
def bench_command(n: int | None, runs: int | None, quick: bool, full: bool, check: bool,
                  json_path: Path | None, only: tuple[str, ...]) -> None:
    """Run the workloads on the federation and on native ZODB, alternating; print medians."""
    from federation import benchmark

    status = benchmark.main(n, runs, quick=quick, full=full, check=check,
                            json_path=json_path, only=only, echo=click.echo)
    if status:
        raise click.exceptions.Exit(status)


@main.command("info", short_help="Show each member's storage, key kind and size.")
@click.argument("config", type=CONFIG)
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info_command(config: Path, as_json: bool) -> None:
    """Show, per member: kind of storage, key kind, read-only flag, objects, stubs, bytes."""
    from federation import info

    with _open(config) as fed:
        facts = info.describe(fed)
    if as_json:
        click.echo(json.dumps(facts, indent=2, sort_keys=True))
    else:
        for line in info.render(facts):
            click.echo(line)


@main.command("serve", short_help="Serve the file members over ZEO.")
@click.argument("config", type=CONFIG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port to listen on; 0, the default, picks a free one.")
@click.option("--client-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the client configuration to this file instead of printing it.")
def serve_command(config: Path, host: str, port: int, client_config: Path | None) -> None:
    """Serve the file members of CONFIG over ZEO until Ctrl-C or SIGTERM.

    Prints the client configuration (zeo:// members; give it to zfed shell
    or federation.open_config), or writes it to --client-config FILE.
    """
    from federation import serve

    with serve.StopSignals() as stop:
        try:
            server = serve.FederationServer(config, host, port)
            server.start()
        except federation.FederationError as error:
            raise click.ClickException(str(error)) from error
        try:
            host_text, port_number = server.address or (host, port)
            if client_config is None:
                click.echo(server.client_config(), nl=False)
                where, to_stderr = "printed above", True
            else:
                try:
                    server.write_client_config(client_config)
                except federation.FederationError as error:
                    raise click.ClickException(str(error)) from error
                where, to_stderr = f"written to {client_config}", False
            click.echo(f"Serving {', '.join(server.served)} at {host_text}:{port_number}; "
                       f"client configuration {where}. Ctrl-C or SIGTERM stops.", err=to_stderr)
            signal_name = stop.wait()
        finally:
            server.close()
    click.echo(f"Stopped by {signal_name}; storages closed.", err=to_stderr)


@main.command("shell", short_help="Open a Python session on the federation.")
@click.argument("config", type=CONFIG)
@click.option("-c", "--command", "source", default=None,
              help="Run this Python code instead of an interactive session.")
def shell_command(config: Path, source: str | None) -> None:
    """Open a Python session with fed, conn, roots and transaction bound.

    IPython is used if installed. Changes are saved by transaction.commit();
    what is left uncommitted at the end is aborted.
    """
    from federation import shell

    with _open(config) as fed:
        status = shell.run(fed, source, where=str(config))
    if status:
        raise click.exceptions.Exit(status)
