"""The problem type registry (app/core/problems.py) is the one list of problem slugs.

Raise sites name its entries, the OpenAPI responses take their descriptions from it, and the
README's "Problem types" table lists exactly its entries.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.core.errors import AppError, Conflict, NotFound, PreconditionFailed
from app.core.problems import GENERAL, PROBLEM_BASE, ProblemType, for_status
from app.main import app

ROOT = Path(__file__).resolve().parents[1]
SLUG = re.compile(r"^[a-z]+(-[a-z]+)*$")
TABLE_ROW = re.compile(r"^\| `([a-z-]+)` \| (\d{3}) \| ([^|]+) \| ([^|]+) \|$", re.MULTILINE)


def _app_sources() -> list[Path]:
    return sorted((ROOT / "app").rglob("*.py"))


class TestRegistry:
    def test_entries_are_well_formed(self) -> None:
        for problem in ProblemType:
            assert SLUG.match(problem.value), problem.value
            assert 400 <= problem.status < 600, problem
            assert problem.title.strip() and problem.description.strip(), problem
            assert problem.uri == PROBLEM_BASE + problem.value

    def test_every_status_has_a_general_entry(self) -> None:
        assert {p.status for p in ProblemType} == set(GENERAL)
        assert all(for_status(status) is problem for status, problem in GENERAL.items())

    def test_unknown_slug_is_not_a_problem_type(self) -> None:
        with pytest.raises(ValueError, match="no-such-problem"):
            ProblemType("no-such-problem")


class TestAppError:
    def test_status_and_title_come_from_the_entry(self) -> None:
        exc = Conflict("The lead slot is taken.", type_=ProblemType.SLOT_TAKEN)
        assert (exc.status, exc.type_, exc.title, exc.detail) == (
            409,
            ProblemType.SLOT_TAKEN,
            ProblemType.SLOT_TAKEN.title,
            "The lead slot is taken.",
        )
        assert (NotFound().type_, NotFound().detail) == (ProblemType.NOT_FOUND, "Not found")

    def test_entry_of_another_status_is_refused(self) -> None:
        with pytest.raises(TypeError, match="stale-version"):
            Conflict("x", type_=ProblemType.STALE_VERSION)
        assert PreconditionFailed("x", type_=ProblemType.STALE_VERSION).status == 412

    def test_each_error_class_stands_for_a_general_entry(self) -> None:
        classes: list[type[AppError]] = [AppError]
        for cls in classes:
            classes.extend(cls.__subclasses__())
            assert GENERAL[cls.problem.status] is cls.problem, cls


class TestRaiseSites:
    def test_problem_types_are_named_never_spelled(self) -> None:
        """No slug or title literal at a raise site: ``type_=ProblemType.X``, never ``"x"``."""
        found = []
        for path in _app_sources():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = (
                        node.func.attr
                        if isinstance(node.func, ast.Attribute)
                        else getattr(node.func, "id", "")
                    )
                    literal_kw = [
                        kw.arg
                        for kw in node.keywords
                        if kw.arg in {"type_", "title"}
                        and isinstance(kw.value, ast.Constant)
                        and name not in {"Table", "FastAPI"}
                    ]
                    literal_arg = name == "problem_response" and any(
                        isinstance(arg, ast.Constant) for arg in node.args[1:2]
                    )
                    if literal_kw or literal_arg:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(t, ast.Name) and t.id in {"type_", "status", "title"}
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    for target in stmt.targets
                    for t in (target.elts if isinstance(target, ast.Tuple) else [target])
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
        assert found == [], "name a ProblemType entry instead: " + ", ".join(found)

    def test_every_slug_mentioned_is_registered(self) -> None:
        """``/problems/<slug>`` in the docs and the tests names a registered problem type."""
        registered = {p.value for p in ProblemType}
        texts = [ROOT / "README.md", ROOT / "PRIVACY.md", *sorted((ROOT / "tests").rglob("*.py"))]
        mentioned = {
            (path.name, slug)
            for path in texts
            for slug in re.findall(r"/problems/([a-z]+(?:-[a-z]+)*)", path.read_text("utf-8"))
        }
        assert mentioned, "no /problems/<slug> found in the docs or tests"
        assert {(name, slug) for name, slug in mentioned if slug not in registered} == set()


def test_readme_table_lists_the_registry() -> None:
    rows = TABLE_ROW.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    documented = {
        slug: (int(status), title.strip(), when.strip()) for slug, status, title, when in rows
    }
    assert documented == {p.value: (p.status, p.title, p.description) for p in ProblemType}, (
        "README.md's 'Problem types' table and app/core/problems.py differ"
    )


def test_route_problem_responses_are_described_by_the_registry() -> None:
    checked = 0
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for code, response in operation.get("responses", {}).items():
                if "application/problem+json" in response.get("content", {}):
                    assert response["description"] == for_status(int(code)).description, (
                        f"{method} {path} {code}"
                    )
                    checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("method", "path", "problem"),
    [
        ("GET", "/api/v1/no-such-route", ProblemType.NOT_FOUND),
        ("DELETE", "/api/v1/incidents", ProblemType.METHOD_NOT_ALLOWED),
    ],
)
def test_framework_errors_answer_the_registered_type(client, method, path, problem) -> None:
    body = client.request(method, path).json()
    assert (body["type"], body["status"], body["title"]) == (
        problem.uri,
        problem.status,
        problem.title,
    )
