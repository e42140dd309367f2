"""The ``carbon-points`` command line."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from flask import Flask

from backend.config import ConfigError

SHOWN_REJECTS = 20  # rejected records listed by `import activities` (all of them with --rejects)


def _make_app() -> Flask:
    """The app given by a caller (tests: ``main(obj={"app": app})``), else one from the environment."""
    from backend.app import create_app

    ctx = click.get_current_context(silent=True)
    given = ctx.find_object(dict) if ctx is not None else None
    if given and "app" in given:
        return given["app"]

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def with_app(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command inside an application context, committing if it returns normally."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from backend.db import db
        from backend.errors import ApiError

        app = _make_app()
        with app.app_context():
            try:
                result = command(app, *args, **kwargs)
                db.session.commit()
                return result
            except ApiError as exc:
                db.session.rollback()
                detail = "; ".join(
                    f"{field}: {', '.join(map(str, msgs))}"
                    for fields in exc.errors.values() if isinstance(fields, dict)
                    for field, msgs in fields.items()
                )
                extra = f" ({detail})" if detail and detail not in exc.message else ""
                raise click.ClickException(exc.message + extra) from None

    return wrapper


@click.group()
def main() -> None:
    """Carbon inclusion (碳普惠) points platform."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from backend.bootstrap import install_reference_data
    from backend.migrate import upgrade

    app = _make_app()
    upgrade(app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")
    if revision == "head":
        for line in install_reference_data(app):
            click.echo(line)


@db.command("current")
def db_current() -> None:
    """Show the revision the database is at."""
    from backend.migrate import current_revision, head_revision

    app = _make_app()
    current = current_revision(app.config["DATABASE_URL"])
    click.echo(f"current: {current or 'empty'}; head: {head_revision()}")


@main.group()
def users() -> None:
    """Staff users."""


@users.command("create")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["operator", "auditor", "admin", "merchant_staff"]),
              help="Repeat for several roles.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--scope-region", default=None, help="GB/T 2260 code this user administers (default: all).")
@with_app
def users_create(app: Flask, username: str, roles: tuple[str, ...], password: str, scope_region: str | None) -> None:
    """Create a staff user."""
    from backend.services import users as users_service

    user = users_service.create_staff_user(username, password, list(roles), scope_region=scope_region, actor=None)
    click.echo(f"created user {user.username} (id {user.id}) with roles {', '.join(sorted(user.roles))}")


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
@with_app
def demo_seed(app: Flask) -> None:
    """Create the Yueyang demo (idempotent: safe to run every time)."""
    from backend.services import demo as demo_service

    report = demo_service.seed()
    for line in report:
        click.echo(line)


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@with_app
def audit_verify(app: Flask) -> None:
    """Recompute the hash chain; exit 1 and name the first broken row if it is broken."""
    from backend.db import db as database
    from backend.services.audit import verify_chain

    report = verify_chain(database.session)
    if report.ok:
        click.echo(f"audit chain ok: {report.checked} entries")
        return
    click.echo(f"audit chain BROKEN at entry {report.broken_at}: {report.problem} "
               f"({report.checked} entries verified before it)", err=True)
    sys.exit(1)


@main.group()
def methodologies() -> None:
    """Methodology modules and their governed versions."""


@methodologies.command("list")
@with_app
def methodologies_list(app: Flask) -> None:
    """Installed methodologies: id, formula version (of the code; the factors' versions are governed
    separately, see /public/methodologies), activity types, package."""
    from backend.services.methodologies import catalogue

    rows = catalogue()
    width = max(len(r["id"]) for r in rows) if rows else 2
    click.echo(f"{'id':<{width}}  formula  {'types':<45}  package")
    for row in rows:
        click.echo(f"{row['id']:<{width}}  {row['version']:<7}  {', '.join(row['types']):<45}  "
                   f"{row['package']} ({row['entry_point']})")


@methodologies.command("install-defaults")
@with_app
def methodologies_install_defaults(app: Flask) -> None:
    """Install each methodology's factors file as approved version 1 where it has no version yet."""
    from backend.services.methodologies import install_defaults

    installed = install_defaults()
    click.echo("installed: " + (", ".join(installed) if installed else "nothing (every methodology has versions)"))


@main.group()
def reductions() -> None:
    """The registry of certified reductions."""


