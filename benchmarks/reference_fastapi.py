"""A reference for the product read: `GET /v1/products/{sku}` written the way FastAPI's
documentation teaches it, to measure the fleet's read path against (benchmarks.http_paths).

Dev-only: nothing in the product imports it. It does what the inventory api does for this one
route, nothing less:

- an app whose lifespan opens an asyncpg pool on DATABASE_URL (and closes it);
- a security dependency (``Security`` with ``SecurityScopes``, FastAPI's "OAuth2 scopes"
  tutorial, on an ``HTTPBearer`` scheme) that verifies the bearer JWT with PyJWT on every
  request: HS256 with JWT_SECRET, ``exp`` and ``sub`` required, the fleet's 30 s leeway,
  ``aud`` not judged (the fleet configures no audience), ``sub`` and ``scope`` strings, and the
  route's scope in the space-separated ``scope`` claim; 401 (with the same WWW-Authenticate
  challenge) or 403 problem documents otherwise, as fleet_shared.http.auth answers;
- the same stored representation the fleet reads, by primary key (the products table's
  ``representation`` column, which the triggers keep), returned as it is with the same strong
  ETag (its md5), and a 404 problem document when there is no such product.

Unlike the fleet's verifier it keeps no cache of verified tokens: the documentation decodes
the token per request. Run it as the documentation deploys it, uvicorn with worker processes::

    DATABASE_URL=postgresql://... JWT_SECRET=... \\
        uvicorn benchmarks.reference_fastapi:app --workers 2 --no-access-log
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

PROBLEM_BASE = "https://fleet.example/problems/"
LEEWAY = 30.0
ALGORITHM = "HS256"
_GET_PRODUCT = "SELECT representation, md5(representation) AS digest FROM products WHERE sku = $1"


def _database_url() -> str:
    # The fleet's URLs name SQLAlchemy's driver (postgresql+psycopg://); asyncpg takes the
    # plain scheme.
    url = os.environ["DATABASE_URL"]
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(_database_url(), min_size=2, max_size=10)
    yield
    await app.state.pool.close()


app = FastAPI(title="Inventory read (FastAPI reference)", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


class ProblemError(HTTPException):
    """An RFC 9457 problem, answered by the handler below."""

    def __init__(self, status: int, title: str, detail: str, type_: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, headers)
        self.title = title
        self.type_ = type_


@app.exception_handler(ProblemError)
async def problem_handler(request: Request, exc: ProblemError) -> JSONResponse:
    body = {"type": PROBLEM_BASE + exc.type_, "title": exc.title, "status": exc.status_code,
            "detail": exc.detail}
    return JSONResponse(body, exc.status_code, headers=exc.headers,
                        media_type="application/problem+json")


def _unauthorized(detail: str, error: str = "invalid_token") -> ProblemError:
    challenge = ('Bearer realm="fleet"' if not error else
                 f'Bearer realm="fleet", error="{error}", error_description="{detail}"')
    return ProblemError(401, "Unauthorized", detail, "unauthorized",
                        {"WWW-Authenticate": challenge})


async def get_principal(
    security_scopes: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> dict[str, Any]:
    """The token's claims, verified with PyJWT, when they grant every scope the route needs."""
    if credentials is None:
        raise _unauthorized("A bearer token is required.", error="")
    try:
        claims: dict[str, Any] = jwt.decode(
            credentials.credentials, os.environ["JWT_SECRET"], algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"], "verify_aud": False}, leeway=LEEWAY)
    except jwt.ExpiredSignatureError:
        raise _unauthorized("The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise _unauthorized("The token is not valid yet.") from None
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"The token is invalid: {exc}") from None
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise _unauthorized(f"The token's {name} claim must be a number.")
    subject, scope = claims["sub"], claims.get("scope", "")
    if not isinstance(subject, str) or not subject or not isinstance(scope, str):
        raise _unauthorized("The token's sub and scope claims must be strings.")
    granted = scope.split()
    for needed in security_scopes.scopes:
        if needed not in granted:
            raise ProblemError(
                403, "Forbidden", f"The token lacks the scope {needed}.", "insufficient-scope",
                {"WWW-Authenticate": f'Bearer realm="fleet", error="insufficient_scope", '
                                     f'scope="{needed}"'})
    return claims


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


@app.get("/v1/products/{sku}")
async def read_product(
    sku: str,
    pool: Annotated[asyncpg.Pool, Depends(get_pool)],
    principal: Annotated[dict[str, Any], Security(get_principal, scopes=["inventory:read"])],
) -> Response:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(_GET_PRODUCT, sku)
    if row is None:
        raise ProblemError(404, "Not Found", f"No product with sku {sku}.", "not-found")
    return Response(row["representation"], media_type="application/json",
                    headers={"ETag": f'"{row["digest"]}"'})


@app.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}
