"""Services hold least privilege: a service's identity on the bus holds the permissions of the
contracts it declares in `calls=` and no others; no token carries a wildcard; a flow acting for
a user sends its user-facing steps as that user, and its journal says who each step was."""

import uuid
from typing import Any

import jwt
import pytest

import flows
from auth import service as auth_service
from auth.contracts import CreateUser
from examples.fulfilment import service as fulfilment
from examples.inventory.contracts import GetStock
from examples.orders.contracts import PlaceOrder
from flows import Flow, Run
from flows.journal import StepRecord, steps_of
from flows.report import run_history
from flows.runs import RunTable, run_id
from pipelines import Caller, Command, Context, Event, Service
from pipelines.contracts import InvalidContract
from pipelines.service_identity import ActForUser
from tests.conftest import eventually, started
from tests.tcp_proxy import free_port
from tests.test_auth import rsa_key_pair

ITEMS = [{"sku": "privilege-tea", "quantity": 1, "unitPrice": "2.00"}]


def claims_of(token: str, settings) -> dict[str, Any]:
    return jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])


def test_the_wildcard_grants_nothing() -> None:
    """There is no `*`: a token naming it holds a permission called `*`, and nothing else."""
    assert Caller("old-service", permissions=frozenset({"*"})).missing(["orders:place"]) == [
        "orders:place"
    ]
    assert not Caller("old-service", permissions=frozenset({"*"})).has("orders:admin")


def test_calls_name_commands_and_queries_not_events() -> None:
    class Noticed(Event, service="elsewhere"):
        pass

    with pytest.raises(InvalidContract, match="calls= lists the commands and queries"):
        Service("confused", calls=[Noticed])  # type: ignore[list-item]


async def test_a_service_token_holds_exactly_the_permissions_of_its_calls(settings) -> None:
    instance = await started(fulfilment, settings)
    try:
        claims = claims_of(await instance.runtime.service_token(), settings)
    finally:
        await instance.stop()
    assert claims["sub"] == "service:fulfilment"
    assert sorted(claims["permissions"]) == ["inventory:reserve", "orders:confirm", "orders:reject"]


class Relay(Command):
    """A public command whose handler sends on its own, as its service."""

    to: str


relaying = Service("relaying", calls=[GetStock])


@relaying.command(Relay)
async def relay(command: Relay, ctx: Context) -> str:
    if command.to == "orders":
        await ctx.send("orders", PlaceOrder.model_validate({"items": ITEMS}))
    code: str = (await ctx.send("inventory", GetStock(sku=command.to))).json()["error"]["code"]
    return code


async def test_sending_an_undeclared_contract_is_refused_naming_calls(settings, rpc) -> None:
    instance = await started(relaying, settings)
    try:
        reply = await rpc.send("relaying", Relay(to="orders"))
    finally:
        await instance.stop()
    error = reply.error()
    assert error.code == "INSUFFICIENT_PERMISSIONS"
    assert 'add PlaceOrder to Service("relaying", calls=[...])' in error.message
    assert error.details == {"undeclared": "PlaceOrder", "calls": ["GetStock"]}


async def test_a_service_identity_is_refused_what_it_did_not_declare(
    settings, rpc, orders, inventory
) -> None:
    """Even sent by hand, bypassing the SDK's check, a service's token buys only its calls."""
    instance = await started(relaying, settings)
    try:
        own = await instance.runtime.service_token()
        declared = await rpc.send("relaying", Relay(to=f"no-such-{uuid.uuid4().hex[:6]}"))
    finally:
        await instance.stop()
    assert declared.result() == "NOT_FOUND"  # inventory:read is held: GetStock went through
    placed = await rpc.send("orders", PlaceOrder.model_validate({"items": ITEMS}), token=own)
    assert placed.error().code == "INSUFFICIENT_PERMISSIONS"
    assert placed.error().details["missing"] == ["orders:place"]


# --- a flow acting for a user ------------------------------------------------------------


class VaultOpened(Event, service="vaults"):
    vault_id: str
    owner_id: str


class Seal(Command, permissions=["vaults:seal"]):
    vault_id: str


class Peek(Command, permissions=["vaults:peek"]):
    vault_id: str


vaults = Service("vaults")


@vaults.command(Seal)
async def seal(command: Seal, ctx: Context) -> str:
    assert ctx.caller is not None
    return ctx.caller.user_id


@vaults.command(Peek)
async def peek(command: Peek, ctx: Context) -> str:
    assert ctx.caller is not None
    return ctx.caller.user_id


keeping = Flow(
    "vault-keeping",
    starts_with=VaultOpened,
    key=lambda v: v.vault_id,
    acts_for=lambda v: v.owner_id,  # steps go as the vault's owner, unless as_service=True
)


@keeping.steps
async def seal_then_peek(opened: VaultOpened, run: Run) -> None:
    await run.send("vaults", Seal(vault_id=opened.vault_id), step="seal", as_service=True)
    await run.send("vaults", Peek(vault_id=opened.vault_id), step="peek")  # as the owner


keeper = Service("keeper", migrations=flows.MIGRATIONS, calls=[Seal, Peek, ActForUser])
keeper_host = flows.host(keeper, keeping)


async def _user(rpc, token, *permissions: str) -> str:
    admin = token("vault-admin", "auth:create-user", "auth:manage-users")
    created = CreateUser(
        email=f"{uuid.uuid4().hex[:12]}@example.com",
        password=f"pw-{uuid.uuid4().hex}",
        name="Vault Owner",
        granted_permissions=list(permissions),
    )
    return str((await rpc.send("auth", created, token=admin)).result()["userId"])


