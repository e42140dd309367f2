"""Partners, merchants and public-welfare projects in the person's region, newest first (each
service applies the regional scope, as for the admin API's lists)."""

from __future__ import annotations

from flask import render_template

from backend.api.admin.merchants import READERS as MERCHANT_READERS
from backend.api.admin.partners import READERS as PARTNER_READERS
from backend.api.projects import READERS as PROJECT_READERS
from backend.console.blueprint import bp
from backend.console.pages import PAGE_SIZE, before_arg
from backend.console.session import current_user, staff_page
from backend.services import merchants as merchant_service
from backend.services import partners as partner_service
from backend.services import projects as project_service


@bp.get("/partners")
@staff_page(*PARTNER_READERS)
def partners() -> str:
    rows, next_key = partner_service.browse(current_user(), before=before_arg(), limit=PAGE_SIZE)
    return render_template("console/partners.html", rows=rows, next_key=next_key)


@bp.get("/merchants")
@staff_page(*MERCHANT_READERS)
def merchants() -> str:
    rows, next_key = merchant_service.browse(current_user(), before=before_arg(), limit=PAGE_SIZE)
    return render_template("console/merchants.html", rows=rows, next_key=next_key)


@bp.get("/projects")
@staff_page(*PROJECT_READERS)
def projects() -> str:
    rows, next_key = project_service.browse_scoped(current_user(), status=None, before=before_arg(),
                                                   limit=PAGE_SIZE)
    return render_template("console/projects.html", rows=project_service.views(rows), next_key=next_key)
