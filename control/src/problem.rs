//! RFC 9457 problem details for every 4xx and 5xx, each carrying the request id so that a user
//! report can be matched to the server's log. Database errors are logged, never shown.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the whole request.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// The body of an `application/problem+json` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the problem type, relative to the service (see docs/control-api.md).
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For validation problems: which field was wrong and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every error an API handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Validation { detail: String, errors: Vec<FieldError> },
    /// 422: well-formed, but a rule of the service refuses it; `slug` names the rule in the
    /// problem type (`/problems/<slug>`), the detail names the rule and its limit.
    #[error("{detail}")]
    RuleRefused { slug: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests,
    /// 429 with a `Retry-After` (RFC 9110 section 10.2.3) in whole seconds.
    #[error("{detail}")]
    RetryLater { detail: String, retry_after_seconds: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// 503 with a `Retry-After` in whole seconds: the server is saturated (a full write
    /// queue), not the client.
    #[error("{detail}")]
    Overloaded { detail: String, retry_after_seconds: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    /// 401: the password was right, and the account's second factor is needed as well.
    #[error("{0}")]
    MfaRequired(String),
    /// 403: the session may only enroll a second factor (`auth.mfa-required-roles`).
    #[error("{0}")]
    MfaEnrollmentRequired(String),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::Validation {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field: field.into(), message }],
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request content"),
            ApiError::RuleRefused { slug, .. } => (StatusCode::UNPROCESSABLE_ENTITY, slug, "Refused by a rule"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::TooManyRequests | ApiError::RetryLater { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            }
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
            ApiError::MfaRequired(_) => (StatusCode::UNAUTHORIZED, "mfa-required", "One-time code required"),
            ApiError::MfaEnrollmentRequired(_) => {
                (StatusCode::FORBIDDEN, "mfa-enrollment-required", "Two-factor enrollment required")
            }
        }
    }
}

impl From<crate::domain::booking::BookingRefusal> for ApiError {
    fn from(refusal: crate::domain::booking::BookingRefusal) -> Self {
        ApiError::RuleRefused { slug: refusal.slug(), detail: refusal.to_string() }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict => ApiError::Conflict("already exists".into()),
            crate::store::StoreError::LastAdmin => ApiError::Conflict(
                "this change would leave no enabled admin; make another account an admin first".into(),
            ),
            crate::store::StoreError::DoubleBooking => {
                ApiError::Conflict("the practitioner is already booked at that time".into())
            }
            crate::store::StoreError::Busy => ApiError::Overloaded {
                detail: "too many requests are waiting for the database; try again shortly".into(),
                retry_after_seconds: 1,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let request_id = current_request_id();
        let retry_after = match &self {
            ApiError::RetryLater { retry_after_seconds, .. } | ApiError::Overloaded { retry_after_seconds, .. } => {
                Some(*retry_after_seconds)
            }
            _ => None,
        };
        let (detail, errors) = match self {
            ApiError::Internal(cause) => {
                // The cause stays in the log, under the id the client is given.
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), %cause, "internal error");
                (
                    Some("the server could not complete the request; quote the request id when reporting it".into()),
                    vec![],
                )
            }
            ApiError::Validation { detail, errors } => (Some(detail), errors),
            ApiError::NotFound | ApiError::TooManyRequests => (None, vec![]),
            ApiError::BadRequest(d)
            | ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::Conflict(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::Unavailable(d)
            | ApiError::MfaRequired(d)
            | ApiError::MfaEnrollmentRequired(d)
            | ApiError::RetryLater { detail: d, .. }
            | ApiError::Overloaded { detail: d, .. }
            | ApiError::RuleRefused { detail: d, .. } => (Some(d), vec![]),
        };
        let body = Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            request_id,
            errors,
        };
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `Json<T>` whose rejections are problems: malformed JSON 400, a body that does not match the
/// schema (unknown fields included) 422, wrong content type 415, too large 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(
            |e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge("the body is larger than this endpoint accepts".into())
                }
                _ => ApiError::BadRequest(e.body_text()),
            },
        )?;
        // serde also reads a struct from a JSON array (its fields by position); every body of
        // this API is an object.
        let array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        match Json::<T>::from_request(Request::from_parts(parts, axum::body::Body::from(bytes)), state).await {
            Ok(_) if array => Err(ApiError::field("body", "must be a JSON object")),
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field ("unknown field `x`, expected one of …").
            let message = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            ApiError::Validation { detail: message.clone(), errors: vec![FieldError { field: "body".into(), message }] }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!("malformed JSON: {}", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the body is larger than this endpoint accepts".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// A JSON body that may be absent (an empty body means "all defaults"); present, it is held
/// to the same rules as [`ApiJson`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v == "0")
            || (req.headers().get(header::CONTENT_TYPE).is_none()
                && req.headers().get(header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OptionalJson(None));
        }
        // A JSON `null` is the absent body too: the description says the body is optional,
        // and OpenAPI clients send `null` for an optional body they leave out.
        ApiJson::<Option<T>>::from_request(req, state).await.map(|ApiJson(v)| OptionalJson(v))
    }
}

/// `Path<T>` with problem rejections (a malformed id is a 400, not a plain-text error).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::BadRequest(e.body_text())),
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// `Query<T>` with problem rejections; unknown parameters are refused like unknown fields.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::field("query", e.body_text())),
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `deserialize_with` for an optional integer field that must lie in `MIN..=MAX`: the range
/// the field's `#[param]`/`#[schema]` `minimum`/`maximum` describe, refused while the query or
/// body is extracted (ApiQuery, ApiJson: a 422 naming the field), so that the description and
/// the server cannot disagree about it.
pub fn in_range<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Copy + Into<i128>,
{
    let v = Option::<T>::deserialize(d)?;
    match v {
        Some(x) if !(i128::from(MIN)..=i128::from(MAX)).contains(&x.into()) => {
            Err(serde::de::Error::custom(format!("must be between {MIN} and {MAX}")))
        }
        _ => Ok(v),
    }
}

/// An integer as JSON Schema counts them (JSON Schema 2020-12 core, section 4.2.2: a number
/// with a zero fractional part is an integer, so `30.0` is 30), for JSON bodies, whose serde
/// types would refuse `30.0`. Strings stay refused: `"30"` is not an integer.
struct Whole(i128);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Whole, E> {
                // Beyond 2^53 a double no longer says which integer it is.
                if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
                    Ok(Whole(v as i128))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `deserialize_with` for an integer in a JSON body: `30` or `30.0` (see [`Whole`]).
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    let Whole(v) = Whole::deserialize(d)?;
    T::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is out of range")))
}

/// `deserialize_with` for an optional integer in a JSON body that must lie in `MIN..=MAX`, as
/// its `#[schema(minimum, maximum)]` says; `30.0` counts as 30 (see [`Whole`]).
pub fn whole_in_range<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    match Option::<Whole>::deserialize(d)? {
        None => Ok(None),
        Some(Whole(v)) if (i128::from(MIN)..=i128::from(MAX)).contains(&v) => {
            T::try_from(v).map(Some).map_err(|_| serde::de::Error::custom(format!("{v} is out of range")))
        }
        Some(_) => Err(serde::de::Error::custom(format!("must be between {MIN} and {MAX}"))),
    }
}
