"""What auth serves on its HTTP port beside /health: the JSON Web Key Set, under RS256."""

from fastapi.responses import JSONResponse

from auth.resources import resources


async def jwks() -> JSONResponse:
    """The public key that verifies access tokens; 404 when tokens are HS256 (secret key)."""
    codec = resources().tokens
    if codec.algorithm != "RS256":
        message = "tokens are signed with a shared secret (HS256): there is no public key"
        return JSONResponse({"error": {"code": "NOT_FOUND", "message": message}}, 404)
    return JSONResponse(codec.jwks(), headers={"Cache-Control": "public, max-age=300"})
