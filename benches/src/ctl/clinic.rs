//! The accounts and appointments a scenario needs, made over the control plane's API as an
//! operator would (control/tests/support/clinic.rs and tests/signaling/lib/clinic.js do the
//! same): an admin (created beforehand with `teletip-control user add`), practitioners and
//! patients with accounts and records, appointments booked by the admin.

use std::net::SocketAddr;

use hyper::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Error;
use super::http::Conn;

pub const PASSWORD: &str = "a long enough passphrase for the bench";

pub struct Clinic {
    pub conn: Conn,
    pub admin: String,
    /// Makes e-mail addresses unique across runs on one database.
    run: String,
    made: u64,
}

pub struct Person {
    pub email: String,
    pub user_id: String,
    pub token: String,
    /// The practitioner or patient record's id.
    pub record_id: String,
}

impl Clinic {
    pub async fn open(addr: SocketAddr, admin_email: &str, admin_password: &str) -> Result<Clinic, Error> {
        let mut conn = Conn::open(addr).await?;
        let admin = login(&mut conn, admin_email, admin_password).await?;
        let run = format!("{:x}", OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 & 0xffff_ffff);
        Ok(Clinic { conn, admin, run, made: 0 })
    }

    async fn user(&mut self, role: &str) -> Result<(String, String, String), Error> {
        self.made += 1;
        let email = format!("{role}-{}-{}@bench.teletip.test", self.run, self.made);
        let body = json!({"email": email, "displayName": format!("Bench {role} {}", self.made), "role": role, "password": PASSWORD});
        let u = self.conn.must(Method::POST, "/v1/users", Some(&self.admin), Some(&body)).await?;
        let token = login(&mut self.conn, &email, PASSWORD).await?;
        Ok((email, str_field(&u, "id")?, token))
    }

    pub async fn practitioner(&mut self) -> Result<Person, Error> {
        let (email, user_id, token) = self.user("practitioner").await?;
        let body = json!({"displayName": "Dr. Bench", "specialty": "cardiology", "timeZone": "Europe/Istanbul", "userId": user_id});
        let p = self.conn.must(Method::POST, "/v1/practitioners", Some(&self.admin), Some(&body)).await?;
        let record_id = str_field(&p, "id")?;
        // A practitioner without a working pattern is not bookable at all: every minute of
        // every day, as control/tests/support/clinic.rs's `all_hours` gives its test doctors.
        let path = format!("/v1/practitioners/{record_id}/availability");
        self.conn.must(Method::PUT, &path, Some(&self.admin), Some(&all_hours())).await?;
        Ok(Person { email, user_id, token, record_id })
    }

    pub async fn patient(&mut self) -> Result<Person, Error> {
        let (email, user_id, token) = self.user("patient").await?;
        let body = json!({"displayName": "Bench Patient", "userId": user_id});
        let p = self.conn.must(Method::POST, "/v1/patients", Some(&token), Some(&body)).await?;
        Ok(Person { email, user_id, token, record_id: str_field(&p, "id")? })
    }

    /// An appointment booked by the admin from `start` for `minutes`; its id.
    pub async fn appointment(
        &mut self,
        practitioner: &Person,
        patient: &Person,
        start: OffsetDateTime,
        minutes: i64,
    ) -> Result<String, Error> {
        let body = booking(&practitioner.record_id, &patient.record_id, start, minutes);
        let a = self.conn.must(Method::POST, "/v1/appointments", Some(&self.admin), Some(&body)).await?;
        str_field(&a, "id")
    }
}

/// Extra hours from 2000 to 2100 in 10-minute slots, offset by 0 to 9 minutes: a booking that
/// starts on any whole minute and lasts a multiple of 10 minutes is a run of slots.
fn all_hours() -> Value {
    let exceptions: Vec<Value> = (0..10)
        .map(|m| {
            json!({"kind": "extraHours", "from": format!("2000-01-01T00:{m:02}:00Z"), "to": "2100-01-01T00:00:00Z", "slotMinutes": 10})
        })
        .collect();
    json!({"rules": [], "exceptions": exceptions})
}

/// The body of `POST /v1/appointments`.
pub fn booking(practitioner: &str, patient: &str, start: OffsetDateTime, minutes: i64) -> Value {
    let end = start + time::Duration::minutes(minutes);
    json!({"practitionerId": practitioner, "patientId": patient, "start": rfc3339(start), "end": rfc3339(end)})
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).expect("0 is a valid nanosecond").format(&Rfc3339).expect("a UTC time formats")
}

/// Whole minutes, UTC: `now` rounded down.
pub fn this_minute() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - time::Duration::seconds(now.second() as i64) - time::Duration::nanoseconds(now.nanosecond() as i64)
}

pub async fn login(conn: &mut Conn, email: &str, password: &str) -> Result<String, Error> {
    let body = json!({"email": email, "password": password});
    let r = conn.must(Method::POST, "/v1/auth/login", None, Some(&body)).await?;
    str_field(&r, "accessToken")
}

pub fn str_field(v: &Value, name: &str) -> Result<String, Error> {
    v.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| Error::Protocol(format!("no {name} in {v}")))
}
