"""Prefect automations that keep the project's deployments alive and heard (`tunepipe deploy`).

Prefect's own mechanisms, made once per project and updated in place on each deploy (found by
name, so a re-deploy never duplicates them):

- lost hosts: runs of the project's deployments send heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY
  in the deployments' job variables); a run whose heartbeats stop is marked Crashed (Prefect's
  "detect zombie flows" recipe: a proactive EventTrigger), which frees its concurrency slot;
- a crashed retrain is run again once (RunDeployment; the new run resumes from the checkpoint);
- with a URL: a Webhook block and an automation that POSTs a JSON payload on every Failed or
  Crashed run of the project's deployments (a Slack, Teams or email block is the same shape).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from tunepipe.errors import PipelineError

HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
CHECKPOINTS_ENV = "TUNEPIPE_CHECKPOINTS"
MIN_HEARTBEAT = 30  # Prefect refuses a shorter heartbeat period (its setting's lower bound)
DEFAULT_HEARTBEAT = 60
RETRAIN_ENTRYPOINT = "flows/retrain.py:retrain"
RERUN_PARAMETER = "after_crash"  # the retrain parameter naming the crashed run a re-run replaces
FINAL_BAD = ("Failed", "Crashed")

# What the webhook receives (a Jinja template Prefect renders with the run that failed).
PAYLOAD = (
    "{"
    '"project": {{ project | tojson }}, '
    '"flow_run": {{ flow_run.name | tojson }}, '
    '"flow_run_id": "{{ flow_run.id }}", '
    '"deployment": {{ (deployment.name if deployment else none) | tojson }}, '
    '"state": {{ flow_run.state.name | tojson }}, '
    '"message": {{ (flow_run.state.message or "") | tojson }}'
    "}"
)


@dataclass(frozen=True)
class Names:
    """The project's automation and block names, derived from prefect.yaml's `name:`."""

    project: str

    @property
    def zombies(self) -> str:
        return f"{self.project}: mark runs Crashed when their heartbeats stop"

    @property
    def rerun(self) -> str:
        return f"{self.project}: run a crashed retrain again once"

    @property
    def notify(self) -> str:
        return f"{self.project}: notify on Failed or Crashed runs"

    @property
    def block(self) -> str:
        """Block names are slugs: lowercase letters, digits and dashes."""
        slug = "".join(c if c.isalnum() else "-" for c in self.project.lower()).strip("-") or "project"
        return f"{slug}-failures"


def crash_after(heartbeat: int, given: int | None) -> int:
    """Seconds without a heartbeat before a run counts as lost: three periods unless given, and
    never less than two (one late heartbeat must not crash a healthy run)."""
    if heartbeat < MIN_HEARTBEAT:
        raise PipelineError(
            f"--heartbeat {heartbeat}: Prefect sends heartbeats at most every {MIN_HEARTBEAT} s"
        )
    if given is None:
        return 3 * heartbeat
    if given < 2 * heartbeat:
        raise PipelineError(
            f"--crash-after {given}: must be at least two heartbeat periods ({2 * heartbeat} s), "
            "or one late heartbeat would crash a healthy run"
        )
    return given


def set_job_env(client: Any, deployment: Any, env: dict[str, str]) -> None:
    """Merge `env` into a deployment's job variables (what its runs' processes get)."""
    from prefect.client.schemas.actions import DeploymentUpdate

    variables = dict(deployment.job_variables or {})
    variables["env"] = {**(variables.get("env") or {}), **env}
    client.update_deployment(deployment.id, DeploymentUpdate(job_variables=variables))


def ensure(
    client: Any,
    project: str,
    deployments: Sequence[Any],
    heartbeat: int,
    crash_seconds: int,
    notify: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, UUID]:
    """Create or update the project's automations for `deployments` (read from the server).
    Returns automation name -> id."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import CallWebhook, ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    if not deployments:
        raise PipelineError(
            "no deployment of prefect.yaml found on the Prefect server after `prefect deploy`"
        )
    names = Names(project)
    ids = [f"prefect.deployment.{d.id}" for d in deployments]
    mine = {"prefect.resource.id": ids}
    wanted: list[AutomationCore] = [
        AutomationCore(
            name=names.zombies,
            description=(
                f"A run of {project}'s deployments with no heartbeat for {crash_seconds} s "
                f"(sent every {heartbeat} s) lost its host: marked Crashed, which frees its slot."
            ),
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=mine,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=crash_seconds),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=(
                        f"no heartbeat for {crash_seconds} s: the worker or its host was lost "
                        "(marked Crashed by the project's automation)"
                    ),
                )
            ],
        )
    ]
    retrain = [d for d in deployments if d.entrypoint == RETRAIN_ENTRYPOINT]
    for d in retrain:
        wanted.append(
            AutomationCore(
                name=names.rerun if len(retrain) == 1 else f"{names.rerun} ({d.name})",
                description=(
                    "A Crashed retrain run is run again once; the new run resumes from the crashed "
                    f"one's last checkpoint. A re-run that crashes too is not run again ({RERUN_PARAMETER})."
                ),
                trigger=EventTrigger(
                    expect={"prefect.flow-run.Crashed"},
                    match={"prefect.resource.id": "prefect.flow-run.*"},
                    match_related={"prefect.resource.id": f"prefect.deployment.{d.id}"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    RunDeployment(
                        source="selected",
                        deployment_id=d.id,
                        parameters={
                            RERUN_PARAMETER: {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}
                        },
                    )
                ],
            )
        )
    if notify:
        block_id = webhook_block(names.block, notify)
        wanted.append(
            AutomationCore(
                name=names.notify,
                description=f"POST to webhook block {names.block!r} when a run of {project} fails or crashes",
                trigger=EventTrigger(
                    expect={f"prefect.flow-run.{s}" for s in FINAL_BAD},
                    match={"prefect.resource.id": "prefect.flow-run.*"},
                    match_related=mine,
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    CallWebhook(
                        block_document_id=block_id,
                        payload=PAYLOAD.replace("{{ project | tojson }}", json.dumps(project)),
                    )
                ],
            )
        )
    made: dict[str, UUID] = {}
    for automation in wanted:
        made[automation.name] = upsert(client, automation)
        say(f"automation: {automation.name}")
    return made


def upsert(client: Any, automation: Any) -> UUID:
    """Update the automation of that name (removing duplicates a race may have made), or create it."""
    found = client.read_automations_by_name(automation.name)
    if not found:
        return client.create_automation(automation)
    first, *extra = found
    client.update_automation(first.id, automation)
    for other in extra:
        client.delete_automation(other.id)
    return first.id


def check_url(url: str) -> str:
    """--notify takes an http(s) URL with a host, checked before anything is deployed."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise PipelineError(f"--notify {url!r}: expected an http:// or https:// URL with a host")
    return url


def webhook_block(name: str, url: str) -> UUID:
    """A Webhook block POSTing JSON to `url` (saved over any block of that name)."""
    from prefect.blocks.webhook import Webhook

    check_url(url)
    block = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"})
    return block.save(name, overwrite=True)
