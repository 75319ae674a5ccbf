"""`judge-assets ui` (what `make ui` runs): a real `dagster dev` on 127.0.0.1, driven through the GraphQL
API exactly as the web UI's buttons drive it.

One server for the module (starting it takes ~20 s), on a small source: MT-Bench human votes on
questions 81-100 in two files, i.e. two annotation batches. The tests, in order:

- the server listens on the loopback address only, telemetry off, no deprecation warning printed;
- **Materialize all** (what the dialog sends after *All*): one backfill, one run loading both
  batches, then the rest of the graph; the tables hold every vote and item;
- a run of ``judge-assets run`` is listed under the code location's job and *Re-execute* runs it again;
- a partition added by hand (*Add a partition*) fails its run with one line and no KeyError, and
  *Delete partitions* removes it;
- a bad file in the inbox, with the inbox sensor on: the tick's skip reason names it, it is in
  ``rejected_files`` and the ``no_unresolved_rejected_files`` check on raw_judgments turns red.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR

pytestmark = pytest.mark.slow

#: MT-Bench questions of each annotation batch of the small source
BATCHES = {"round_a": (81, 90), "round_b": (91, 100)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def small_source(folder: Path) -> Path:
    """A folder source with one parquet file per batch of :data:`BATCHES` (~840 human votes in all)."""
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    folder.mkdir(parents=True)
    for name, questions in BATCHES.items():
        human[human.question_id.between(*questions)].to_parquet(folder / f"{name}.parquet", index=False)
    return folder


class UI:
    """A `judge-assets ui` subprocess in its own session (stopped by its process group id) and its GraphQL endpoint."""

    def __init__(self, state: Path, source: Path):
        self.state, self.port = state, free_port()
        self.db, self.inbox, self.home = state / "judge.duckdb", state / "inbox", state / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DAGSTER_", "OPENAI_"))}
        env.update(JUDGE_DB=str(self.db), DAGSTER_HOME=str(self.home), JUDGE_INBOX_DIR=str(self.inbox),
                   JUDGE_SOURCE=str(source), DAGSTER_DISABLE_TELEMETRY="1", GX_ANALYTICS_ENABLED="false")
        self.env = env
        self.log_path = state / "ui.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "judge_assets.cli", "ui", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def gql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        body = json.load(urllib.request.urlopen(request, timeout=60))
        assert "errors" not in body, body
        return body["data"]

    def wait_until_serving(self, timeout_s: float = 240) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                nodes = self.gql("{ assetNodes { assetKey { path } groupName isExecutable isObservable } }")["assetNodes"]
                if nodes:
                    return nodes
            except (OSError, AssertionError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        raise AssertionError(f"the UI did not come up:\n{self.output()[-3000:]}")

    def repository(self) -> dict:
        [repo] = self.gql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")[
            "repositoriesOrError"]["nodes"]
        return {"repositoryName": repo["name"], "repositoryLocationName": repo["location"]["name"]}

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 2.0):
    """``condition()`` once it is truthy; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def partition_keys(ui: UI) -> list[str]:
    node = ui.gql('{ assetNodeOrError(assetKey: {path: ["raw_judgments"]}) { ... on AssetNode { partitionKeys } } }')
    return node["assetNodeOrError"]["partitionKeys"]


#: What the partition dialog sends on *Launch backfill* (LaunchAssetChoosePartitionsDialog, asset job target).
LAUNCH_BACKFILL = """mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""

BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status partitionNames runs(limit: 20) { runId status assetSelection { path } tags { key value } } } } }"""

RUN_FAILURE = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status eventConnection { events {
  __typename ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
  ... on RunFailureEvent { message error { message } } } } } } }"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    state = tmp_path_factory.mktemp("ui")
    server = UI(state, small_source(state / "source"))
    try:
        server.nodes = server.wait_until_serving()
        yield server
    finally:
        server.stop()


def launch_materialize_all(ui: UI) -> str:
    """Click *Materialize all* on the asset graph, then *All* and *Launch backfill*: the mutation the dialog sends."""
    keys = [{"path": n["assetKey"]["path"]} for n in ui.nodes if n["isExecutable"] and not n["isObservable"]]
    params = {"tags": [{"key": "dagster/from_ui", "value": "true"}], "assetSelection": keys,
              "partitionNames": partition_keys(ui), "fromFailure": False}
    launched = ui.gql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def finished_backfill(ui: UI, backfill_id: str, timeout_s: float = 420) -> dict:
    def done():
        backfill = ui.gql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    return wait_for(done, timeout_s, f"backfill {backfill_id}")


