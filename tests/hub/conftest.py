"""Fixtures for the Hub publishing tests: a trained-looking tiny folder with its results.json, and a local fake Hub.

The fake Hub is an in-memory HTTP server on 127.0.0.1 that implements only the routes `huggingface_hub`'s client calls
to publish (create repo, create branch, validate the card's YAML, preupload, commit) and to download (model info,
tree listing, resolve), plus the client's daily agent-harness lookup. Files always go as regular base64 commit content: its preupload answer never asks for LFS/Xet, which keeps
the server small; the tiny test model is a few hundred KB.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

FAKE_TOKEN = "hf_local_test_token"
MAX_BODY_BYTES = 32 * 1024 * 1024  # the server refuses anything larger: tests never need it


@dataclass
class FakeRepo:
    private: bool
    branches: dict[str, str]  # branch -> commit id
    commits: dict[str, dict] = field(default_factory=dict)  # commit id -> {"files", "message", "parent"}

    def files(self, revision: str) -> dict[str, bytes] | None:
        commit = self.branches.get(revision, revision)
        return self.commits[commit]["files"] if commit in self.commits else None


class FakeHub:
    """State of the fake Hub: repositories and a log of every request (method, path, JSON-ish body)."""

    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.validated_cards: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def routes(self, method: str | None = None) -> list[str]:
        """Paths requested so far (optionally of one HTTP method)."""
        return [path for m, path in self.requests if method is None or m == method]

    def new_commit(self, repo: FakeRepo, parent: str | None, files: dict[str, bytes], message: str) -> str:
        commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 hex characters, like a git sha
        repo.commits[commit] = {"files": files, "message": message, "parent": parent}
        return commit


class _FakeHubHandler(BaseHTTPRequestHandler):
    hub: FakeHub  # set on a subclass per server
    timeout = 30  # seconds a connection may stay silent

    def log_message(self, *args):  # keep pytest output clean
        pass

    # ----------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str | None, message: str):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes is over the fake Hub's limit")
        return self.rfile.read(length)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {FAKE_TOKEN}"

    def _repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    # ----------------------------------------------------------------- routes
    def do_POST(self):
        path = unquote(urlsplit(self.path).path)
        with self.hub.lock:
            self.hub.requests.append(("POST", path))
            if not self._authorised():
                return self._error(401, None, "fake hub: missing or wrong token")
            body = self._body()
            parts = path.strip("/").split("/")
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            if len(parts) >= 6 and parts[:2] == ["api", "models"]:
                repo_id, action, ref = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                if action == "preupload":
                    return self._preupload(repo_id, ref, json.loads(body))
                if action == "commit":
                    return self._commit(repo_id, ref, body)
                if action == "branch":
                    return self._create_branch(repo_id, ref, json.loads(body or b"{}"))
            self.hub.unhandled.append(("POST", path))
            return self._error(404, None, f"fake hub: no route POST {path}")

    def do_HEAD(self):
        self._get()

    def do_GET(self):
        self._get()

    def _get(self):
        path = unquote(urlsplit(self.path).path)
        with self.hub.lock:
            self.hub.requests.append((self.command, path))
            parts = path.strip("/").split("/")
            if path == "/api/agent-harnesses":  # the client's best-effort lookup of AI-agent shells: none known here
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if parts[:2] == ["api", "models"] and (len(parts) == 4 or (len(parts) == 6 and parts[4] == "revision")):
                return self._model_info(f"{parts[2]}/{parts[3]}", parts[5] if len(parts) == 6 else "main")
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                return self._tree(f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:]))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            self.hub.unhandled.append((self.command, path))
            return self._error(404, None, f"fake hub: no route {self.command} {path}")

    def _create_repo(self, payload: dict):
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        repo = FakeRepo(private=payload.get("visibility") == "private", branches={})
        repo.branches["main"] = self.hub.new_commit(repo, None, {}, "initial commit")
        self.hub.repos[repo_id] = repo
        return self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, payload: dict):
        content = payload["content"]
        self.hub.validated_cards.append(content)
        if not content.startswith("---\n"):
            return self._json(400, {"errors": [{"message": "no YAML front matter"}]})
        try:
            yaml.safe_load(content.split("---\n")[1])
        except yaml.YAMLError as error:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {error}"}]})
        return self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, revision: str, payload: dict):
        if (repo := self._repo(repo_id)) is None:
            return
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
        return self._json(200, {"files": files, "commitOid": repo.branches[revision]})

    def _create_branch(self, repo_id: str, branch: str, payload: dict):
        if (repo := self._repo(repo_id)) is None:
            return
        if branch in repo.branches:
            return self._error(409, None, f"Branch {branch} already exists")
        start = payload.get("startingPoint", "main")
        repo.branches[branch] = repo.branches.get(start, start)
        return self._json(200, {})

    def _commit(self, repo_id: str, revision: str, body: bytes):
        if (repo := self._repo(repo_id)) is None:
            return
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = repo.branches[revision]
        files = dict(repo.commits[parent]["files"])
        for line in lines:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] in ("deletedFile", "deletedFolder"):
                files = {p: c for p, c in files.items() if not (p == line["value"]["path"] or
                         p.startswith(line["value"]["path"].rstrip("/") + "/"))}
            elif line["key"] != "header":
                return self._error(400, None, f"fake hub: commit operation {line['key']!r} is not implemented")
        commit = self.hub.new_commit(repo, parent, files, header["summary"])
        repo.branches[revision] = commit
        return self._json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit}", "commitOid": commit})

    def _model_info(self, repo_id: str, revision: str):
        if (repo := self._repo(repo_id)) is None:
            return
        files = repo.files(revision)
        if files is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        sha = repo.branches.get(revision, revision)
        return self._json(200, {
            "id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private, "tags": [],
            "siblings": [{"rfilename": name} for name in sorted(files)],
        })

    def _tree(self, repo_id: str, revision: str, folder: str):
        """Files and folders directly under `folder` (or all files below it with ?recursive=true)."""
        if (repo := self._repo(repo_id)) is None:
            return
        files = repo.files(revision)
        if files is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        prefix = f"{folder}/" if folder else ""
        below = {name: content for name, content in files.items() if name.startswith(prefix)}
        if folder and not below:
            return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        recursive = "recursive=true" in urlsplit(self.path).query.lower()
        entries, folders = [], set()
        for name, content in sorted(below.items()):
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append({"type": "file", "path": name, "size": len(content), "oid": hashlib.sha1(content).hexdigest()})
        entries += [{"type": "directory", "path": name, "oid": hashlib.sha1(name.encode()).hexdigest()}
                    for name in sorted(folders)]
        return self._json(200, entries)

    def _resolve(self, repo_id: str, revision: str, filename: str):
        if (repo := self._repo(repo_id)) is None:
            return
        files = repo.files(revision)
        if files is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if filename not in files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}")
        content = files[filename]
        self._send(200, content, {
            "X-Repo-Commit": repo.branches.get(revision, revision),
            "ETag": f'"{hashlib.sha1(content).hexdigest()}"',
        }, content_type="application/octet-stream")


@pytest.fixture
def fake_hub():
    """A `FakeHub` served on 127.0.0.1 (a free port) for the duration of one test."""
    hub = FakeHub()
    handler = type("Handler", (_FakeHubHandler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hub
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def hub_env(fake_hub, tmp_path, monkeypatch) -> dict[str, str]:
    """Point every Hub client in this test and its subprocesses at the fake Hub, with a fresh cache."""
    values = {
        "HF_ENDPOINT": fake_hub.url,
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # the hf CLI would otherwise look for a newer version on PyPI
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER"):
        monkeypatch.delenv(key, raising=False)
    return values


TEACHER_ID = "BAAI/AltCLIP"


@pytest.fixture
def trained_folder(tmp_path, make_tiny_model, tiny_processor) -> Path:
    """A tiny student saved as the trainers leave it: model, processor, training record, and training_args.bin."""
    from dcclip.trainers.records import DataSource, TrainingStage, record_training_stage

    folder = tmp_path / "student"
    make_tiny_model("tiny").save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    distilled = tmp_path / "distilled"
    record_training_stage(
        distilled,
        TrainingStage("feature_distillation", [DataSource("scenes", "imagefolder", path="data/scenes")],
                      {"learning_rate": 0.0005, "max_steps": 2000, "smooth_l1_beta": 1.0}),
        teacher=TEACHER_ID,
        student_preset="tiny",
    )
    record_training_stage(
        folder,
        TrainingStage("alignment", [DataSource("wukong", "hub", path="org/wukong-pairs"),
                                    DataSource("cc3m", "parquet", data_files=["cc3m/*.parquet"])],
                      {"learning_rate": 0.0001, "per_device_train_batch_size": 256, "temperature_learnable": True}),
        teacher=None,
        previous_folder=distilled,
    )
    # The Trainer pickles its TrainingArguments here; it must stay behind.
    (folder / "training_args.bin").write_bytes(b"\x80\x04not-a-real-pickle")
    return folder


def _make_results(folder: Path, student_name: str = "dc-clip-tiny"):
    from dcclip.evaluation.results import EvaluationResults, ModelInfo, ScoreEntry, TaskInfo
    from dcclip.hub.folder_check import check_model_folder

    towers = check_model_folder(folder, require_card=False).towers
    student = ModelInfo(student_name, str(folder), "student", "dcclip",
                        sum(t.parameters for t in towers.values()), towers["image"].parameters, towers["text"].parameters)
    teacher = ModelInfo("altclip", TEACHER_ID, "teacher", "altclip", 864_191_233, 303_966_208, 560_224_768)
    zero_shot = {("cifar-10", "en"): (0.91234, 0.70117), ("cifar-10", "zh"): (0.84561, 0.65432),
                 ("scenes", "en"): (0.98, 0.7516), ("scenes", "zh"): (0.97, 0.73333)}
    scores = []
    for (task, language), (teacher_score, student_score) in zero_shot.items():
        scores.append(ScoreEntry("altclip", task, language, "accuracy", teacher_score, {"accuracy": teacher_score}))
        scores.append(ScoreEntry(student_name, task, language, "accuracy", student_score, {"accuracy": student_score},
                                 teacher_retention_pct=100 * student_score / teacher_score))
    for language, (teacher_recalls, student_recalls) in {
        "en": ({"image_to_text_R@1": 0.5, "text_to_image_R@1": 0.4, "mean_recall": 0.45},
               {"image_to_text_R@1": 0.3125, "text_to_image_R@1": 0.25, "mean_recall": 0.28125}),
        "zh": ({"image_to_text_R@1": 0.4375, "text_to_image_R@1": 0.375, "mean_recall": 0.40625},
               {"image_to_text_R@1": 0.1875, "text_to_image_R@1": 0.125, "mean_recall": 0.15625}),
    }.items():
        scores.append(ScoreEntry("altclip", "scenes-retrieval", language, "mean_recall",
                                 teacher_recalls["mean_recall"], teacher_recalls))
        scores.append(ScoreEntry(student_name, "scenes-retrieval", language, "mean_recall",
                                 student_recalls["mean_recall"], student_recalls,
                                 teacher_retention_pct=100 * student_recalls["mean_recall"] / teacher_recalls["mean_recall"]))
    tasks = [TaskInfo("cifar-10", "zero_shot", "accuracy", ["en", "zh"], 200, 10),
             TaskInfo("scenes", "zero_shot", "accuracy", ["en", "zh"], 64, 8),
             TaskInfo("scenes-retrieval", "retrieval", "mean_recall", ["en", "zh"], 16)]
    return EvaluationResults(models=[teacher, student], tasks=tasks, scores=scores, teacher="altclip")


@pytest.fixture
def make_results():
    """Factory: `make_results(folder, student_name="dc-clip-tiny")` -> `EvaluationResults` of the student in `folder`
    (its real parameter counts) beside an AltCLIP teacher, with distinct zero-shot and retrieval scores."""
    return _make_results


@pytest.fixture
def results_json(trained_folder, tmp_path) -> Path:
    """results.json for `trained_folder`, written with the evaluation's own writer."""
    from dcclip.evaluation.results import write_results

    return write_results(_make_results(trained_folder), tmp_path / "eval" / "results.json")
