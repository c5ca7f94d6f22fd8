//! Scheduling persistence on both engines: the schema itself refuses double booking, under
//! concurrency, for new appointments and for reschedules; statuses move only from what they
//! were; idempotency keys are unique per creator; an expired proposal is cancelled, audited and
//! queued for notification once, however many sweeps race for it.

mod support;

use std::sync::Arc;
use support::{engines, fresh_database};
use teletip_control::store::{
    self, Appointment, AppointmentFilter, AppointmentStatus, DynStore, NewAuditEvent, NewOutboxEntry, NewUser,
    PatientRecord, Practitioner, Role, StoreError,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

struct Fixture {
    store: DynStore,
    creator: Uuid,
    practitioner: Uuid,
    patient: Uuid,
}

async fn fixture(engine: support::Engine, dir: &std::path::Path) -> Fixture {
    let store = store::open(&fresh_database(engine, dir).await).await.unwrap();
    store.migrate().await.unwrap();
    let now = teletip_control::clock::now();
    let creator = store
        .create_user(
            NewUser {
                email: "desk@hospital.test".into(),
                display_name: "Desk".into(),
                role: Role::Admin,
                password_hash: "x".into(),
            },
            now,
        )
        .await
        .unwrap()
        .id;
    let practitioner = store
        .create_practitioner(Practitioner {
            id: Uuid::new_v4(),
            user_id: None,
            display_name: "Dr. Elif Kaya".into(),
            specialty: "cardiology".into(),
            time_zone: "Europe/Istanbul".into(),
            practice_id: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap()
        .id;
    let patient = store
        .create_patient(
            PatientRecord {
                id: Uuid::new_v4(),
                user_id: None,
                display_name: "A. Patient".into(),
                birth_date: Some(time::macros::date!(1980 - 02 - 29)),
                national_id_enc: Some("v1:k1:opaque".into()),
                national_id_index: Some("idx".into()),
                phone_enc: None,
                phone_index: None,
                email_enc: None,
                email_index: None,
                notes_enc: None,
                anonymized_at: None,
                retain_until: None,
                data_region: None,
                created_at: now,
                updated_at: now,
            },
            ev("patient.create"),
        )
        .await
        .unwrap()
        .id;
    Fixture { store, creator, practitioner, patient }
}

/// The audit event a health-data write commits with (the store requires one).
fn ev(action: &str) -> NewAuditEvent {
    NewAuditEvent {
        at: teletip_control::clock::now(),
        actor: None,
        action: action.into(),
        target: None,
        outcome: "success".into(),
        source_ip: None,
        request_id: None,
    }
}

fn appointment(f: &Fixture, start: OffsetDateTime, minutes: i64, key: Option<&str>) -> Appointment {
    let now = teletip_control::clock::now();
    Appointment {
        id: Uuid::new_v4(),
        practitioner_id: f.practitioner,
        patient_id: f.patient,
        starts_at: start,
        ends_at: start + Duration::minutes(minutes),
        status: AppointmentStatus::Booked,
        cancel_reason: None,
        created_by: f.creator,
        idempotency_key: key.map(str::to_owned),
        created_at: now,
        updated_at: now,
        patient_confirmed_at: None,
    }
}

const TEN: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_of_one_slot_give_exactly_one() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(fixture(engine, dir.path()).await);
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (f, barrier) = (f.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    f.store.create_appointment(appointment(&f, TEN, 30, None), ev("appointment.create")).await
                })
            })
            .collect();
        let mut booked = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => booked += 1,
                Err(StoreError::DoubleBooking) => refused += 1,
                Err(other) => panic!("{engine:?}: unexpected {other}"),
            }
        }
        assert_eq!((booked, refused), (1, 49), "{engine:?}");
        let live = f
            .store
            .list_appointments(&AppointmentFilter {
                practitioner_id: Some(f.practitioner),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(live.len(), 1, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlaps_are_refused_adjacent_and_released_times_are_not() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(engine, dir.path()).await;
        let first = f.store.create_appointment(appointment(&f, TEN, 30, None), ev("appointment.create")).await.unwrap();
        for (start, minutes, what) in [
            (TEN + Duration::minutes(15), 30, "overlapping end"),
            (TEN - Duration::minutes(10), 20, "overlapping start"),
            (TEN + Duration::minutes(5), 10, "inside"),
        ] {
            let r = f.store.create_appointment(appointment(&f, start, minutes, None), ev("appointment.create")).await;
            assert!(matches!(r, Err(StoreError::DoubleBooking)), "{engine:?} {what}: {r:?}");
        }
        let next = f
            .store
            .create_appointment(appointment(&f, TEN + Duration::minutes(30), 30, None), ev("appointment.create"))
            .await
            .expect("adjacent slot");
        // A proposed appointment does not hold time.
        let mut proposal = appointment(&f, TEN, 30, None);
        proposal.status = AppointmentStatus::Proposed;
        f.store.create_appointment(proposal, ev("appointment.create")).await.expect("proposals do not hold time");

        // Rescheduling into an occupied slot is refused by the schema too.
        let moved = f
            .store
            .transition_appointment(
                next.id,
                AppointmentStatus::Booked,
                AppointmentStatus::Booked,
                Some((TEN + Duration::minutes(20), TEN + Duration::minutes(50))),
                None,
                teletip_control::clock::now(),
                ev("appointment.reschedule"),
            )
            .await;
        assert!(matches!(moved, Err(StoreError::DoubleBooking)), "{engine:?}: {moved:?}");

        // Cancelling frees the time.
        let now = teletip_control::clock::now();
        let cancelled = f
            .store
            .transition_appointment(
                first.id,
                AppointmentStatus::Booked,
                AppointmentStatus::Cancelled,
                None,
                Some("patient request".into()),
                now,
                ev("appointment.cancel"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (cancelled.status, cancelled.cancel_reason.as_deref()),
            (AppointmentStatus::Cancelled, Some("patient request"))
        );
        f.store
            .create_appointment(appointment(&f, TEN, 30, None), ev("appointment.create"))
            .await
            .expect("the cancelled slot is free again");

        // A transition from a status the appointment is no longer in does nothing.
        let stale = f
            .store
            .transition_appointment(
                first.id,
                AppointmentStatus::Booked,
                AppointmentStatus::Arrived,
                None,
                None,
                now,
                ev("x"),
            )
            .await
            .unwrap();
        assert!(stale.is_none(), "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_are_unique_per_creator_and_times_round_trip() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(engine, dir.path()).await;
        let start = datetime!(2026-12-02 09:00:00.123456 UTC);
        let a = f
            .store
            .create_appointment(appointment(&f, start, 30, Some("booking-1")), ev("appointment.create"))
            .await
            .unwrap();
        let again = f
            .store
            .create_appointment(
                appointment(&f, start + Duration::hours(2), 30, Some("booking-1")),
                ev("appointment.create"),
            )
            .await;
        assert!(matches!(again, Err(StoreError::Conflict)), "{engine:?}: {again:?}");
        let found = f.store.appointment_by_idempotency_key(f.creator, "booking-1").await.unwrap().unwrap();
        assert_eq!(found, a, "{engine:?}: read back exactly as written");
        assert_eq!(f.store.appointment(a.id).await.unwrap().unwrap().starts_at, start);
        let patient = f.store.patient(f.patient).await.unwrap().unwrap();
        assert_eq!(patient.birth_date, Some(time::macros::date!(1980 - 02 - 29)));
        assert_eq!(patient.national_id_enc.as_deref(), Some("v1:k1:opaque"));
        let p = f.store.practitioner(f.practitioner).await.unwrap().unwrap();
        assert_eq!(p.time_zone, "Europe/Istanbul");
        let by_status = f
            .store
            .list_appointments(&AppointmentFilter {
                status: Some(AppointmentStatus::Booked),
                patient_id: Some(f.patient),
                from: Some(start),
                to: Some(start + Duration::minutes(1)),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_status.len(), 1, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proposal_expires_once_with_its_notification_however_many_sweeps_race() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(fixture(engine, dir.path()).await);
        let mut pending = appointment(&f, TEN, 30, None);
        pending.status = AppointmentStatus::Pending;
        let pending = f.store.create_appointment(pending, ev("appointment.create")).await.unwrap();
        let now = teletip_control::clock::now();
        let open = f.store.open_proposals(now, now, None, 10).await.unwrap();
        assert_eq!(open.len(), 1, "{engine:?}");
        assert_eq!((open[0].appointment.id, open[0].practice_expiry_hours), (pending.id, None), "{engine:?}");

        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (f, barrier, id) = (f.clone(), barrier.clone(), pending.id);
                tokio::spawn(async move {
                    let notify = |a: &Appointment| {
                        vec![NewOutboxEntry {
                            event_id: a.id,
                            kind: "appointment.cancelled".into(),
                            appointment_id: a.id,
                            occurrence: String::new(),
                            endpoint: "crm".into(),
                            payload: format!("{{\"status\":\"{}\"}}", a.status.as_str()),
                            now: teletip_control::clock::now(),
                        }]
                    };
                    barrier.wait().await;
                    let at = teletip_control::clock::now();
                    f.store
                        .expire_proposal(
                            id,
                            AppointmentStatus::Pending,
                            "expired",
                            at,
                            ev("appointment.cancel"),
                            &notify,
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut expired = Vec::new();
        for t in tasks {
            expired.extend(t.await.unwrap());
        }
        assert_eq!(expired.len(), 1, "{engine:?}: one sweep wins");
        assert_eq!(
            (expired[0].status, expired[0].cancel_reason.as_deref()),
            (AppointmentStatus::Cancelled, Some("expired")),
            "{engine:?}"
        );
        assert_eq!(f.store.notification_depth().await.unwrap().pending, 1, "{engine:?}: queued once");
        assert!(f.store.open_proposals(now, now, None, 10).await.unwrap().is_empty(), "{engine:?}");
        // A confirmation that comes too late finds it cancelled; its time is free.
        let late = f
            .store
            .transition_appointment(
                pending.id,
                AppointmentStatus::Pending,
                AppointmentStatus::Booked,
                None,
                None,
                now,
                ev("appointment.confirm"),
            )
            .await
            .unwrap();
        assert!(late.is_none(), "{engine:?}");
        f.store.create_appointment(appointment(&f, TEN, 30, None), ev("appointment.create")).await.unwrap();
    }
}
