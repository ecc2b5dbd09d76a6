"""ClusterService RPCs of restricted workspaces (issue 20), mixed into ClusterService: settings
(allowlist, upload rights) and activity queries. Thin: protobuf <-> WorkspaceSettingsService and the
activity log; every change goes through ClusterService._audited like the other user actions.

Roles (for the role table): GetWorkspaceSettings and QueryActivity read (viewer); SetAllowlist,
AddAllowedUrl, RemoveAllowedUrl and SetWorkspaceRights change settings (administrator).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio

from common.activity_file import ActivityQuery
from manager.core import ClusterManager
from manager.workspace_settings import WorkspaceSettings
from protos.bench.v1 import cluster_pb2

T = TypeVar("T")
MAX_QUERY_LIMIT = 10_000  # about what one 3 MiB answer carries
# gRPC clients refuse answers over 4 MiB by default (RESOURCE_EXHAUSTED): a large --limit gets the newest
# entries that fit; narrow the query (--since, --user, --action) for older ones.
MAX_RESPONSE_BYTES = 3 << 20


def settings_to_pb(s: WorkspaceSettings) -> cluster_pb2.WorkspaceSettings:
    return cluster_pb2.WorkspaceSettings(allowlist=list(s.allowlist), upload=s.upload, changed_at_unix=s.changed_at,
                                         changed_by=s.changed_by)


class WorkspaceRpcs:
    _m: ClusterManager

    async def _audited(self, context: aio.ServicerContext, action: str, call: Callable[[str], Awaitable[T]],
                       **details: object) -> T:
        raise NotImplementedError  # ClusterService's

    def _settings_response(self, message: str = "") -> cluster_pb2.WorkspaceSettingsResponse:
        service = self._m.workspace
        in_force, pending = service.in_force(), service.pending()
        has_pending = not pending.same_rules(in_force)
        if not message and has_pending:
            message = "pending: applies at the next cluster start (`workspace-ctl cluster start`)"
        return cluster_pb2.WorkspaceSettingsResponse(in_force=settings_to_pb(in_force), pending=settings_to_pb(pending),
                                                     has_pending=has_pending, message=message)

    async def _change(self, context: aio.ServicerContext, action: str,
                      change: Callable[[str], WorkspaceSettings],
                      **details: Any) -> cluster_pb2.WorkspaceSettingsResponse:
        async def call(user: str) -> WorkspaceSettings:
            return change(user)
        await self._audited(context, action, call, **details)
        return self._settings_response()

    async def GetWorkspaceSettings(self, request: cluster_pb2.GetWorkspaceSettingsRequest,
                                   context: aio.ServicerContext) -> cluster_pb2.WorkspaceSettingsResponse:
        return self._settings_response()

    async def SetAllowlist(self, request: cluster_pb2.SetAllowlistRequest,
                           context: aio.ServicerContext) -> cluster_pb2.WorkspaceSettingsResponse:
        lines = list(request.entries)
        return await self._change(context, "workspace set-allowlist",
                                  lambda user: self._m.workspace.set_allowlist(lines, user),
                                  entries=[line.strip()[:300] for line in lines if line.strip()][:1000])

    async def AddAllowedUrl(self, request: cluster_pb2.AllowedUrlRequest,
                            context: aio.ServicerContext) -> cluster_pb2.WorkspaceSettingsResponse:
        return await self._change(context, "workspace add-url",
                                  lambda user: self._m.workspace.add_url(request.url, user), url=request.url[:300])

    async def RemoveAllowedUrl(self, request: cluster_pb2.AllowedUrlRequest,
                               context: aio.ServicerContext) -> cluster_pb2.WorkspaceSettingsResponse:
        return await self._change(context, "workspace remove-url",
                                  lambda user: self._m.workspace.remove_url(request.url, user), url=request.url[:300])

    async def SetWorkspaceRights(self, request: cluster_pb2.SetWorkspaceRightsRequest,
                                 context: aio.ServicerContext) -> cluster_pb2.WorkspaceSettingsResponse:
        return await self._change(context, "workspace set-rights",
                                  lambda user: self._m.workspace.set_rights(request.upload, user),
                                  upload="on" if request.upload else "off")

    async def QueryActivity(self, request: cluster_pb2.QueryActivityRequest,
                            context: aio.ServicerContext) -> cluster_pb2.QueryActivityResponse:
        if request.since_unix < 0 or request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "since and limit must not be negative")
        q = ActivityQuery(since_unix=request.since_unix, user=request.user, action=request.action.strip(),
                          limit=min(request.limit or 1000, MAX_QUERY_LIMIT))
        records = await asyncio.to_thread(self._m.activity.query, q)
        return cluster_pb2.QueryActivityResponse(entries=newest_within(
            [json.dumps(r, sort_keys=True) for r in records], MAX_RESPONSE_BYTES))



def newest_within(entries: list[str], budget_bytes: int) -> list[str]:
    """The newest entries (the list is oldest first) whose encoded size fits the budget, oldest first."""
    kept: list[str] = []
    used = 0
    for entry in reversed(entries):
        used += len(entry.encode()) + 8  # protobuf framing per repeated string, generously
        if used > budget_bytes:
            break
        kept.append(entry)
    return kept[::-1]
