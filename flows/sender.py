"""Sends a run's messages in the correlation and the trace of the run's event, each with the
identity its step was journaled with: the hosting service's own, or the user's the run acts
for."""

import json

from flows.answers import NO_REPLY, NoAnswer, is_refusal
from flows.journal import StepRecord
from flows.runs import RunRecord
from pipelines import headers as h
from pipelines import telemetry
from pipelines.contracts import Contract
from pipelines.errors import PlatformError, Unauthorized
from pipelines.identity import SERVICE_PREFIX
from pipelines.messages import Reply
from pipelines.rpc import Response
from pipelines.runtime import Runtime

# why the service has no token of its own yet: auth is away, or its credential is to be fixed
NO_OWN_TOKEN: tuple[type[BaseException], ...] = (*NO_REPLY, Unauthorized)


class Sender:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.service = SERVICE_PREFIX + runtime.service  # the identity of its own steps

    def declared(self, *messages: Contract | None) -> None:
        """Raise UndeclaredCall unless the service declares every message in its calls."""
        for message in messages:
            if message is not None:
                self.runtime.calls.check(message)

    async def ask(self, run: RunRecord, step: StepRecord, timeout: float) -> Response:
        """The answer to the step's message, sent under its idempotency key.

        Receivers record results by message id, not errors: when two copies of a message race
        (a resend, two drivers), the loser may answer with an error caused by the winner's
        effect. So an error is believed only when asking again gives it again; by then the
        winner's result is recorded, and that is the answer.
        """
        response = await self._send(run, step, timeout)
        return await self._send(run, step, timeout) if is_refusal(response) else response

    async def _send(self, run: RunRecord, step: StepRecord, timeout: float) -> Response:
        """One attempt, awaited for `timeout`; NoAnswer when no reply came."""
        assert self.runtime.rpc is not None, "the service instance is not started"
        token = await self._token(run, step)
        if isinstance(token, Response):
            return token
        headers = {
            h.MESSAGE_TYPE: step.outgoing.message_type,
            h.USER_TOKEN: token,
            h.CAUSATION_ID: run.causation_id or "",
        }
        try:
            with telemetry.continuing(run.traceparent):
                return await self.runtime.rpc.request(
                    step.outgoing.queue,
                    json.dumps(step.outgoing.body).encode(),
                    timeout=timeout,
                    headers=headers,
                    message_id=step.message_id,
                    correlation_id=run.correlation_id,
                )
        except NO_REPLY as exc:
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from exc

    async def _token(self, run: RunRecord, step: StepRecord) -> str | Response:
        """The token the step goes with; or, when auth will not act for its user, that
        refusal as the step's answer. NoAnswer while the service has no token of its own
        (auth away, or a credential to fix): the run waits rather than fails."""
        try:
            own = await self.runtime.service_token()
        except NO_OWN_TOKEN as exc:
            raise NoAnswer(f"{self.service} has no token: {exc}") from exc
        if not step.acting_as or step.acting_as.startswith(SERVICE_PREFIX):
            return own
        try:
            return await self.runtime.identity.acting_for(step.acting_as, self.runtime.rpc)
        except NO_REPLY as exc:
            raise NoAnswer(f"no token for {step.acting_as}: {exc}") from exc
        except PlatformError as exc:
            reply = Reply.error(exc, run.correlation_id or "")
            return Response(reply.body, False, None, {})
