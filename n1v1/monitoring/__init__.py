"""Observability as code: the application metrics' catalogue, the Prometheus alert rules, the
Grafana dashboards, and the files generated from them under kuberay/monitoring/. No Ray here."""
