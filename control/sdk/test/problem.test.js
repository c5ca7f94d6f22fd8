import { test } from "node:test";
import assert from "node:assert/strict";
import { problemFromAnswer, ApiError } from "../dist/index.js";

test("a problem document becomes an ApiError with type, kind, status, title, detail, request id and field errors", () => {
  const body = JSON.stringify({
    type: "/problems/validation",
    title: "Invalid request content",
    status: 422,
    detail: "email: must be an e-mail address",
    requestId: "b6eba7d7-26e8-43c3-b42b-ad9fd90be283",
    errors: [{ field: "email", message: "must be an e-mail address" }, { nonsense: true }],
  });
  const e = problemFromAnswer(422, body, "header-id");
  assert.ok(e instanceof ApiError);
  assert.equal(e.type, "/problems/validation");
  assert.equal(e.kind, "validation");
  assert.equal(e.status, 422);
  assert.equal(e.title, "Invalid request content");
  assert.equal(e.detail, "email: must be an e-mail address");
  assert.equal(e.requestId, "b6eba7d7-26e8-43c3-b42b-ad9fd90be283");
  assert.deepEqual(e.fieldErrors, [{ field: "email", message: "must be an e-mail address" }]);
  assert.equal(e.message, "Invalid request content: email: must be an e-mail address");
});

test("an answer that is not a problem document (a proxy's HTML page, an empty body) still gives a typed error", () => {
  const html = problemFromAnswer(502, "<html>Bad Gateway</html>", "req-7");
  assert.equal(html.status, 502);
  assert.equal(html.type, "/problems/http-502");
  assert.equal(html.title, "HTTP 502");
  assert.equal(html.detail, null);
  assert.equal(html.requestId, "req-7", "the X-Request-Id header stands in for the body's");
  const empty = problemFromAnswer(404, "", null);
  assert.equal(empty.kind, "http-404");
  assert.equal(empty.requestId, null);
  const array = problemFromAnswer(400, "[1,2]", null);
  assert.equal(array.title, "HTTP 400");
});
