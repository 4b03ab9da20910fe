"""The role-rule aliases of ``app.api.deps``: one ``Allowed<Action>`` per action, requiring it."""

from __future__ import annotations

from typing import get_args

from app.api import deps
from app.core.security import Action, Principal


def _alias_name(action: Action) -> str:
    return "Allowed" + "".join(word.capitalize() for word in action.value.split("_"))


def test_every_action_has_an_alias_that_requires_it() -> None:
    for action in Action:
        principal_type, dependency = get_args(getattr(deps, _alias_name(action)))
        assert principal_type is Principal
        assert dependency.dependency.__name__ == f"require_{action.value}", action


def test_no_alias_without_an_action() -> None:
    aliases = {name for name in vars(deps) if name.startswith("Allowed")}
    assert aliases == {_alias_name(action) for action in Action}
