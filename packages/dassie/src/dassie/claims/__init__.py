"""Claim verification: the pure decision (:mod:`.verify`), channel sources
(:mod:`.channels`) and the service that commits accepted claims (:mod:`.service`)."""
