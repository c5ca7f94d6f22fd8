//! The OpenAPI description's frame and finish: what the capability modules' routes do not
//! say themselves (title, tags, the bearer scheme) and the problems every operation shares.

use utoipa::openapi::OpenApi as Description;
use utoipa::{Modify, OpenApi};

/// An empty description with the title, tags and shared schemas, for the routes to fill.
pub fn frame() -> Description {
    ApiDoc::openapi()
}

/// Completes a description filled by the routes: the problems each operation can answer
/// (`rate_limited`: the paths behind a rate limit), then the pretty JSON that is served and
/// kept in docs/openapi.json.
pub fn finish(mut description: Description, rate_limited: &[String]) -> String {
    CommonProblems { rate_limited }.modify(&mut description);
    description.to_pretty_json().expect("the OpenAPI document serialises")
}

/// What the description says beyond its paths: the title, the tags, the shared schemas and
/// the bearer scheme. The paths come from the capability modules' routers (`app.rs`).
#[derive(OpenApi)]
#[openapi(
    info(title = "teletip-control", description = "Control plane of teletip: accounts, sessions, ICE credentials for teletip-relay, audit trail."),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "auth", description = "Login, sessions"), (name = "users", description = "Accounts"),
         (name = "ice", description = "Relay credentials"),
         (name = "relays", description = "Relay nodes: registry, load, drain"), (name = "audit", description = "Audit trail"),
         (name = "scheduling", description = "Practitioners, patients, appointments"),
         (name = "privacy", description = "KVKK / HIPAA: notices, consents, export, erasure, retention"),
         (name = "residency", description = "Data residency: practices, data regions, transfer bases"),
         (name = "ops", description = "Health"),
         (name = "notifications", description = "Webhook deliveries: dead letters and replay; Web Push subscriptions"),
         (name = "fhir", description = "FHIR R4 façade: reads and searches (application/fhir+json; errors are OperationOutcomes)"))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The problems every operation can answer, added to every `#[utoipa::path]` by what the
/// operation has, so that no route's description forgets one: the extractors and middleware
/// that produce them are shared (`problem.rs`, `auth/extract.rs`, the rate-limit layers), so
/// the description of them is shared too. Every 4xx and 5xx is `application/problem+json`
/// (RFC 9457, section 3) with the `Problem` schema, whatever the annotation said.
struct CommonProblems<'a> {
    /// The paths behind a rate limit (`app.rs`): 429 is theirs alone.
    rate_limited: &'a [String],
}

impl utoipa::Modify for CommonProblems<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            // The FHIR routes answer OperationOutcomes (application/fhir+json), which their own
            // descriptions state.
            if path.starts_with("/fhir/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let params = operation.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let in_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_string()).or_insert_with(|| problem_response(description).into());
                };
                if in_path || in_query || body {
                    // ApiPath: a path segment of the wrong type; handlers: a query that
                    // contradicts itself; ApiJson: malformed JSON.
                    add(
                        "400",
                        "Malformed request: a path segment of the wrong type, malformed JSON, or contradictory parameters",
                    );
                }
                if in_path {
                    add("404", "No such resource (or not visible to the caller)");
                }
                if in_query || body {
                    // ApiQuery and ApiJson: the request parses but does not fit the schema.
                    add("422", "Invalid request content: `errors` names each field and why");
                }
                if body {
                    add("413", "The body is larger than `max-body-bytes`");
                    add("415", "The body is not sent as `application/json`");
                }
                if secured {
                    add("401", "Authentication required: no bearer token, or an expired, revoked or forged one");
                }
                if self.rate_limited.contains(path) {
                    add("429", "Too many requests from this address or account");
                }
                for (status, response) in responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response {
                        if status.starts_with('4') || status.starts_with('5') {
                            let description = std::mem::take(&mut response.description);
                            let headers = std::mem::take(&mut response.headers);
                            *response = problem_response(&description);
                            response.headers.extend(headers);
                        }
                        if status == "401" {
                            // problem.rs sets it on every 401 (RFC 6750, section 3).
                            response.headers.insert(
                                "WWW-Authenticate".into(),
                                utoipa::openapi::header::HeaderBuilder::new()
                                    .schema(
                                        utoipa::openapi::ObjectBuilder::new()
                                            .schema_type(utoipa::openapi::Type::String),
                                    )
                                    .description(Some("`Bearer`"))
                                    .build(),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// An `application/problem+json` response with the shared `Problem` schema.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    let description = if description.is_empty() { "Problem details (RFC 9457)" } else { description };
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            utoipa::openapi::content::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
