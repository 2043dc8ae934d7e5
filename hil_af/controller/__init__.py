"""The AF controller: state machine, methods, single and continuous modes."""

from .base import AFState, FocusResult, Limits

__all__ = ["AFState", "FocusResult", "Limits"]
