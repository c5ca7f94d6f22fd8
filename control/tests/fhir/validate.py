#!/usr/bin/env python3
"""Validates FHIR R4 JSON files with an independent library: PyPI's fhir.resources (its R4B
models, structurally identical to R4 for the resources teletip serves). The models check
structure, cardinality, data types and refuse unknown elements; they do not bind coded
values, so the required value sets of the elements teletip fills are checked here against
the code lists printed in the FHIR R4 specification.

Usage: validate.py FILE...   (exit 0 when every file is valid; each file's verdict printed)
Exit 3 when fhir.resources is not installed (the caller decides whether that is a skip).
"""
import importlib
import json
import sys

try:
    import fhir.resources  # noqa: F401
except ImportError:
    print("fhir.resources is not installed (python3 -m pip install 'fhir.resources==8.3.0')")
    sys.exit(3)

MODELS = {
    "Patient": "patient", "Practitioner": "practitioner", "Appointment": "appointment",
    "Schedule": "schedule", "Slot": "slot", "Bundle": "bundle",
    "OperationOutcome": "operationoutcome", "CapabilityStatement": "capabilitystatement",
}

# Required bindings, from the R4 specification's value sets.
APPOINTMENT_STATUS = {"proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                      "entered-in-error", "checked-in", "waitlist"}
PARTICIPATION_STATUS = {"accepted", "declined", "tentative", "needs-action"}
PARTICIPANT_REQUIRED = {"required", "optional", "information-only"}
SLOT_STATUS = {"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"}
BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
               "history", "searchset", "collection"}
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
CONTACT_POINT_SYSTEM = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def coded(resource):
    """Every coded value teletip emits, with the value set it must belong to."""
    kind = resource["resourceType"]
    if kind == "Appointment":
        yield "status", resource.get("status"), APPOINTMENT_STATUS
        for p in resource.get("participant", []):
            yield "participant.status", p.get("status"), PARTICIPATION_STATUS
            if "required" in p:
                yield "participant.required", p["required"], PARTICIPANT_REQUIRED
    elif kind == "Slot":
        yield "status", resource.get("status"), SLOT_STATUS
    elif kind == "Bundle":
        yield "type", resource.get("type"), BUNDLE_TYPE
    elif kind == "OperationOutcome":
        for i in resource.get("issue", []):
            yield "issue.severity", i.get("severity"), ISSUE_SEVERITY
    elif kind == "Patient":
        for t in resource.get("telecom", []):
            yield "telecom.system", t.get("system"), CONTACT_POINT_SYSTEM


def validate(resource):
    kind = resource.get("resourceType")
    if kind not in MODELS:
        raise ValueError(f"unexpected resourceType {kind!r}")
    module = importlib.import_module(f"fhir.resources.R4B.{MODELS[kind]}")
    getattr(module, kind).model_validate(resource)
    for path, value, allowed in coded(resource):
        if value not in allowed:
            raise ValueError(f"{kind}.{path} = {value!r} is not in its R4 value set")
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            validate(entry["resource"])


def main(paths):
    failed = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        try:
            validate(resource)
            print(f"valid   {path} ({resource['resourceType']})")
        except Exception as e:  # every failure is reported, then the exit code says it
            failed += 1
            print(f"INVALID {path}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
