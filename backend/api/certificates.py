"""Public, unauthenticated: retirement certificates (a page and its JSON) and the platform's
public signing keys, with which anyone checks certificates and bank statements offline."""

from __future__ import annotations

from flask import Response, render_template, request
from flask.views import MethodView
from marshmallow import Schema, fields

from backend.api.common import Blueprint
from backend.errors import NotFound
from backend.security.statements import signer
from backend.services import market

blp = Blueprint("certificates", __name__, description="Public: retirement certificates and signing keys")

PAGE_HEADERS = {
    # The page is static HTML with inline styles: nothing else may load or run on it.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class CertificateSchema(Schema):
    certificate_no = fields.String()
    retirement_id = fields.Integer()
    serials = fields.String(metadata={"description": "REGION-METHOD-YEAR-START-END"})
    tonnes = fields.Integer()
    beneficiary = fields.String()
    purpose = fields.String()
    retired_at = fields.String()
    batch_id = fields.Integer()
    methodology = fields.String()
    methodology_title = fields.String(allow_none=True)
    methodology_title_zh = fields.String(allow_none=True)
    methodology_versions = fields.List(fields.Integer())
    region = fields.String()
    region_name = fields.String(allow_none=True)
    region_name_en = fields.String(allow_none=True)
    vintage = fields.Integer()
    key_id = fields.String()
    signed = fields.String(metadata={"description": "the content above as a compact JWS (EdDSA), verifiable "
                                                    "with the key from /api/v1/public/keys"})
    url = fields.String(metadata={"description": "the certificate's public page"})


class JwkSchema(Schema):
    kty = fields.String()
    crv = fields.String()
    x = fields.String()
    kid = fields.String()
    use = fields.String()
    alg = fields.String()


class KeySetSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema))


def _page_url(token: str) -> str:
    return f"{request.host_url}certificates/{token}"


@blp.route("/certificates/<string:token>")
class CertificatePage(MethodView):
    @blp.doc(responses={"200": {"description": "The certificate as a page (Chinese and English labels)",
                                "content": {"text/html": {"schema": {"type": "string"}}}},
                        "404": {"description": "No such certificate (a forged or altered link)"}})
    def get(self, token: str):
        """A retirement's public certificate page"""
        try:
            content = market.certificate(token)
        except NotFound:
            return Response(render_template("certificates/not_found.html"), status=404, mimetype="text/html",
                            headers=PAGE_HEADERS)
        page = render_template("certificates/retirement.html", c=content,
                               keys_url=f"{request.host_url}api/v1/public/keys",
                               json_url=f"{request.host_url}api/v1/public/certificates/{token}")
        return Response(page, status=200, mimetype="text/html", headers=PAGE_HEADERS)


@blp.route("/api/v1/public/certificates/<string:token>")
class CertificateJson(MethodView):
    @blp.response(200, CertificateSchema)
    def get(self, token: str):
        """A retirement's public certificate as JSON, with its signed content"""
        return {**market.certificate(token), "url": _page_url(token)}


@blp.route("/api/v1/public/keys")
class PublicKeys(MethodView):
    @blp.response(200, KeySetSchema)
    def get(self):
        """The platform's public signing keys (a JWK set, Ed25519): verify statements and certificates"""
        return {"keys": [signer().jwk()]}
