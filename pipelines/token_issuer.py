"""The service that issues, trades and revokes access tokens (the platform's `auth`)."""

TOKEN_ISSUER = "auth"