@pytest.mark.timeout(300)
def test_ui_serves_the_graph_on_loopback_only_without_warnings(ui):
    keys = {"/".join(n["assetKey"]["path"]) for n in ui.nodes}
    assert {"raw_judgments", "judgments", "items", "annotator_matrix", "majority_vote_labels", "consensus_labels", "judge_human_agreement"} <= keys
    assert _listening_addresses(ui.port) == {"127.0.0.1"}
    assert "enabled: false" in (ui.home / "dagster.yaml").read_text()
    assert "Warning" not in ui.output() and "superseded" not in ui.output()  # `dagster dev` would say "Use 'dg dev' instead"


@pytest.mark.timeout(600)
def test_materialize_all_builds_the_whole_graph_over_every_batch_in_one_backfill(ui):
    assert sorted(k.rsplit("-", 1)[0] for k in partition_keys(ui)) == sorted(BATCHES)  # `judge-assets ui` registered them

    backfill = finished_backfill(ui, launch_materialize_all(ui))

    failed = [ui.gql(RUN_FAILURE, {"id": r["runId"]})["runOrError"] for r in backfill["runs"] if r["status"] != "SUCCESS"]
    assert backfill["status"] == "COMPLETED_SUCCESS", failed or backfill
    assert sorted(backfill["partitionNames"]) == sorted(partition_keys(ui))
    assert all(run["status"] == "SUCCESS" for run in backfill["runs"])
    loads = [r for r in backfill["runs"] if {"path": ["raw_judgments"]} in (r["assetSelection"] or [])]
    assert len(loads) == 1  # BackfillPolicy.single_run: one run loads every batch
    tags = {t["key"]: t["value"] for t in loads[0]["tags"]}
    assert {tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]} == set(partition_keys(ui))

    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    votes = human[human.question_id.between(81, 100)]
    items = {(q, t, *sorted((a, b))) for q, t, a, b in votes[["question_id", "turn", "model_a", "model_b"]].itertuples(index=False)}
    con = duckdb.connect(str(ui.db), read_only=True)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("raw_judgments", "judgments", "consensus_labels")}
    finally:
        con.close()
    assert counts == {"raw_judgments": len(votes), "judgments": len(votes), "consensus_labels": len(items)}


CLI_RUNS = """{ runsOrError(filter: {pipelineName: "rebuild"}, limit: 10) { ... on Runs { results {
  runId status pipelineName assetSelection { path } repositoryOrigin { repositoryLocationName repositoryName } tags { key value } } } } }"""

