"""Tokens auth issues to services: their own (for a credential an operator minted), and one
to act for a user (for a service whose token holds `auth:act-for-users`)."""

from auth.access import caller_now
from auth.resources import resources
from auth.roles import existing_user
from pipelines import Context, Forbidden
from pipelines.identity import SERVICE_PREFIX
from pipelines.service_identity import ActForUser, IssueServiceToken, ServiceToken


async def issue_service_token(command: IssueServiceToken, ctx: Context) -> ServiceToken:
    """A short-lived token with exactly the service and permissions the credential names."""
    codec = resources().tokens
    service = codec.verify_credential(command.credential)
    return ServiceToken(access_token=codec.issue(service), expires_in=codec.expiration)


async def act_for_user(command: ActForUser, ctx: Context) -> ServiceToken:
    """The user's token as one issued now would be, naming the service as its actor."""
    if ctx.caller is None or not ctx.caller.user_id.startswith(SERVICE_PREFIX):
        raise Forbidden("only a service acts for a user")
    user = await existing_user(ctx, command.user_id)
    codec = resources().tokens
    token = codec.issue(await caller_now(ctx, user), act={"sub": ctx.caller.user_id})
    return ServiceToken(access_token=token, expires_in=codec.expiration)