@reductions.command("replay")
@click.option("--id", "reduction_id", type=int, default=None, help="Replay one reduction.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only reductions of activities on or after this day.")
@with_app
def reductions_replay(app: Flask, reduction_id: int | None, since: Any) -> None:
    """Recompute stored reductions from their stored inputs; exit 1 on any mismatch."""
    from backend.services.quantification import replay_many

    summary = replay_many(reduction_id=reduction_id, since=since)
    for problem in summary["problems"][:20]:
        click.echo(f"reduction {problem['reduction_id']}: {problem['problem']} "
                   f"(stored {problem['stored_g']} g, replayed {problem['replayed_g']})", err=True)
    click.echo(f"replayed {summary['checked']} reductions: {summary['matching']} match, "
               f"{len(summary['problems'])} do not")
    if summary["problems"]:
        sys.exit(1)


@main.group()
def rules() -> None:
    """Exchange rules (certified grams to points)."""


@rules.command("validate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def rules_validate(path: str) -> None:
    """Check a rule file; name the line and field of every problem; exit 1 if there is one."""
    from backend.rules.schema import parse_rule_file

    scenarios = _make_app().extensions["methodologies"].types()
    rule_file, problems = parse_rule_file(Path(path).read_text(encoding="utf-8"), scenarios)
    for problem in problems:
        click.echo(f"{path}:{problem}", err=True)
    if problems:
        sys.exit(1)
    assert rule_file is not None
    click.echo(f"{path}: valid rules for region {rule_file.region} ({rule_file.rules['name']})")


@main.group("import")
def import_() -> None:
    """Bulk imports."""


@import_.command("activities")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", "partner_id", type=int, required=True, help="the partner whose history this is")
@click.option("--rejects", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="write every rejected record (line, external_id, reason, field, message) to this CSV file")
@with_app
def import_activities(app: Flask, path: Path, partner_id: int, rejects: Path | None) -> None:
    """Import a partner's activities from CSV or JSON Lines; re-running skips what is already in.
    Rejected records are listed by line, and on a re-run those rejected the first time (all of
    them as CSV with --rejects)."""
    from tqdm import tqdm

    from backend.services import importer

    with tqdm(total=importer.count_items(path), unit="activity", disable=None) as bar:
        report = importer.import_file(path, partner_id, progress=bar.update)
    for label, problems in (("rejected", report.rejected), ("rejected before", report.rejected_before)):
        for problem in problems[:SHOWN_REJECTS]:
            where = f" ({problem['external_id']})" if problem["external_id"] else ""
            at = f" {problem['field']}" if problem["field"] else ""
            click.echo(f"{label}: line {problem['line']}{where}: {problem['reason']}{at}: {problem['message']}")
        if len(problems) > SHOWN_REJECTS:
            click.echo(f"{label}: {len(problems) - SHOWN_REJECTS} more" +
                       ("" if rejects else " (--rejects FILE writes them all)"))
    if rejects is not None:
        with rejects.open("w", encoding="utf-8", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=["line", *importer.REJECT_FIELDS])
            out.writeheader()
            out.writerows(sorted([*report.rejected, *report.rejected_before], key=lambda p: p["line"]))
    click.echo("imported: " + ", ".join(f"{status} {count}" for status, count in sorted(report.summary.items())))


@main.group()
def ledger() -> None:
    """The points ledger."""


@ledger.command("verify")
@with_app
def ledger_verify(app: Flask) -> None:
    """Check every ledger invariant; exit 1 naming each breach."""
    from backend.services.ledger_verify import verify

    report = verify()
    totals = report.totals
    click.echo(f"issued {totals['issued']} = held {totals['held']} + spent {totals['spent']} + expired "
               f"{totals['expired']} + reversed {totals['reversed']}; {totals['entries']} entries; "
               f"{totals['queued']} points queued")
    for breach in report.breaches:
        click.echo(f"BREACH: {breach}", err=True)
    if not report.ok:
        sys.exit(1)
    click.echo("ledger ok")


@ledger.command("expire")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Expire lots whose last day is before this day (default: today in China).")
@with_app
def ledger_expire(app: Flask, as_of: Any) -> None:
    """Expire exactly what is left of every lot past its last day (idempotent)."""
    from backend.db import utcnow
    from backend.services.ledger import china_day, expire

    day = as_of.date() if as_of is not None else china_day(utcnow())
    totals = expire(day)
    click.echo(f"expired {totals['points']} points from {totals['lots']} lots in {totals['entries']} entries "
               f"(as of {day.isoformat()})")


@ledger.command("release-queued")
@with_app
def ledger_release_queued(app: Flask) -> None:
    """Issue credits that waited for the issuance budget, as far as this period's budget allows."""
    from backend.services.ledger import release_queued

    click.echo("released {released}, still queued {still_queued}".format(**release_queued()))


@main.group()
def reports() -> None:
    """Reports per region and period (annual and mid-term reporting)."""


@reports.command("show")
@click.option("--region", required=True, help="GB/T 2260 code: the region and every region below it.")
@click.option("--period", default=None, help="A month 2026-11, a quarter 2026-Q4 or a year 2026 (China time).")
@click.option("--from", "first", default=None, help="First month YYYY-MM of a range (instead of --period).")
@click.option("--to", "last", default=None, help="Last month YYYY-MM of a range.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@with_app
def reports_show(app: Flask, region: str, period: str | None, first: str | None, last: str | None,
                 fmt: str) -> None:
    """Print the report of REGION for a period, as JSON or CSV (the platform's view: no scope)."""
    import json

    from backend.services import reports as reports_service

    report = reports_service.build(region, period=period, first=first, last=last, actor=None, location="option")
    if fmt == "csv":
        click.echo(reports_service.to_csv(report), nl=False)
    else:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the API in one process (embedded mode); production uses gunicorn."""
    from backend.jobs import scheduler as jobs

    app = _make_app()
    settings = app.extensions["settings"]
    if settings.embedded:
        click.echo(f"single-process mode: database {settings.database_url}, "
                   "in-process Redis-compatible store, scheduler in-process")
    scheduler = None
    if settings.run_scheduler:
        scheduler = jobs.build(app, blocking=False)
        scheduler.start()
        click.echo("scheduler running in this process; jobs: " + ", ".join(spec.id for spec in jobs.JOBS))
    click.echo(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/api/docs)")
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)  # let a running job finish and release its lock


@main.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduled jobs in this process (production: one or more of these, one Redis).

    Each run takes the job's Redis lock and claims its scheduled run in the database, so replicas
    run every scheduled run once. SIGTERM or Ctrl-C stops it after the running jobs finish.
    """
    import signal

    from backend.jobs import scheduler as jobs
    from backend.observability import metrics

    app = _make_app()
    settings = app.extensions["settings"]
    if settings.embedded:
        click.echo("warning: no REDIS_URL, so the job locks live in this process only: run one scheduler, "
                   "or point every scheduler at the same Redis", err=True)
    scheduler = jobs.build(app, blocking=True)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=True))
    click.echo("scheduler running; jobs: " + ", ".join(spec.id for spec in jobs.JOBS))
    if settings.scheduler_metrics_port:
        try:
            metrics.serve(settings.scheduler_metrics_port, token=settings.metrics_token)
            click.echo(f"job metrics at http://0.0.0.0:{settings.scheduler_metrics_port}/metrics")
        except OSError as exc:  # a second scheduler on this host: the jobs matter more than its metrics
            click.echo(f"warning: job metrics not served on port {settings.scheduler_metrics_port}: {exc}", err=True)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        scheduler.shutdown(wait=True)
    click.echo("scheduler stopped")


@main.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs: what runs when, and running one now."""


@jobs_group.command("list")
@with_app
def jobs_list(app: Flask) -> None:
    """Each job: schedule (China time), next fire time, latest run and its outcome."""
    from backend.jobs.scheduler import overview

    for job in overview():
        last = job["last_run"]
        latest = f"{last.outcome} at {(last.finished_at or last.created_at).isoformat()}" if last else "never run"
        click.echo(f"{job['id']:<16} {job['schedule']:<36} next {job['next_run_at'].isoformat()}  last: {latest}")


@jobs_group.command("run")
@click.argument("job_id")
@with_app
def jobs_run(app: Flask, job_id: str) -> None:
    """Run JOB_ID now, under its lock like a scheduled run; exit 1 if it fails."""
    from backend.jobs.scheduler import run_now

    result = run_now(app, job_id, actor=None)
    counts = ", ".join(f"{k} {v}" for k, v in (result.counts or {}).items())
    click.echo(f"job {job_id}: {result.outcome}" + (f" ({counts})" if counts else "") + f", run {result.run_id}")
    if result.outcome != "ok":
        click.echo(result.error or "", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
