"""Broker failures, each with the AMQP condition and management status Azure Service Bus uses for it."""

from __future__ import annotations


class BrokerError(Exception):
    """A request the broker refuses; `condition` and `status` are what the client sees."""

    condition = "amqp:internal-error"
    status = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class EntityNotFoundError(BrokerError):
    condition = "amqp:not-found"
    status = 404


class MessageLockLostError(BrokerError):
    condition = "com.microsoft:message-lock-lost"
    status = 410


class SessionLockLostError(BrokerError):
    condition = "com.microsoft:session-lock-lost"
    status = 410


class SessionCannotBeLockedError(BrokerError):
    condition = "com.microsoft:session-cannot-be-locked"
    status = 409


class MessageNotFoundError(BrokerError):
    condition = "com.microsoft:message-not-found"
    status = 404


class OperationTimeoutError(BrokerError):
    condition = "com.microsoft:timeout"
    status = 408


class BadRequestError(BrokerError):
    condition = "com.microsoft:argument-error"
    status = 400


class NotImplementedOperationError(BrokerError):
    condition = "amqp:not-implemented"
    status = 501


class UnauthorizedError(BrokerError):
    condition = "amqp:unauthorized-access"
    status = 401
