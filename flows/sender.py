"""Sends a run's messages as the hosting service, in the correlation and the trace of the
run's event."""

import json

from flows.answers import NO_REPLY, NoAnswer, is_refusal
from flows.journal import StepRecord
from flows.runs import RunRecord
from pipelines import headers as h
from pipelines import telemetry
from pipelines.rpc import Response
from pipelines.runtime import Runtime


class Sender:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

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
        headers = {
            h.MESSAGE_TYPE: step.outgoing.message_type,
            h.USER_TOKEN: self.runtime.service_token(),
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
