"""Client configuration for a running mock: ``OS_*`` variables and ``clouds.yaml`` entries.

Built from :meth:`MockCloud.connection_info` (the JSON line the standalone mock prints), so an
in-process mock and a mock in another process hand out the same credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml  # openstacksdk's dependency: clouds.yaml is its format

#: The ``clouds.yaml`` entry name used unless told otherwise.
DEFAULT_CLOUD = "mock"


def _project(info: Mapping[str, Any], project_id: str | None) -> str:
    ids: list[str] = info["project_ids"]
    if project_id is None:
        return ids[0]
    if project_id in ids:
        return project_id
    names: list[str] = info["project_names"]
    if project_id in names:
        return ids[names.index(project_id)]
    raise KeyError(f"no project {project_id}")


def clouds_entry(
    info: Mapping[str, Any],
    project_id: str | None = None,
    *,
    admin: bool = False,
    application_credential: bool = False,
) -> dict[str, Any]:
    """One ``clouds.yaml`` cloud: the member (or the admin) on a project (default: the first).

    With ``application_credential``, the member's credential for that project instead of a
    password.
    """
    project = _project(info, project_id)
    auth: dict[str, Any] = {"auth_url": info["auth_url"]}
    entry: dict[str, Any] = {}
    if application_credential:
        credential = info["application_credentials"][project]
        entry["auth_type"] = "v3applicationcredential"
        auth |= {
            "application_credential_id": credential["id"],
            "application_credential_secret": credential["secret"],
        }
    else:
        auth |= {
            "username": info["admin_username" if admin else "username"],
            "password": info["admin_password" if admin else "password"],
            "user_domain_name": info["user_domain"],
            "project_id": project,
            "project_domain_name": info["user_domain"],
        }
    return entry | {
        "auth": auth,
        "region_name": info["region"],
        "interface": "public",
        "identity_api_version": 3,
    }


def os_env(
    info: Mapping[str, Any],
    project_id: str | None = None,
    *,
    admin: bool = False,
    application_credential: bool = False,
) -> dict[str, str]:
    """The ``OS_*`` variables of :func:`clouds_entry`."""
    entry = clouds_entry(
        info, project_id, admin=admin, application_credential=application_credential
    )
    env = {
        "OS_AUTH_URL": entry["auth"]["auth_url"],
        "OS_REGION_NAME": entry["region_name"],
        "OS_INTERFACE": entry["interface"],
        "OS_IDENTITY_API_VERSION": str(entry["identity_api_version"]),
    }
    if "auth_type" in entry:
        env["OS_AUTH_TYPE"] = entry["auth_type"]
    env |= {f"OS_{key.upper()}": value for key, value in entry["auth"].items() if key != "auth_url"}
    return env


def write_clouds_yaml(
    path: str | os.PathLike[str], clouds: Mapping[str, Mapping[str, Any]]
) -> None:
    """Write ``{"clouds": clouds}`` as block YAML (replacing the file)."""
    document = {"clouds": {name: dict(entry) for name, entry in clouds.items()}}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle, default_flow_style=False, sort_keys=False)
