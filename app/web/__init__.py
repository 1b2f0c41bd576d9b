"""The pages: the card maker's workshop at / and the operator's dashboard at /admin.

Plain HTML, CSS and JavaScript, no build step. Both pages are public shells; everything
they show comes from the JSON API with the signed-in user's token, so the dashboard's
data is guarded by the admin API itself (a non-admin sees an empty page and 403s)."""
from __future__ import annotations

from flask import Blueprint, Flask, render_template

from app.cards import layouts

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.get("/")
def index():
    page = render_template("index.html", card_sizes=list(layouts.CARD_SIZES),
                           paper_sizes=list(layouts.PAPERS))
    return page, 200, PAGE_HEADERS


@bp.get("/admin")
def admin():
    return render_template("admin.html"), 200, PAGE_HEADERS


def init_app(app: Flask) -> None:
    from app.web.layouts_api import bp as layouts_bp

    app.register_blueprint(bp)
    app.register_blueprint(layouts_bp)