#: What the run page's *Re-execute all* button sends.
REEXECUTE = """mutation($p: ReexecutionParams!) { launchPipelineReexecution(reexecutionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


@pytest.mark.timeout(420)
def test_a_cli_run_is_listed_under_its_job_and_re_executes_from_the_ui(ui):
    done = subprocess.run([sys.executable, "-m", "judge_assets.cli", "run", "--select", "key:majority_vote_labels"],
                          env=ui.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cli_runs = [r for r in ui.gql(CLI_RUNS)["runsOrError"]["results"] if any(t["key"] == "judge_assets/process" for t in r["tags"])]
    assert cli_runs, "the CLI run is not listed under the job rebuild"
    cli_run = cli_runs[0]
    assert cli_run["status"] == "SUCCESS" and cli_run["assetSelection"] == [{"path": ["majority_vote_labels"]}]
    assert cli_run["repositoryOrigin"] == {"repositoryLocationName": "judge_assets", "repositoryName": "__repository__"}

    launched = ui.gql(REEXECUTE, {"p": {"parentRunId": cli_run["runId"], "strategy": "ALL_STEPS"}})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    run = wait_for(lambda: (r := ui.gql(RUN_FAILURE, {"id": run_id})["runOrError"])["status"] in ("SUCCESS", "FAILURE") and r,
                   300, f"re-executed run {run_id}")
    assert run["status"] == "SUCCESS", run
    [again] = [r for r in ui.gql(CLI_RUNS)["runsOrError"]["results"] if r["runId"] == run_id]
    assert again["pipelineName"] == "rebuild" and again["assetSelection"] == [{"path": ["majority_vote_labels"]}]


@pytest.mark.timeout(300)
def test_a_partition_added_by_hand_fails_with_one_line_and_can_be_deleted(ui):
    repository = ui.repository()
    added = ui.gql(
        "mutation($r: RepositorySelector!) { addDynamicPartition(repositorySelector: $r, partitionsDefName: \"annotation_batches\", "
        "partitionKey: \"typed-by-hand\") { __typename } }", {"r": repository},
    )
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess"
    launched = ui.gql(  # raw_judgments → Materialize → partition typed-by-hand → Launch 1 run
        "mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) { __typename ... on LaunchRunSuccess { run { runId } } } }",
        {"p": {"mode": "default", "runConfigData": "{}",
               "selector": {**repository, "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["raw_judgments"]}]},
               "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "typed-by-hand"},
                                              {"key": "dagster/from_ui", "value": "true"}]}}},
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    run = wait_for(lambda: (r := ui.gql(RUN_FAILURE, {"id": run_id})["runOrError"])["status"] in ("SUCCESS", "FAILURE") and r,
                   240, f"run {run_id}")

    assert run["status"] == "FAILURE"
    [failure] = [e for e in run["eventConnection"]["events"] if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failure["error"]["message"].startswith(
        "dagster._core.definitions.events.Failure: annotation batch 'typed-by-hand': no such batch in annotation_batches"
    )
    assert "Delete partitions" in failure["error"]["message"] and failure["error"]["cause"] is None
    assert "KeyError" not in json.dumps(run)

    deleted = ui.gql(  # raw_judgments → ▾ beside Materialize… → Delete partitions → typed-by-hand → Delete 1 partition
        "mutation($r: RepositorySelector!) { deleteDynamicPartitions(repositorySelector: $r, partitionsDefName: \"annotation_batches\", "
        "partitionKeys: [\"typed-by-hand\"]) { __typename } }", {"r": repository},
    )
    assert deleted["deleteDynamicPartitions"]["__typename"] == "DeleteDynamicPartitionsSuccess"
    assert "typed-by-hand" not in partition_keys(ui) and len(partition_keys(ui)) == len(BATCHES)


SENSOR_TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
  sensorState { ticks(limit: 5) { status skipReason } } } } }"""

REJECTIONS_CHECK = """{ assetNodeOrError(assetKey: {path: ["raw_judgments"]}) { ... on AssetNode { assetChecksOrError {
  ... on AssetChecks { checks { name executionForLatestMaterialization { status evaluation { success description } } } } } } } }"""


@pytest.mark.timeout(300)
def test_a_bad_file_in_the_inbox_is_named_on_the_tick_and_turns_the_inbox_check_red(ui):
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:5].drop(columns=["conversation_a", "conversation_b"])
    votes.loc[3, "winner"] = "model_c"
    ui.inbox.mkdir(exist_ok=True)
    votes.to_json(ui.inbox / "typo.jsonl", orient="records", lines=True)
    os.utime(ui.inbox / "typo.jsonl", (time.time() - 60,) * 2)
    selector = {**ui.repository(), "sensorName": "annotation_inbox"}
    started = ui.gql("mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }", {"s": selector})
    assert started["startSensor"]["__typename"] == "Sensor"

    def skipped_tick():
        ticks = ui.gql(SENSOR_TICKS, {"s": selector})["sensorOrError"]["sensorState"]["ticks"]
        return next((t["skipReason"] for t in ticks if t["status"] == "SKIPPED" and "typo.jsonl" in (t["skipReason"] or "")), None)

    reason = wait_for(skipped_tick, 180, "a sensor tick naming typo.jsonl")

    assert f"refused: {ui.inbox / 'typo.jsonl'}, row 4, column 'winner': is not one of model_a, model_b, tie" in reason
    assert "1 refused annotation file(s) wait in rejected/: typo.jsonl" in reason
    con = duckdb.connect(str(ui.db), read_only=True)
    try:
        assert con.execute("SELECT file, resolved FROM rejected_files").fetchall() == [("typo.jsonl", False)]
    finally:
        con.close()
    checks = ui.gql(REJECTIONS_CHECK)["assetNodeOrError"]["assetChecksOrError"]["checks"]
    [check] = [c for c in checks if c["name"] == "no_unresolved_rejected_files"]
    assert check["executionForLatestMaterialization"]["status"] == "FAILED", check
