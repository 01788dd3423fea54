"""Knowing what did not happen: a partner's file that never came (its expected schedule), acks
answered late (latency against the SLA) or never picked up (SFTP outbound/), files received and
never processed (stuck). One decision, imported by the overview, /metrics and the alerts."""
