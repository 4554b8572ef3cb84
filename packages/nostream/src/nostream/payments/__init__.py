"""Where an event that passed validation is priced and paid before it is stored."""

from .gate import Charge, FreePublishing, PaymentGate

__all__ = ["Charge", "FreePublishing", "PaymentGate"]
