"""Push rules and the notifications list (spec "Push Notifications")."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services

P = "/_matrix/client/v3/pushrules"
RULE = P + "/global/<kind>/<rule_id>"
DEFAULT_NOTIFICATIONS_LIMIT = 50


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("push_rules", __name__)
    rules = services.push_rules
    sessions = services.sessions

    @bp.route(P + "/", methods=["GET"], strict_slashes=False)
    async def get_all() -> Response:
        """GET /_matrix/client/v3/pushrules/ (spec: getPushRules)."""
        requester = await authenticate(sessions)
        return reply({"global": (await rules.ruleset(requester.user_id)).to_json()})

    @bp.route(P + "/global/", methods=["GET"], strict_slashes=False)
    async def get_global() -> Response:
        """GET /_matrix/client/v3/pushrules/global/ (spec: getPushRulesGlobal)."""
        requester = await authenticate(sessions)
        return reply((await rules.ruleset(requester.user_id)).to_json())

    @bp.route(RULE, methods=["GET"])
    async def get_rule(kind: str, rule_id: str) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId} (spec: getPushRule)."""
        requester = await authenticate(sessions)
        return reply((await rules.get_rule(requester.user_id, kind, rule_id)).to_json())

    @bp.route(RULE, methods=["PUT"])
    async def put_rule(kind: str, rule_id: str) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId} (spec: setPushRule)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await rules.put_rule(requester.user_id, kind, rule_id, body.raw,
                             before=request.args.get("before"), after=request.args.get("after"))
        return reply({})

    @bp.route(RULE, methods=["DELETE"])
    async def delete_rule(kind: str, rule_id: str) -> Response:
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId} (spec: deletePushRule)."""
        requester = await authenticate(sessions)
        await rules.delete_rule(requester.user_id, kind, rule_id)
        return reply({})

    @bp.route(RULE + "/enabled", methods=["GET"])
    async def get_enabled(kind: str, rule_id: str) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
        (spec: isPushRuleEnabled)."""
        requester = await authenticate(sessions)
        rule = await rules.get_rule(requester.user_id, kind, rule_id)
        return reply({"enabled": rule.enabled})

    @bp.route(RULE + "/enabled", methods=["PUT"])
    async def put_enabled(kind: str, rule_id: str) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
        (spec: setPushRuleEnabled)."""
        requester = await authenticate(sessions)
        body = await json_body()
        enabled = body.raw.get("enabled")
        if not isinstance(enabled, bool):
            raise MatrixError(400, Codes.BAD_JSON if "enabled" in body else Codes.MISSING_PARAM,
                              "'enabled' must be a boolean")
        await rules.set_enabled(requester.user_id, kind, rule_id, enabled)
        return reply({})

    @bp.route(RULE + "/actions", methods=["GET"])
    async def get_actions(kind: str, rule_id: str) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
        (spec: getPushRuleActions)."""
        requester = await authenticate(sessions)
        rule = await rules.get_rule(requester.user_id, kind, rule_id)
        return reply({"actions": list(rule.actions)})

    @bp.route(RULE + "/actions", methods=["PUT"])
    async def put_actions(kind: str, rule_id: str) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
        (spec: setPushRuleActions)."""
        requester = await authenticate(sessions)
        body = await json_body()
        if "actions" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'actions'")
        await rules.set_actions(requester.user_id, kind, rule_id, body.raw["actions"])
        return reply({})

    @bp.route("/_matrix/client/v3/notifications", methods=["GET"])
    async def notifications() -> Response:
        """GET /_matrix/client/v3/notifications (spec: getNotifications)."""
        requester = await authenticate(sessions)
        raw_limit = request.args.get("limit")
        try:
            limit = int(raw_limit) if raw_limit is not None else DEFAULT_NOTIFICATIONS_LIMIT
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, "limit must be an integer") from None
        return reply(await services.push_actions.notifications(
            requester.user_id, request.args.get("from"), limit, request.args.get("only")))

    return bp
