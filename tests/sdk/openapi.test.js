// The SDK's hand-written API types (control/sdk/src/types.ts) against the served description
// (docs/openapi.json, which control/tests/api.rs keeps equal to what the server serves): every
// field on both sides, the same optionality, the same enum values. A server change that the
// SDK has not followed fails here.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../signaling/lib/env.js";

const ts = createRequire(join(ROOT, "control", "sdk", "package.json"))("typescript");
const openapi = JSON.parse(readFileSync(join(ROOT, "docs", "openapi.json"), "utf8"));
const schemas = openapi.components.schemas;
const source = ts.createSourceFile("types.ts", readFileSync(join(ROOT, "control", "sdk", "src", "types.ts"), "utf8"), ts.ScriptTarget.ES2022, true);

/** SDK interface → OpenAPI schema. */
const OBJECTS = {
  User: "UserView",
  TokenResponse: "TokenResponse",
  Appointment: "AppointmentView",
  BookAppointment: "BookAppointment",
  StatusChange: "StatusChange",
  Consent: "ConsentView",
  ConsentState: "ConsentState",
  RecordConsent: "RecordConsent",
  PrivacyNotice: "NoticeView",
  NoticePurpose: "NoticePurpose",
  IceServer: "IceServer",
  IceConfig: "IceResponse",
  IceRequest: "IceRequest",
  ConsultationSession: "ConsultationSession",
  JoinWindowRule: "JoinWindowRule",
};
const ENUMS = { Role: "Role", AppointmentStatus: "AppointmentStatus", ConsentDecision: "ConsentDecision" };

function declarations() {
  const interfaces = new Map();
  const unions = new Map();
  for (const node of source.statements) {
    if (ts.isInterfaceDeclaration(node)) {
      const fields = new Map();
      for (const m of node.members) if (ts.isPropertySignature(m)) fields.set(m.name.getText(source), { optional: !!m.questionToken });
      interfaces.set(node.name.text, fields);
    }
    if (ts.isTypeAliasDeclaration(node) && ts.isUnionTypeNode(node.type)) {
      unions.set(
        node.name.text,
        node.type.types.map((t) => t.literal.text),
      );
    }
  }
  return { interfaces, unions };
}

test("every SDK API type has exactly the fields of its OpenAPI schema, with the same optionality", () => {
  const { interfaces } = declarations();
  for (const [iface, schemaName] of Object.entries(OBJECTS)) {
    const fields = interfaces.get(iface);
    assert.ok(fields, `types.ts has no interface ${iface}`);
    const schema = schemas[schemaName];
    assert.ok(schema, `openapi.json has no schema ${schemaName}`);
    const required = new Set(schema.required || []);
    assert.deepEqual([...fields.keys()].sort(), Object.keys(schema.properties).sort(), `${iface} vs ${schemaName}: fields`);
    for (const [name, { optional }] of fields) {
      assert.equal(optional, !required.has(name), `${iface}.${name}: optional in the SDK must mean not required in ${schemaName}`);
    }
  }
});

test("the SDK's enums have the values of the OpenAPI enums", () => {
  const { unions } = declarations();
  for (const [alias, schemaName] of Object.entries(ENUMS)) {
    assert.deepEqual([...unions.get(alias)].sort(), [...schemas[schemaName].enum].sort(), alias);
  }
  const actions = /\^\((.*)\)\$/.exec(openapi.paths["/v1/appointments/{id}/{action}"].post.parameters.find((p) => p.name === "action").schema.pattern)[1].split("|");
  assert.deepEqual([...unions.get("AppointmentAction")].sort(), actions.sort(), "AppointmentAction");
});
