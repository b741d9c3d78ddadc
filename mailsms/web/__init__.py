"""The HTTP edge: health checks now; carrier webhooks, the admin API and
the dashboard join here."""
