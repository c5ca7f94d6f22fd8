#!/usr/bin/env python3
"""Writes the Grafana dashboards in monitoring/grafana/dashboards/ from the panel lists below.

    python3 monitoring/grafana/generate.py          # rewrite the JSON files
    python3 monitoring/grafana/generate.py --check  # fail if a JSON file differs (tests/monitoring/run)

The JSON files are what operators import or provision; this script keeps their boilerplate
(datasource and instance variables, grid layout, ids) uniform. Every query is run against a
real Prometheus scraping a real relay and control plane by tests/monitoring/run.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(title, targets, unit="short", description="", kind="timeseries"):
    """targets: [(expr, legend)]"""
    return {"title": title, "targets": targets, "unit": unit, "description": description, "type": kind}


RELAY = 'job="teletip-relay", instance=~"$instance"'
CONTROL = 'job="teletip-control", instance=~"$instance"'
R = "[$__rate_interval]"

FLEET = [
    panel("Relays answering scrapes", [(f"sum(up{{{RELAY}}})", "up"), (f"count(up{{{RELAY}}})", "known")],
          description="Relays Prometheus scraped successfully, of those it knows."),
    panel("Registered with the control plane", [(f"teletip_control_link_up{{{RELAY}}}", "{{instance}}")],
          description="1 while the relay's control link is up."),
    panel("Draining", [(f"teletip_draining{{{RELAY}}}", "{{instance}}")], description="1 while the relay drains."),
    panel("Allocations", [(f"sum by (instance) (teletip_allocations_active{{{RELAY}}})", "{{instance}}")]),
    panel("Allocation quota used", [(f"sum by (instance) (teletip_allocations_active{{{RELAY}}}) / sum by (instance) (teletip_allocations_quota{{{RELAY}}} > 0)", "{{instance}}")],
          unit="percentunit", description="Open allocations over total-quota (relays without a quota are left out)."),
    panel("Relay port range used", [(f"(sum by (instance) (teletip_allocations_active{{{RELAY}}}) + sum by (instance) (teletip_relay_sockets_pooled{{{RELAY}}})) / sum by (instance) (teletip_relay_ports{{{RELAY}}})", "{{instance}}")],
          unit="percentunit", description="Relayed sockets (allocations and the pool) over the size of min-port..max-port."),
    panel("Relayed traffic", [(f"sum by (instance) (rate(teletip_relayed_bytes_total{{{RELAY}}}{R})) * 8", "{{instance}}")], unit="bps"),
    panel("Authentication failures", [(f"sum by (instance) (rate(teletip_auth_failures_total{{{RELAY}}}{R}))", "{{instance}}")], unit="reqps"),
    panel("Drops by reason", [(f"sum by (reason) (rate(teletip_dropped_packets_total{{{RELAY}}}{R}))", "{{reason}}")], unit="pps"),
    panel("Versions", [(f"count by (version) (teletip_build_info{{{RELAY}}})", "{{version}}")], kind="stat"),
    panel("Days until a certificate expires", [(f"(teletip_tls_certificate_expiry_timestamp_seconds{{{RELAY}}} - time()) / 86400", "{{instance}} {{certificate}}")], unit="d"),
]

ONE_RELAY = [
    panel("Traffic", [(f"sum by (direction) (rate(teletip_relayed_bytes_total{{{RELAY}}}{R})) * 8", "{{direction}}")], unit="bps"),
    panel("Packets", [(f"sum by (direction) (rate(teletip_relayed_packets_total{{{RELAY}}}{R}))", "{{direction}}")], unit="pps"),
    panel("Allocations, permissions, channels", [
        (f"sum(teletip_allocations_active{{{RELAY}}})", "allocations"),
        (f"sum(teletip_permissions_active{{{RELAY}}})", "permissions"),
        (f"sum(teletip_channels_active{{{RELAY}}})", "channels"),
    ]),
    panel("Allocations granted and refused", [
        (f"sum(rate(teletip_allocations_created_total{{{RELAY}}}{R}))", "granted"),
        (f"sum by (reason) (rate(teletip_allocations_failed_total{{{RELAY}}}{R}))", "refused: {{reason}}"),
    ], unit="reqps"),
    panel("Allocations ended", [(f"sum by (how) (rate(teletip_allocations_ended_total{{{RELAY}}}{R}))", "{{how}}")], unit="reqps"),
    panel("Latency: data dropped late (overload control)", [
        (f"sum(rate(teletip_dropped_packets_total{{{RELAY}, reason=~\"queue_delay|send_buffer_full|stream_backlog\"}}{R}))", "late or unsendable"),
    ], unit="pps", description="The relay has no latency histogram: it drops data that waited longer than max-queue-delay-ms (queue_delay) instead of delaying it; these drops are where latency shows."),
    panel("Drops by reason", [(f"sum by (reason) (rate(teletip_dropped_packets_total{{{RELAY}}}{R}))", "{{reason}}")], unit="pps"),
    panel("Authentication", [
        (f"sum by (reason) (rate(teletip_auth_failures_total{{{RELAY}}}{R}))", "refused: {{reason}}"),
        (f"sum(rate(teletip_auth_challenges_total{{{RELAY}}}{R}))", "challenges"),
    ], unit="reqps"),
    panel("Transports: connections open", [(f"sum by (transport) (teletip_stream_connections{{{RELAY}}})", "{{transport}}")]),
    panel("Transports: connections accepted", [(f"sum by (transport) (rate(teletip_stream_connections_accepted_total{{{RELAY}}}{R}))", "{{transport}}")], unit="cps"),
    panel("TLS: connections closed by reason", [(f"sum by (reason) (rate(teletip_stream_connections_closed_total{{{RELAY}}}{R}))", "{{reason}}")], unit="cps"),
    panel("TLS: days until the certificate expires", [(f"(teletip_tls_certificate_expiry_timestamp_seconds{{{RELAY}}} - time()) / 86400", "{{certificate}}")], unit="d"),
    panel("Process CPU", [(f"rate(process_cpu_seconds_total{{{RELAY}}}{R})", "cores")], unit="short"),
    panel("Process memory", [(f"process_resident_memory_bytes{{{RELAY}}}", "resident")], unit="bytes"),
    panel("File descriptors", [(f"process_open_fds{{{RELAY}}}", "open"), (f"process_max_fds{{{RELAY}}}", "limit")]),
]

CONTROL_PLANE = [
    panel("Requests by route", [(f"sum by (route) (rate(http_requests_total{{{CONTROL}}}{R}))", "{{route}}")], unit="reqps"),
    panel("5xx ratio", [(f"(sum(rate(http_requests_total{{{CONTROL}, status=~\"5..\"}}{R})) or vector(0)) / sum(rate(http_requests_total{{{CONTROL}}}{R}))", "5xx")], unit="percentunit"),
    panel("p99 latency by route", [(f"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{CONTROL}}}{R})))", "{{route}}")], unit="s"),
    panel("Database statement p99", [(f"histogram_quantile(0.99, sum by (le, operation) (rate(teletip_db_query_duration_seconds_bucket{{{CONTROL}}}{R})))", "{{operation}}")], unit="s"),
    panel("Database errors", [(f"sum by (operation) (rate(teletip_db_query_errors_total{{{CONTROL}}}{R}))", "{{operation}}")], unit="reqps"),
    panel("Database pool", [
        (f"sum by (state) (teletip_db_pool_connections{{{CONTROL}}})", "{{state}}"),
        (f"sum(teletip_db_pool_max_connections{{{CONTROL}}})", "limit"),
        (f"sum(teletip_db_pool_waiting{{{CONTROL}}})", "waiting"),
    ]),
    panel("Signaling", [
        (f"sum(teletip_signaling_sockets{{{CONTROL}}})", "sockets"),
        (f"max(teletip_signaling_rooms{{{CONTROL}}})", "consultation rooms"),
    ]),
    panel("Background jobs: time since last success", [(f"time() - teletip_job_last_success_timestamp_seconds{{{CONTROL}}}", "{{instance}} {{task}}")], unit="s"),
    panel("Background job failures", [(f"sum by (task) (increase(teletip_job_failures_total{{{CONTROL}}}[1h]))", "{{task}}")]),
    panel("Webhook notifications", [
        (f"sum by (endpoint) (rate(teletip_control_notifications_delivered_total{{{CONTROL}}}{R}))", "{{endpoint}} delivered"),
        (f"sum by (endpoint) (rate(teletip_control_notifications_failed_attempts_total{{{CONTROL}}}{R}))", "{{endpoint}} failed attempts"),
        (f"sum by (endpoint) (increase(teletip_control_notifications_dead_lettered_total{{{CONTROL}}}[1h]))", "{{endpoint}} dead-lettered (1h)"),
    ], unit="reqps", description="Deliveries accepted (2xx) and attempts failed per second, by endpoint; dead letters made in the last hour (docs/notifications.md)."),
    panel("Notification outbox", [
        (f"max(teletip_control_notifications_queue_depth{{{CONTROL}}})", "waiting"),
        (f"max(teletip_control_notifications_dead_letters{{{CONTROL}}})", "dead letters"),
        (f"max(teletip_control_notifications_oldest_age_seconds{{{CONTROL}}}) / 60", "oldest waiting (minutes)"),
    ], description="Deliveries waiting (due or retrying), dead letters not replayed, and the age of the oldest waiting delivery in minutes."),
    panel("Audit chain verifications", [(f"sum by (outcome) (increase(teletip_audit_chain_verifications_total{{{CONTROL}}}[1h]))", "{{outcome}}")]),
    panel("Relays by state", [(f"max by (state) (teletip_relays{{{CONTROL}}})", "{{state}}")]),
    panel("ICE answers", [(f"sum by (outcome) (rate(teletip_ice_answers_total{{{CONTROL}}}{R}))", "{{outcome}}")], unit="reqps"),
    panel("Days until a certificate expires", [(f"(teletip_tls_certificate_expiry_timestamp_seconds{{{CONTROL}}} - time()) / 86400", "{{instance}} {{certificate}}")], unit="d"),
    panel("Process CPU", [(f"rate(process_cpu_seconds_total{{{CONTROL}}}{R})", "{{instance}}")]),
    panel("Process memory", [(f"process_resident_memory_bytes{{{CONTROL}}}", "{{instance}}")], unit="bytes"),
    panel("File descriptors", [(f"process_open_fds{{{CONTROL}}}", "{{instance}} open"), (f"process_max_fds{{{CONTROL}}}", "{{instance}} limit")]),
    panel("Versions", [(f"count by (version) (teletip_build_info{{{CONTROL}}})", "{{version}}")], kind="stat"),
]

CONSULTATIONS = [
    panel("Booked", [(f"sum by (outcome) (increase(teletip_bookings_total{{{CONTROL}}}[1h]))", "{{outcome}}")],
          description="Bookings in the last hour; conflict: the practitioner was already booked."),
    panel("Joined", [(f"sum by (role) (increase(teletip_consultation_joins_total{{{CONTROL}}}[1h]))", "{{role}}")],
          description="room:join answered with success in the last hour."),
    panel("Waited in the lobby (median, p90)", [
        (f"histogram_quantile(0.5, sum by (le) (rate(teletip_lobby_wait_seconds_bucket{{{CONTROL}}}[1h])))", "median"),
        (f"histogram_quantile(0.9, sum by (le) (rate(teletip_lobby_wait_seconds_bucket{{{CONTROL}}}[1h])))", "p90"),
    ], unit="s", description="From a patient's join to the practitioner's admit, over the last hour."),
    panel("Admitted and turned away", [
        (f"sum(increase(teletip_lobby_wait_seconds_count{{{CONTROL}}}[1h]))", "admitted"),
        (f"sum(increase(teletip_lobby_denied_total{{{CONTROL}}}[1h]))", "denied"),
    ]),
    panel("Ended", [(f"sum(increase(teletip_consultations_ended_total{{{CONTROL}}}[1h]))", "ended")]),
    panel("Consultations in progress", [(f"max(teletip_signaling_rooms{{{CONTROL}}})", "rooms")]),
]


def dashboard(uid, title, job, panels, instance_multi=True):
    out = []
    for i, p in enumerate(panels):
        out.append({
            "id": i + 1,
            "type": p["type"],
            "title": p["title"],
            "description": p["description"],
            "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
            "options": {},
            "targets": [
                {"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
                for j, (expr, legend) in enumerate(p["targets"])
            ],
        })
    instance_query = f'label_values(up{{job="{job}"}}, instance)'
    return {
        "uid": uid,
        "title": title,
        "tags": ["teletip"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
             "query": {"query": instance_query, "refId": "instance"}, "definition": instance_query,
             "refresh": 2, "sort": 1, "multi": instance_multi, "includeAll": instance_multi,
             "allValue": ".*" if instance_multi else None, "current": {}, "hide": 0, "options": []},
        ]},
        "panels": out,
    }


DASHBOARDS = {
    "teletip-relay-fleet.json": dashboard("teletip-relay-fleet", "teletip: relay fleet", "teletip-relay", FLEET),
    "teletip-relay.json": dashboard("teletip-relay", "teletip: one relay", "teletip-relay", ONE_RELAY, instance_multi=False),
    "teletip-control.json": dashboard("teletip-control", "teletip: control plane", "teletip-control", CONTROL_PLANE),
    "teletip-consultations.json": dashboard("teletip-consultations", "teletip: consultations", "teletip-control", CONSULTATIONS),
}


def main():
    check = "--check" in sys.argv[1:]
    target = HERE / "dashboards"
    stale = []
    for name, d in DASHBOARDS.items():
        text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        path = target / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        sys.exit("out of date (run python3 monitoring/grafana/generate.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