async def start_run(instance, host: flows.Host, flow: str, owner: str = "nobody") -> str:
    """Start a run of `flow` for a new vault of `owner`, as its event would; the run's id."""
    vault = uuid.uuid4().hex
    opened = {"vaultId": vault, "ownerId": owner}
    await RunTable(instance.runtime.pool).start(flow, vault, opened, vault, vault)
    for engine in host.engines:
        engine.wake()
    return run_id(flow, vault)


async def _keep(instance, owner: str) -> tuple[list[StepRecord], list[str]]:
    """The steps of a finished run of vault-keeping for a new vault of `owner`, and how
    `banyan flows show` prints it."""
    pool = instance.runtime.pool
    run = await start_run(instance, keeper_host, "vault-keeping", owner)
    finished = "SELECT finished_at IS NOT NULL FROM flow_runs WHERE id = $1"
    await eventually(lambda: pool.fetchval(finished, run), timeout=30, what="the run to end")
    async with pool.acquire() as conn:
        return await steps_of(conn, run), await run_history(conn, run)


async def test_a_flow_step_acts_as_the_user_unless_marked_as_the_service(
    settings, rpc, token
) -> None:
    auth_settings = settings.model_copy(update={"auth_port": free_port()})
    services = [
        await started(auth_service, auth_settings),
        await started(vaults, settings),
        await started(keeper, settings),
    ]
    try:
        peeker = await _user(rpc, token, "vaults:peek")
        outsider = await _user(rpc, token)  # holds no vaults permission
        allowed, shown = await _keep(services[2], peeker)
        refused, _ = await _keep(services[2], outsider)
        sneaky = token("sneaky-user", "auth:act-for-users")  # a user, not a service
        posing = await rpc.send("auth", ActForUser(user_id=peeker), token=sneaky)
    finally:
        for instance in reversed(services):
            await instance.stop()
    by_step = {s.step: s for s in allowed}
    assert (by_step["seal"].status, by_step["seal"].result) == ("done", "service:keeper")
    assert (by_step["peek"].status, by_step["peek"].result) == ("done", peeker)
    assert by_step["seal"].acting_as == "service:keeper" and by_step["peek"].acting_as == peeker
    assert [line.split() for line in shown if line.split()[:1] == ["as"]] == [
        ["as", "service:keeper"],
        ["as", peeker],
    ]
    assert posing.error().message == "only a service acts for a user"
    by_step = {s.step: s for s in refused}
    assert by_step["seal"].status == "done"  # the service's own step holds vaults:seal
    assert by_step["peek"].status == "refused" and by_step["peek"].acting_as == outsider
    assert "vaults:peek" in (by_step["peek"].reason or "")


def one_step_flow(name: str, contract: type[Seal] | type[Peek]) -> tuple[Service, flows.Host]:
    """Service `name`, declaring it calls Seal, hosting the flow `{name}-flow` of one step
    that sends `contract` for the vault."""
    hosting = Service(name, migrations=flows.MIGRATIONS, calls=[Seal])
    flow = Flow(f"{name}-flow", starts_with=VaultOpened, key=lambda v: v.vault_id)

    @flow.steps
    async def one_step(opened: VaultOpened, run: Run) -> None:
        await run.send("vaults", contract(vault_id=opened.vault_id))

    return hosting, flows.host(hosting, flow)


async def test_a_flow_sending_what_its_service_did_not_declare_fails_that_step(settings) -> None:
    undeclared, hosted = one_step_flow("undeclared", Peek)  # it declares Seal only
    instance = await started(undeclared, settings)
    try:
        pool = instance.runtime.pool
        assert pool is not None
        run = await start_run(instance, hosted, "undeclared-flow")
        status = "SELECT status, reason FROM flow_runs WHERE id = $1 AND finished_at IS NOT NULL"
        await eventually(lambda: pool.fetchrow(status, run), timeout=30, what="the run")
        row = await pool.fetchrow(status, run)
    finally:
        await instance.stop()
    assert row["status"] == "compensated"
    assert 'add Peek to Service("undeclared", calls=[...])' in row["reason"]


async def test_a_flow_whose_service_has_no_token_waits_rather_than_fails(settings) -> None:
    """RS256 without SERVICE_CREDENTIAL: the step stays pending, saying why, and is sent once
    the credential is fixed (a misconfiguration compensates no order)."""
    tokenless, hosted = one_step_flow("tokenless", Seal)
    _, public = rsa_key_pair()
    public_only = {"jwt_algorithm": "RS256", "jwt_public_key": public, "jwt_secret": ""}
    instance = await started(tokenless, settings.model_copy(update=public_only))
    try:
        pool = instance.runtime.pool
        assert pool is not None
        run = await start_run(instance, hosted, "tokenless-flow")

        async def waiting() -> bool:
            steps = await steps_of(pool, run)
            return bool(steps) and "set SERVICE_CREDENTIAL" in (steps[0].last_error or "")

        await eventually(waiting, timeout=30, what="the step to wait for a token")
        [step] = await steps_of(pool, run)
        status = "SELECT status FROM flow_runs WHERE id = $1"
        assert step.status == "pending"
        assert await pool.fetchval(status, run) == "running"
    finally:
        await instance.stop()
