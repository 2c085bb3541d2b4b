"""The service credential: what makes an internal method answer only our services."""

from __future__ import annotations

import hashlib
import hmac

from services.common.errors import PermissionDenied
from services.common.grpc_types import Context

# Internal methods (key verification, flagging) answer only calls that carry
# the deployment's service credential in this metadata key. The services'
# internal channels add it (services/common/channels.py); the gateway never
# routes internal services, and strips the key from what clients send.
SERVICE_CREDENTIAL_KEY = "x-aimusicstore-service"
# The client address as the gateway took it (the peer, or the trusted
# X-Forwarded-For hop: the address its rate limits count). The gateway's
# public listener sets it on every request, over any value the client sent;
# a call without it did not come through the gateway.
CLIENT_ADDRESS_KEY = "x-aimusicstore-client-address"


def service_credential(admin_key: str, configured: str = "") -> str:
    """AIMUSICSTORE_SERVICE_TOKEN when set, else derived from the admin key
    (which every service already holds): a pod inside the cluster without
    either secret cannot call internal methods."""
    if configured:
        return configured
    return hmac.new(admin_key.encode(), b"aimusicstore internal service credential", hashlib.sha256).hexdigest()


def require_service(context: Context, credential: str) -> None:
    """Refuses an internal method's caller that is not one of our services."""
    for key, value in context.invocation_metadata() or ():
        if key == SERVICE_CREDENTIAL_KEY and hmac.compare_digest(str(value), credential):
            return
    raise PermissionDenied("internal method: only the aimusicstore services may call it")
