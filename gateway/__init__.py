"""The edi834 service: CLI, intake, storage, worker, status API and dashboard."""
