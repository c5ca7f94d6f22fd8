//! The store's contract, checked against real databases: every test runs on SQLite (always)
//! and on PostgreSQL (when `TELETIP_TEST_DATABASE_URL` is set, see `.ci/with-postgres`), each
//! time on a fresh, migrated database. Failures name the engine they happened on.

mod support;

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use sqlx::Connection;
use support::{Engine, engines, fresh_database};
use teletip_control::audit::chain::{ChainVerification, verify_chain};
use teletip_control::clock;
use teletip_control::store::{
    self, AuditEvent, AuditFilter, DynStore, IssuedTurnSession, LoginThrottle, NewAuditEvent, NewUser, RefreshToken,
    RevokedTurnSession, Role, Session, StoreError, ThrottlePolicy, TurnRevocation, TurnSessionScope, User, UserChanges,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

/// One engine's fresh, migrated database.
struct Ctx {
    engine: Engine,
    url: String,
    store: DynStore,
}

impl Ctx {
    /// Runs one statement directly through sqlx on the same database, bypassing the store.
    async fn sql(&self, statement: &str) -> Result<u64, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
                let done = sqlx::query(statement).execute(&mut conn).await?;
                conn.close().await?;
                Ok(done.rows_affected())
            }
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                let done = sqlx::query(statement).execute(&mut conn).await?;
                conn.close().await?;
                Ok(done.rows_affected())
            }
        }
    }

    /// Lets UPDATEs of audit_events through (SQLite: drops the trigger; PostgreSQL: disables
    /// the user triggers, as the superuser the test URL connects as).
    async fn bypass_audit_update_guard(&self) -> TestResult {
        match self.engine {
            Engine::Sqlite => self.sql("DROP TRIGGER audit_events_no_update").await?,
            Engine::Postgres => self.sql("ALTER TABLE audit_events DISABLE TRIGGER USER").await?,
        };
        Ok(())
    }

    /// Lets DELETEs of audit_events through.
    async fn bypass_audit_delete_guard(&self) -> TestResult {
        match self.engine {
            Engine::Sqlite => self.sql("DROP TRIGGER audit_events_no_delete").await?,
            Engine::Postgres => self.sql("ALTER TABLE audit_events DISABLE TRIGGER USER").await?,
        };
        Ok(())
    }
}

/// Runs `test` once per engine, each time on a fresh database, and labels any failure (an
/// error or a panic) with the engine.
async fn each_engine<F, Fut>(test: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    for engine in engines() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = fresh_database(engine, dir.path()).await;
        let store = store::open(&url).await.unwrap_or_else(|e| panic!("[{engine:?}] open {url}: {e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("[{engine:?}] migrate: {e}"));
        let ctx = Ctx { engine, url, store };
        // The directory outlives the test (the body may capture only some fields of `ctx`).
        let outcome = tokio::spawn(test(ctx)).await;
        drop(dir);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("[{engine:?}] test failed: {e:#}"),
            Err(join) => {
                let payload = join.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic)".into());
                panic!("[{engine:?}] test panicked: {message}");
            }
        }
    }
}

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        display_name: format!("Name of {email}"),
        role,
        password_hash: format!("$argon2id$hash-of-{email}"),
    }
}

fn new_session(user_id: Uuid, now: OffsetDateTime) -> Session {
    Session {
        id: Uuid::new_v4(),
        user_id,
        created_at: now,
        expires_at: now + Duration::days(30),
        revoked_at: None,
        revoked_reason: None,
    }
}

fn new_token(session_id: Uuid, now: OffsetDateTime) -> RefreshToken {
    RefreshToken {
        id: Uuid::new_v4(),
        session_id,
        token_hash: Uuid::new_v4().as_bytes().repeat(2),
        created_at: now,
        expires_at: now + Duration::days(30),
        used_at: None,
    }
}

fn event(action: &str, actor: Option<Uuid>, at: OffsetDateTime) -> NewAuditEvent {
    NewAuditEvent {
        at,
        actor,
        action: action.into(),
        target: Some(format!("target-of-{action}")),
        outcome: "success".into(),
        source_ip: Some("192.0.2.7".into()),
        request_id: Some(Uuid::new_v4().to_string()),
    }
}

fn ids(users: &[User]) -> Vec<Uuid> {
    users.iter().map(|u| u.id).collect()
}

fn seqs(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

fn assert_same_user(a: &User, b: &User) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.email, b.email);
    assert_eq!(a.display_name, b.display_name);
    assert_eq!(a.role, b.role);
    assert_eq!(a.password_hash, b.password_hash);
    assert_eq!(a.disabled, b.disabled);
    assert_eq!(a.failed_logins, b.failed_logins);
    assert_eq!(a.locked_until, b.locked_until);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

fn assert_same_token(a: &RefreshToken, b: &RefreshToken) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.session_id, b.session_id);
    assert_eq!(a.token_hash, b.token_hash);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.expires_at, b.expires_at);
    assert_eq!(a.used_at, b.used_at);
}

fn assert_same_session(a: &Session, b: &Session) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.user_id, b.user_id);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.expires_at, b.expires_at);
    assert_eq!(a.revoked_at, b.revoked_at);
    assert_eq!(a.revoked_reason, b.revoked_reason);
}

fn verified(n: i64) -> ChainVerification {
    ChainVerification { verified: true, events_checked: n, first_broken_seq: None }
}

// ---------------------------------------------------------------------------------------
// Basics
// ---------------------------------------------------------------------------------------

/// Databases written before the store's queries were shared keep reading back: SQLite keeps
/// timestamps as INTEGER microseconds, dates as TEXT and UUIDs as 16-byte BLOBs; PostgreSQL as
/// timestamptz, date and uuid. Rows written in those formats by hand read back exactly, and the
/// store still writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_formats_are_kept() {
    each_engine(|c| async move {
        let id = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let patient = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let at = datetime!(2026-12-04 10:26:40.123456 UTC);
        match c.engine {
            Engine::Sqlite => {
                c.sql(
                    "INSERT INTO users (id, email, display_name, role, password_hash, disabled, created_at, updated_at)
                     VALUES (X'00112233445566778899aabbccddeeff', 'legacy@example.test', 'Legacy', 'patient', 'x', 1,
                             1796380000123456, 1796380000123456)",
                )
                .await?;
                c.sql(
                    "INSERT INTO patients (id, display_name, birth_date, created_at, updated_at)
                     VALUES (X'0102030405060708090a0b0c0d0e0f10', 'Legacy', '1980-02-29', 1796380000123456,
                             1796380000123456)",
                )
                .await?;
            }
            Engine::Postgres => {
                c.sql(
                    "INSERT INTO users (id, email, display_name, role, password_hash, disabled, created_at, updated_at)
                     VALUES ('00112233-4455-6677-8899-aabbccddeeff', 'legacy@example.test', 'Legacy', 'patient', 'x',
                             true, '2026-12-04 10:26:40.123456+00', '2026-12-04 10:26:40.123456+00')",
                )
                .await?;
                c.sql(
                    "INSERT INTO patients (id, display_name, birth_date, created_at, updated_at)
                     VALUES ('01020304-0506-0708-090a-0b0c0d0e0f10', 'Legacy', '1980-02-29',
                             '2026-12-04 10:26:40.123456+00', '2026-12-04 10:26:40.123456+00')",
                )
                .await?;
            }
        }
        let user = c.store.user_by_email("legacy@example.test").await?.context("the legacy user")?;
        assert_eq!((user.id, user.created_at, user.updated_at, user.disabled), (id, at, at, true));
        let record = c.store.patient(patient).await?.context("the legacy patient")?;
        assert_eq!((record.birth_date, record.created_at), (Some(time::macros::date!(1980 - 02 - 29)), at));

        let written = c.store.create_user(new_user("new@example.test", Role::Patient), at).await?;
        if c.engine == Engine::Sqlite {
            let mut conn = sqlx::SqliteConnection::connect(&c.url).await?;
            let stored: (String, i64, String, i64) = sqlx::query_as(
                "SELECT typeof(created_at), created_at, typeof(id), length(id) FROM users WHERE email = 'new@example.test'",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
            assert_eq!(stored, ("integer".into(), 1_796_380_000_123_456, "blob".into(), 16));
        }
        assert_eq!(c.store.user_by_id(written.id).await?.map(|u| u.created_at), Some(at));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_twice_and_ping() {
    each_engine(|c| async move {
        let expected = match c.engine {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        };
        assert_eq!(c.store.engine(), expected);
        c.store.ping().await?;
        let user = c.store.create_user(new_user("kept@example.test", Role::Admin), clock::now()).await?;
        c.store.append_audit(event("kept", None, clock::now())).await?;
        // each_engine already migrated once: twice more changes nothing and loses nothing.
        c.store.migrate().await.context("second migrate")?;
        c.store.migrate().await.context("third migrate")?;
        c.store.ping().await?;
        assert_eq!(c.store.count_users().await?, 1);
        assert!(c.store.user_by_id(user.id).await?.is_some());
        assert_eq!(verify_chain(&c.store.audit_chain().await?), verified(1));
        // A second store on the same database migrates harmlessly too.
        let again = store::open(&c.url).await?;
        again.migrate().await.context("migrate from a second store")?;
        again.ping().await?;
        assert_eq!(again.count_users().await?, 1);
        Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_create_and_get() {
    each_engine(|c| async move {
        let before = clock::now();
        let u = c.store.create_user(new_user("ada@example.test", Role::Practitioner), clock::now()).await?;
        let after = clock::now();
        assert_eq!(u.email, "ada@example.test");
        assert_eq!(u.display_name, "Name of ada@example.test");
        assert_eq!(u.role, Role::Practitioner);
        assert_eq!(u.password_hash, "$argon2id$hash-of-ada@example.test");
        assert!(!u.disabled);
        assert_eq!(u.failed_logins, 0);
        assert_eq!(u.locked_until, None);
        assert!(before <= u.created_at && u.created_at <= after, "created_at {} is now", u.created_at);
        assert_eq!(u.created_at, u.updated_at);
        assert_eq!(u.created_at.nanosecond() % 1000, 0, "microsecond precision");

        let by_id = c.store.user_by_id(u.id).await?.context("user_by_id finds the user")?;
        assert_same_user(&by_id, &u);
        let by_email = c.store.user_by_email("ada@example.test").await?.context("user_by_email finds the user")?;
        assert_same_user(&by_email, &u);

        assert!(c.store.user_by_id(Uuid::new_v4()).await?.is_none());
        assert!(c.store.user_by_email("nobody@example.test").await?.is_none());

        let other = c.store.create_user(new_user("bob@example.test", Role::Patient), clock::now()).await?;
        assert_ne!(other.id, u.id);
        assert_eq!(c.store.user_by_email("bob@example.test").await?.map(|x| x.id), Some(other.id));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_duplicate_email_conflicts() {
    each_engine(|c| async move {
        let first = c.store.create_user(new_user("dup@example.test", Role::Admin), clock::now()).await?;
        let again = c.store.create_user(new_user("dup@example.test", Role::Patient), clock::now()).await;
        assert!(matches!(again, Err(StoreError::Conflict)), "expected Conflict, got {again:?}");
        assert_eq!(c.store.count_users().await?, 1);
        let kept = c.store.user_by_email("dup@example.test").await?.context("the first user remains")?;
        assert_same_user(&kept, &first);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_duplicate_email_concurrent_single_winner() {
    each_engine(|c| async move {
        let barrier = Arc::new(Barrier::new(10));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (store, barrier) = (c.store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create_user(new_user("race@example.test", Role::Patient), clock::now()).await
                })
            })
            .collect();
        let (mut ok, mut conflict) = (0, 0);
        for t in tasks {
            match t.await? {
                Ok(_) => ok += 1,
                Err(StoreError::Conflict) => conflict += 1,
                Err(e) => anyhow::bail!("create_user failed with neither success nor Conflict: {e}"),
            }
        }
        assert_eq!((ok, conflict), (1, 9));
        assert_eq!(c.store.count_users().await?, 1);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_list_filters_and_pages() {
    each_engine(|c| async move {
        let mut all = Vec::new();
        for (i, role) in [Role::Admin, Role::Patient, Role::Practitioner, Role::Patient, Role::Patient, Role::Admin]
            .into_iter()
            .enumerate()
        {
            all.push(c.store.create_user(new_user(&format!("u{i}@example.test"), role), clock::now()).await?);
        }
        // Documented order: created_at, then id.
        let mut expected = all.clone();
        expected.sort_by_key(|u| (u.created_at, u.id));
        let expected_ids = ids(&expected);

        assert_eq!(ids(&c.store.list_users(None, 100, 0).await?), expected_ids);
        assert_eq!(ids(&c.store.list_users(None, 2, 0).await?), expected_ids[..2]);
        assert_eq!(ids(&c.store.list_users(None, 2, 2).await?), expected_ids[2..4]);
        assert_eq!(ids(&c.store.list_users(None, 100, 4).await?), expected_ids[4..]);
        assert_eq!(ids(&c.store.list_users(None, 100, 6).await?), Vec::<Uuid>::new());
        assert_eq!(ids(&c.store.list_users(None, 0, 0).await?), Vec::<Uuid>::new());

        let patients: Vec<Uuid> = expected.iter().filter(|u| u.role == Role::Patient).map(|u| u.id).collect();
        assert_eq!(patients.len(), 3);
        let listed = c.store.list_users(Some(Role::Patient), 100, 0).await?;
        assert!(listed.iter().all(|u| u.role == Role::Patient));
        assert_eq!(ids(&listed), patients);
        assert_eq!(ids(&c.store.list_users(Some(Role::Patient), 1, 1).await?), patients[1..2]);
        assert_eq!(ids(&c.store.list_users(Some(Role::Patient), 100, 2).await?), patients[2..]);

        let admins: Vec<Uuid> = expected.iter().filter(|u| u.role == Role::Admin).map(|u| u.id).collect();
        assert_eq!(ids(&c.store.list_users(Some(Role::Admin), 100, 0).await?), admins);
        let practitioners = c.store.list_users(Some(Role::Practitioner), 100, 0).await?;
        assert_eq!(practitioners.len(), 1);
        assert_same_user(&practitioners[0], &all[2]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_count() {
    each_engine(|c| async move {
        assert_eq!(c.store.count_users().await?, 0);
        for i in 0..3 {
            c.store.create_user(new_user(&format!("c{i}@example.test"), Role::Patient), clock::now()).await?;
        }
        assert_eq!(c.store.count_users().await?, 3);
        let _ = c.store.create_user(new_user("c0@example.test", Role::Patient), clock::now()).await;
        assert_eq!(c.store.count_users().await?, 3, "a conflicting create adds nobody");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_update_each_field() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("upd@example.test", Role::Patient), clock::now()).await?;
        let bystander = c.store.create_user(new_user("by@example.test", Role::Patient), clock::now()).await?;
        // Failures that a non-password change must leave alone (the column the former lockout
        // counted in, still reset by a password change).
        c.sql("UPDATE users SET failed_logins = 2 WHERE email = 'upd@example.test'").await?;

        let t1 = clock::now() + Duration::seconds(1);
        let changes = UserChanges { display_name: Some("Renamed".into()), ..Default::default() };
        let v = c.store.update_user(u.id, changes, t1).await?.context("display_name update")?;
        assert_eq!(v.display_name, "Renamed");
        assert_eq!((v.role, v.disabled, v.password_hash.as_str()), (Role::Patient, false, u.password_hash.as_str()));
        assert_eq!(v.failed_logins, 2, "a rename keeps the failure count");
        assert_eq!((v.email.as_str(), v.created_at), (u.email.as_str(), u.created_at));
        assert_eq!(v.updated_at, t1);

        let t2 = t1 + Duration::seconds(1);
        let changes = UserChanges { role: Some(Role::Practitioner), ..Default::default() };
        let v = c.store.update_user(u.id, changes, t2).await?.context("role update")?;
        assert_eq!((v.role, v.display_name.as_str(), v.disabled), (Role::Practitioner, "Renamed", false));
        assert_eq!((v.failed_logins, v.updated_at), (2, t2));

        let t3 = t2 + Duration::seconds(1);
        let changes = UserChanges { disabled: Some(true), ..Default::default() };
        let v = c.store.update_user(u.id, changes, t3).await?.context("disable")?;
        assert!(v.disabled);
        assert_eq!((v.role, v.display_name.as_str()), (Role::Practitioner, "Renamed"));
        assert_eq!((v.failed_logins, v.updated_at), (2, t3));
        let changes = UserChanges { disabled: Some(false), ..Default::default() };
        let v = c.store.update_user(u.id, changes, t3).await?.context("enable")?;
        assert!(!v.disabled);

        let t4 = t3 + Duration::seconds(1);
        let v = c.store.update_user(u.id, UserChanges::default(), t4).await?.context("empty update")?;
        assert_eq!((v.role, v.display_name.as_str(), v.disabled), (Role::Practitioner, "Renamed", false));
        assert_eq!((v.password_hash.as_str(), v.failed_logins), (u.password_hash.as_str(), 2));
        assert_eq!(v.updated_at, t4);

        let t5 = t4 + Duration::seconds(1);
        let changes = UserChanges {
            display_name: Some("All at once".into()),
            role: Some(Role::Admin),
            disabled: Some(true),
            password_hash: None,
        };
        let v = c.store.update_user(u.id, changes, t5).await?.context("several fields")?;
        assert_eq!((v.display_name.as_str(), v.role, v.disabled), ("All at once", Role::Admin, true));

        // What was returned is what is stored, and nobody else changed.
        assert_same_user(&c.store.user_by_id(u.id).await?.context("still there")?, &v);
        assert_same_user(&c.store.user_by_id(bystander.id).await?.context("bystander")?, &bystander);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_update_password_resets_lockout() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("pw@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        c.sql("UPDATE users SET failed_logins = 3 WHERE email = 'pw@example.test'").await?;
        assert_eq!(c.store.user_by_id(u.id).await?.context("user")?.failed_logins, 3);

        let later = now + Duration::seconds(5);
        let changes = UserChanges { password_hash: Some("$argon2id$new".into()), ..Default::default() };
        let v = c.store.update_user(u.id, changes, later).await?.context("password change")?;
        assert_eq!(v.password_hash, "$argon2id$new");
        assert_eq!((v.failed_logins, v.locked_until), (0, None));
        assert_eq!((v.display_name.as_str(), v.role, v.disabled), (u.display_name.as_str(), Role::Patient, false));
        assert_eq!(v.updated_at, later);
        assert_same_user(&c.store.user_by_id(u.id).await?.context("user")?, &v);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_update_unknown_id_is_none() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("only@example.test", Role::Patient), clock::now()).await?;
        let changes = UserChanges {
            display_name: Some("Ghost".into()),
            role: Some(Role::Admin),
            disabled: Some(true),
            password_hash: Some("x".into()),
        };
        assert!(c.store.update_user(Uuid::new_v4(), changes, clock::now()).await?.is_none());
        assert!(c.store.update_user(Uuid::new_v4(), UserChanges::default(), clock::now()).await?.is_none());
        assert_same_user(&c.store.user_by_id(u.id).await?.context("user")?, &u);
        assert_eq!(c.store.count_users().await?, 1);
        Ok(())
    })
    .await;
}

const POLICY: ThrottlePolicy = ThrottlePolicy {
    free_failures: 3,
    base: Duration::seconds(10),
    max: Duration::seconds(60),
    forget_after: Duration::days(1),
};

#[test]
fn throttle_delays_double_up_to_the_cap() {
    let delays: Vec<Option<i64>> = (1..=8).map(|n| POLICY.delay(n).map(|d| d.whole_seconds())).collect();
    assert_eq!(delays, [None, None, Some(10), Some(20), Some(40), Some(60), Some(60), Some(60)]);
    assert_eq!(POLICY.delay(i64::MAX).map(|d| d.whole_seconds()), Some(60), "no overflow");
}

/// Failures count per (account, source): the third from one source blocks that pair for the
/// base delay, each further one for twice as long up to the cap; other pairs are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_throttle_counts_per_account_and_source() {
    each_engine(|c| async move {
        let now = clock::now();
        for n in 1..=2 {
            let t = c.store.record_login_failure("acct-a", "192.0.2.1", &POLICY, now).await?;
            assert_eq!(t, LoginThrottle { failures: n, blocked_until: None });
        }
        let expected = [10, 20, 40, 60, 60];
        for (i, seconds) in expected.into_iter().enumerate() {
            let t = c.store.record_login_failure("acct-a", "192.0.2.1", &POLICY, now).await?;
            let want = LoginThrottle { failures: 3 + i as i64, blocked_until: Some(now + Duration::seconds(seconds)) };
            assert_eq!(t, want);
            assert_eq!(c.store.login_throttle("acct-a", "192.0.2.1").await?, Some(want), "stored as returned");
        }
        assert_eq!(c.store.login_throttle("acct-a", "192.0.2.2").await?, None, "another source");
        assert_eq!(c.store.login_throttle("acct-b", "192.0.2.1").await?, None, "another account");
        let t = c.store.record_login_failure("acct-a", "2001:db8:1:2::/64", &POLICY, now).await?;
        assert_eq!(t.failures, 1, "each source counts on its own");
        Ok(())
    })
    .await;
}

/// A success forgets the pair; failures older than `forget_after` are forgotten too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_throttle_forgets_on_success_and_with_age() {
    each_engine(|c| async move {
        let now = clock::now();
        for _ in 0..4 {
            c.store.record_login_failure("acct", "198.51.100.1", &POLICY, now).await?;
        }
        c.store.record_login_failure("other", "198.51.100.1", &POLICY, now).await?;
        c.store.clear_login_failures("acct", "198.51.100.1").await?;
        assert_eq!(c.store.login_throttle("acct", "198.51.100.1").await?, None);
        assert_eq!(c.store.login_throttle("other", "198.51.100.1").await?.map(|t| t.failures), Some(1), "untouched");
        c.store.clear_login_failures("nobody", "198.51.100.1").await?;

        let later = now + Duration::days(1) + Duration::seconds(1);
        let t = c.store.record_login_failure("other", "198.51.100.1", &POLICY, later).await?;
        assert_eq!(t, LoginThrottle { failures: 1, blocked_until: None }, "a day-old failure is forgotten");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_throttle_concurrent_failures_count_all() {
    each_engine(|c| async move {
        let now = clock::now();
        let barrier = Arc::new(Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (store, barrier) = (c.store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.record_login_failure("many", "203.0.113.9", &POLICY, now).await
                })
            })
            .collect();
        let mut counts = Vec::new();
        for t in tasks {
            counts.push(t.await??.failures);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=20).collect::<Vec<i64>>(), "each failure counted once");
        let t = c.store.login_throttle("many", "203.0.113.9").await?.context("pair")?;
        assert_eq!(t, LoginThrottle { failures: 20, blocked_until: Some(now + Duration::seconds(60)) });
        Ok(())
    })
    .await;
}

/// No change disables or demotes the last enabled admin, also when two admins disable each
/// other at the same moment (one of the two must fail, every time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_the_last_enabled_admin_stays() {
    each_engine(|c| async move {
        let a = c.store.create_user(new_user("a@example.test", Role::Admin), clock::now()).await?;
        let b = c.store.create_user(new_user("b@example.test", Role::Admin), clock::now()).await?;
        let now = clock::now();
        let disable = UserChanges { disabled: Some(true), ..Default::default() };
        let enable = UserChanges { disabled: Some(false), ..Default::default() };
        let demote = UserChanges { role: Some(Role::Practitioner), ..Default::default() };
        assert!(c.store.update_user(a.id, disable.clone(), now).await?.is_some_and(|u| u.disabled));
        for (what, change) in [("disable", disable.clone()), ("demote", demote.clone())] {
            let r = c.store.update_user(b.id, change, now).await;
            ensure!(matches!(r, Err(StoreError::LastAdmin)), "{what} the last admin: {r:?}");
        }
        assert_same_user(&c.store.user_by_id(b.id).await?.context("b")?, &b);
        // What does not remove an admin still works on the last one.
        let rename = UserChanges { display_name: Some("Still admin".into()), ..Default::default() };
        assert!(c.store.update_user(b.id, rename, now).await?.is_some());
        assert!(c.store.update_user(a.id, demote.clone(), now).await?.is_some(), "a disabled admin is no guard");
        let promote = UserChanges { role: Some(Role::Admin), disabled: Some(false), ..Default::default() };
        assert!(c.store.update_user(a.id, promote, now).await?.is_some());

        for round in 0..10 {
            let barrier = Arc::new(Barrier::new(2));
            let tasks: Vec<_> = [a.id, b.id]
                .into_iter()
                .map(|id| {
                    let (store, barrier, change) = (c.store.clone(), barrier.clone(), disable.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store.update_user(id, change, now).await
                    })
                })
                .collect();
            let mut done = 0;
            let mut refused = 0;
            for t in tasks {
                match t.await? {
                    Ok(Some(_)) => done += 1,
                    Err(StoreError::LastAdmin) => refused += 1,
                    other => anyhow::bail!("round {round}: {other:?}"),
                }
            }
            ensure!((done, refused) == (1, 1), "round {round}: {done} disabled, {refused} refused");
            for id in [a.id, b.id] {
                c.store.update_user(id, enable.clone(), now).await?;
            }
        }
        Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Sessions and refresh tokens
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_create_and_read() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("s@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        let s = new_session(u.id, now);
        let t = new_token(s.id, now);
        c.store.create_session(s.clone(), t.clone()).await?;

        assert_same_session(&c.store.session(s.id).await?.context("session")?, &s);
        assert_same_token(&c.store.refresh_token_by_hash(&t.token_hash).await?.context("token by hash")?, &t);
        assert!(c.store.session(Uuid::new_v4()).await?.is_none());
        assert!(c.store.refresh_token_by_hash(b"no such hash").await?.is_none());
        assert!(c.store.refresh_token_by_hash(&t.token_hash[..16]).await?.is_none(), "exact match only");

        // A session needs a real user; a failed create leaves no token behind.
        let orphan = new_session(Uuid::new_v4(), now);
        let orphan_token = new_token(orphan.id, now);
        let res = c.store.create_session(orphan.clone(), orphan_token.clone()).await;
        assert!(res.is_err(), "a session for an unknown user is refused");
        assert!(c.store.session(orphan.id).await?.is_none());
        assert!(c.store.refresh_token_by_hash(&orphan_token.token_hash).await?.is_none());

        // A duplicate token hash fails the whole create: no session without its token.
        let s2 = new_session(u.id, now);
        let mut dup = new_token(s2.id, now);
        dup.token_hash = t.token_hash.clone();
        assert!(c.store.create_session(s2.clone(), dup).await.is_err(), "duplicate token hash is refused");
        assert!(c.store.session(s2.id).await?.is_none(), "create_session is atomic");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_token_rotation_is_single_use() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("r@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        let s = new_session(u.id, now);
        let first = new_token(s.id, now);
        c.store.create_session(s.clone(), first.clone()).await?;

        let t1 = now + Duration::seconds(10);
        let second = new_token(s.id, t1);
        assert!(c.store.rotate_refresh_token(first.id, second.clone(), t1).await?, "first use rotates");
        let spent = c.store.refresh_token_by_hash(&first.token_hash).await?.context("spent token still readable")?;
        assert_eq!(spent.used_at, Some(t1));
        assert_same_token(&c.store.refresh_token_by_hash(&second.token_hash).await?.context("successor")?, &second);

        // Reusing the spent token: refused, and its would-be successor is not stored.
        let t2 = t1 + Duration::seconds(10);
        let stolen = new_token(s.id, t2);
        assert!(!c.store.rotate_refresh_token(first.id, stolen.clone(), t2).await?, "second use is refused");
        assert!(c.store.refresh_token_by_hash(&stolen.token_hash).await?.is_none());
        let spent = c.store.refresh_token_by_hash(&first.token_hash).await?.context("spent token")?;
        assert_eq!(spent.used_at, Some(t1), "the first use time is kept");

        // The successor rotates once in turn.
        let third = new_token(s.id, t2);
        assert!(c.store.rotate_refresh_token(second.id, third.clone(), t2).await?);
        assert!(!c.store.rotate_refresh_token(second.id, new_token(s.id, t2), t2).await?);
        assert!(c.store.refresh_token_by_hash(&third.token_hash).await?.is_some());

        // An unknown token id never rotates.
        let ghost = new_token(s.id, t2);
        assert!(!c.store.rotate_refresh_token(Uuid::new_v4(), ghost.clone(), t2).await?);
        assert!(c.store.refresh_token_by_hash(&ghost.token_hash).await?.is_none());
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_token_rotation_concurrent_single_winner() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("race@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        let s = new_session(u.id, now);
        let first = new_token(s.id, now);
        c.store.create_session(s.clone(), first.clone()).await?;

        const N: usize = 20;
        let barrier = Arc::new(Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let (store, barrier) = (c.store.clone(), barrier.clone());
                let next = new_token(s.id, now);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let rotated = store.rotate_refresh_token(first.id, next.clone(), clock::now()).await;
                    (next, rotated)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (next, rotated) = t.await?;
            if rotated.context("rotate_refresh_token errored under contention")? {
                winners.push(next);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one concurrent rotation wins");
        assert!(c.store.refresh_token_by_hash(&winners[0].token_hash).await?.is_some());
        // Only the winner's successor exists: one spent token plus one live one in the session.
        let live = match c.engine {
            Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&c.url).await?;
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = ?")
                    .bind(s.id)
                    .fetch_one(&mut conn)
                    .await?
            }
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&c.url).await?;
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
                    .bind(s.id)
                    .fetch_one(&mut conn)
                    .await?
            }
        };
        assert_eq!(live, 2, "the spent token and the single winner's successor");
        assert!(c.store.refresh_token_by_hash(&first.token_hash).await?.context("spent")?.used_at.is_some());
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_revoke_one() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("rv@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        let (a, b) = (new_session(u.id, now), new_session(u.id, now));
        c.store.create_session(a.clone(), new_token(a.id, now)).await?;
        c.store.create_session(b.clone(), new_token(b.id, now)).await?;

        let t1 = now + Duration::seconds(3);
        c.store.revoke_session(a.id, "logout", t1).await?;
        let got = c.store.session(a.id).await?.context("session a")?;
        assert_eq!((got.revoked_at, got.revoked_reason.as_deref()), (Some(t1), Some("logout")));
        assert_eq!((got.created_at, got.expires_at), (a.created_at, a.expires_at));
        assert_same_session(&c.store.session(b.id).await?.context("session b")?, &b);

        // Idempotent: a second revocation keeps the first time and reason.
        c.store.revoke_session(a.id, "theft", t1 + Duration::seconds(5)).await?;
        let got = c.store.session(a.id).await?.context("session a")?;
        assert_eq!((got.revoked_at, got.revoked_reason.as_deref()), (Some(t1), Some("logout")));
        // Unknown id: harmless.
        c.store.revoke_session(Uuid::new_v4(), "logout", t1).await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_revoke_all_of_a_user() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("all@example.test", Role::Patient), clock::now()).await?;
        let other = c.store.create_user(new_user("keep@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        let mine: Vec<Session> = (0..3).map(|_| new_session(u.id, now)).collect();
        for s in &mine {
            c.store.create_session(s.clone(), new_token(s.id, now)).await?;
        }
        let theirs = new_session(other.id, now);
        c.store.create_session(theirs.clone(), new_token(theirs.id, now)).await?;

        let t0 = now + Duration::seconds(1);
        c.store.revoke_session(mine[0].id, "logout", t0).await?;

        let t1 = now + Duration::seconds(2);
        assert_eq!(c.store.revoke_user_sessions(u.id, "password changed", t1).await?, 2, "two were still live");
        let first = c.store.session(mine[0].id).await?.context("s0")?;
        assert_eq!((first.revoked_at, first.revoked_reason.as_deref()), (Some(t0), Some("logout")));
        for s in &mine[1..] {
            let got = c.store.session(s.id).await?.context("session")?;
            assert_eq!((got.revoked_at, got.revoked_reason.as_deref()), (Some(t1), Some("password changed")));
        }
        assert_same_session(&c.store.session(theirs.id).await?.context("other's session")?, &theirs);

        // Idempotent: nothing left to revoke, nothing changes.
        let t2 = now + Duration::seconds(3);
        assert_eq!(c.store.revoke_user_sessions(u.id, "again", t2).await?, 0);
        for s in &mine[1..] {
            assert_eq!(c.store.session(s.id).await?.context("session")?.revoked_at, Some(t1));
        }
        assert_eq!(c.store.revoke_user_sessions(Uuid::new_v4(), "nobody", t2).await?, 0);
        Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Audit chain
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_append_links_chain() {
    each_engine(|c| async move {
        assert_eq!(verify_chain(&c.store.audit_chain().await?), verified(0), "an empty chain verifies");
        let actor = Uuid::new_v4();
        let mut appended = Vec::new();
        for (i, action) in ["login", "user.create", "logout"].into_iter().enumerate() {
            let mut e = event(action, if i == 1 { None } else { Some(actor) }, clock::now());
            if i == 2 {
                (e.target, e.source_ip, e.request_id) = (None, None, None);
                e.outcome = "failure".into();
            }
            appended.push(c.store.append_audit(e).await?);
        }
        assert_eq!(seqs(&appended), [1, 2, 3]);
        assert_eq!(appended[0].prev_hash, teletip_control::audit::chain::GENESIS_HASH);
        assert_eq!(appended[1].prev_hash, appended[0].hash);
        assert_eq!(appended[2].prev_hash, appended[1].hash);
        assert!(appended.iter().all(|e| e.hash.len() == 64 && e.hash.chars().all(|ch| ch.is_ascii_hexdigit())));

        let chain = c.store.audit_chain().await?;
        assert_eq!(chain, appended, "the chain read back is what was appended");
        assert_eq!(verify_chain(&chain), verified(3));
        assert_eq!(chain[1].actor, None);
        assert_eq!((chain[2].target.as_deref(), chain[2].source_ip.as_deref()), (None, None));
        assert_eq!(chain[2].request_id, None);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_timestamps_round_trip() {
    each_engine(|c| async move {
        let times = [
            clock::now(),
            datetime!(2024-02-29 23:59:59.999_999 UTC),
            datetime!(2030-01-01 00:00:00.000_001 UTC),
            datetime!(1999-12-31 23:59:59.123_456 UTC),
            datetime!(1969-12-31 23:59:59.000_001 UTC),
            datetime!(2025-06-01 12:00:00.5 +05:30),
        ];
        let mut appended = Vec::new();
        for at in times {
            appended.push(c.store.append_audit(event("ts", None, at)).await?);
        }
        let chain = c.store.audit_chain().await?;
        assert_eq!(chain.len(), times.len());
        for (sent, (a, back)) in times.iter().zip(appended.iter().zip(&chain)) {
            assert_eq!(a.at, *sent);
            assert_eq!(back.at, a.at, "seq {}: timestamp read back differs from the one appended", a.seq);
            assert_eq!(back.at.unix_timestamp_nanos(), sent.unix_timestamp_nanos());
            assert_eq!(back, a);
        }
        assert_eq!(verify_chain(&chain), verified(times.len() as i64));
        let listed = c.store.list_audit(&AuditFilter { limit: 100, ..Default::default() }).await?;
        assert_eq!(listed.iter().rev().cloned().collect::<Vec<_>>(), chain);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_concurrent_appends() {
    each_engine(|c| async move {
        const N: usize = 50;
        let barrier = Arc::new(Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (store, barrier) = (c.store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.append_audit(event(&format!("parallel.{i}"), None, clock::now())).await
                })
            })
            .collect();
        let mut appended = Vec::new();
        for t in tasks {
            appended.push(t.await?.context("append_audit under contention")?);
        }
        appended.sort_by_key(|e| e.seq);
        assert_eq!(seqs(&appended), (1..=N as i64).collect::<Vec<_>>());
        let chain = c.store.audit_chain().await?;
        assert_eq!(verify_chain(&chain), verified(N as i64));
        assert_eq!(chain, appended, "each append returned what was stored");
        Ok(())
    })
    .await;
}

// Audit appends race with ordinary writes in production (a failed login writes its throttle
// row and appends an audit event from concurrent requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_appends_concurrent_with_other_writes() {
    each_engine(|c| async move {
        let u = c.store.create_user(new_user("busy@example.test", Role::Patient), clock::now()).await?;
        let now = clock::now();
        const N: usize = 40;
        let barrier = Arc::new(Barrier::new(2 * N));
        let mut audits = Vec::new();
        let mut writes = Vec::new();
        for i in 0..N {
            let (store, gate) = (c.store.clone(), barrier.clone());
            audits.push(tokio::spawn(async move {
                gate.wait().await;
                store.append_audit(event(&format!("mixed.{i}"), Some(u.id), clock::now())).await
            }));
            let (store, gate) = (c.store.clone(), barrier.clone());
            writes.push(tokio::spawn(async move {
                gate.wait().await;
                store.record_login_failure(&u.id.to_string(), "192.0.2.77", &POLICY, now).await
            }));
        }
        for t in writes {
            t.await?.context("record_login_failure alongside audit appends")?;
        }
        for t in audits {
            t.await?.context("append_audit alongside other writes")?;
        }
        assert_eq!(verify_chain(&c.store.audit_chain().await?), verified(N as i64));
        let pair = c.store.login_throttle(&u.id.to_string(), "192.0.2.77").await?.context("pair")?;
        assert_eq!(pair.failures, N as i64);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_list_filters() {
    each_engine(|c| async move {
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let base = datetime!(2025-03-01 09:00:00 UTC);
        let at = |i: i64| base + Duration::minutes(i);
        // seq: 1 alice login @0, 2 bob login @1, 3 alice user.update @2, 4 anonymous login @3,
        //      5 bob logout @4, 6 alice login @5
        let plan: [(&str, Option<Uuid>); 6] = [
            ("login", Some(alice)),
            ("login", Some(bob)),
            ("user.update", Some(alice)),
            ("login", None),
            ("logout", Some(bob)),
            ("login", Some(alice)),
        ];
        for (i, (action, actor)) in plan.into_iter().enumerate() {
            c.store.append_audit(event(action, actor, at(i as i64))).await?;
        }
        let list = |f: AuditFilter| {
            let store = c.store.clone();
            async move { store.list_audit(&f).await.map(|v| seqs(&v)) }
        };
        let all = AuditFilter { limit: 100, ..Default::default() };

        assert_eq!(list(all.clone()).await?, [6, 5, 4, 3, 2, 1], "newest first");
        assert_eq!(list(AuditFilter { limit: 2, ..all.clone() }).await?, [6, 5], "limit keeps the newest");
        assert_eq!(list(AuditFilter { limit: 0, ..all.clone() }).await?, Vec::<i64>::new());
        assert_eq!(list(AuditFilter { actor: Some(alice), ..all.clone() }).await?, [6, 3, 1]);
        assert_eq!(list(AuditFilter { actor: Some(bob), ..all.clone() }).await?, [5, 2]);
        assert_eq!(list(AuditFilter { actor: Some(Uuid::new_v4()), ..all.clone() }).await?, Vec::<i64>::new());
        assert_eq!(list(AuditFilter { action: Some("login".into()), ..all.clone() }).await?, [6, 4, 2, 1]);
        assert_eq!(list(AuditFilter { action: Some("nothing".into()), ..all.clone() }).await?, Vec::<i64>::new());
        assert_eq!(
            list(AuditFilter { actor: Some(alice), action: Some("login".into()), ..all.clone() }).await?,
            [6, 1]
        );
        assert_eq!(
            list(AuditFilter { actor: Some(alice), action: Some("login".into()), limit: 1, ..all.clone() }).await?,
            [6]
        );
        // since is inclusive, until exclusive.
        assert_eq!(list(AuditFilter { since: Some(at(2)), ..all.clone() }).await?, [6, 5, 4, 3]);
        assert_eq!(list(AuditFilter { until: Some(at(2)), ..all.clone() }).await?, [2, 1]);
        assert_eq!(list(AuditFilter { since: Some(at(1)), until: Some(at(4)), ..all.clone() }).await?, [4, 3, 2]);
        assert_eq!(
            list(AuditFilter { since: Some(at(1) + Duration::microseconds(1)), until: Some(at(4)), ..all.clone() })
                .await?,
            [4, 3]
        );
        assert_eq!(
            list(AuditFilter { since: Some(at(1)), until: Some(at(4) + Duration::microseconds(1)), ..all.clone() })
                .await?,
            [5, 4, 3, 2]
        );
        assert_eq!(
            list(AuditFilter { actor: Some(bob), since: Some(at(0)), until: Some(at(3)), ..all.clone() }).await?,
            [2]
        );
        assert_eq!(list(AuditFilter { since: Some(at(6)), ..all.clone() }).await?, Vec::<i64>::new());
        assert_eq!(
            list(AuditFilter { since: Some(at(3)), until: Some(at(3)), ..all.clone() }).await?,
            Vec::<i64>::new()
        );

        // The listed events are complete (they still verify as a chain, oldest first).
        let mut events = c.store.list_audit(&all).await?;
        events.reverse();
        assert_eq!(events, c.store.audit_chain().await?);
        assert_eq!(verify_chain(&events), verified(6));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_is_append_only() {
    each_engine(|c| async move {
        for i in 0..3 {
            c.store.append_audit(event(&format!("kept.{i}"), None, clock::now())).await?;
        }
        let before = c.store.audit_chain().await?;

        let mut refused = vec![
            ("UPDATE one row", c.sql("UPDATE audit_events SET outcome = 'forged' WHERE seq = 2").await),
            ("UPDATE all rows", c.sql("UPDATE audit_events SET outcome = 'forged'").await),
            ("DELETE one row", c.sql("DELETE FROM audit_events WHERE seq = 2").await),
            ("DELETE all rows", c.sql("DELETE FROM audit_events").await),
        ];
        if c.engine == Engine::Postgres {
            refused.push(("TRUNCATE", c.sql("TRUNCATE audit_events").await));
        }
        for (what, result) in refused {
            match result {
                Ok(rows) => anyhow::bail!("{what} on audit_events succeeded ({rows} rows)"),
                Err(e) => ensure!(
                    e.to_string().contains("append-only"),
                    "{what} failed, but not because of the append-only trigger: {e}"
                ),
            }
        }
        let after = c.store.audit_chain().await?;
        assert_eq!(after, before, "nothing changed");
        assert_eq!(verify_chain(&after), verified(3));
        // Appending still works.
        assert_eq!(c.store.append_audit(event("after", None, clock::now())).await?.seq, 4);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_tamper_modified_outcome_detected() {
    each_engine(|c| async move {
        for i in 0..5 {
            c.store.append_audit(event(&format!("e.{i}"), Some(Uuid::new_v4()), clock::now())).await?;
        }
        assert_eq!(verify_chain(&c.store.audit_chain().await?), verified(5));
        c.bypass_audit_update_guard().await?;
        assert_eq!(c.sql("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3").await?, 1);
        let chain = c.store.audit_chain().await?;
        assert_eq!(chain[2].outcome, "failure", "the tampering went through");
        assert_eq!(
            verify_chain(&chain),
            ChainVerification { verified: false, events_checked: 3, first_broken_seq: Some(3) }
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_tamper_shifted_timestamp_detected() {
    each_engine(|c| async move {
        for i in 0..4 {
            c.store.append_audit(event(&format!("e.{i}"), None, clock::now())).await?;
        }
        c.bypass_audit_update_guard().await?;
        let shift = match c.engine {
            Engine::Sqlite => "UPDATE audit_events SET at = at + 1 WHERE seq = 2",
            Engine::Postgres => "UPDATE audit_events SET at = at + interval '1 microsecond' WHERE seq = 2",
        };
        assert_eq!(c.sql(shift).await?, 1);
        assert_eq!(
            verify_chain(&c.store.audit_chain().await?),
            ChainVerification { verified: false, events_checked: 2, first_broken_seq: Some(2) }
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_tamper_deleted_row_detected() {
    each_engine(|c| async move {
        for i in 0..5 {
            c.store.append_audit(event(&format!("e.{i}"), None, clock::now())).await?;
        }
        c.bypass_audit_delete_guard().await?;
        assert_eq!(c.sql("DELETE FROM audit_events WHERE seq = 3").await?, 1);
        let chain = c.store.audit_chain().await?;
        assert_eq!(seqs(&chain), [1, 2, 4, 5]);
        assert_eq!(
            verify_chain(&chain),
            ChainVerification { verified: false, events_checked: 3, first_broken_seq: Some(3) }
        );
        Ok(())
    })
    .await;
}

/// Issued TURN sessions are revoked by the scope named, each until its own expiry, with the
/// revocation's audit event (counting them) in the same transaction; expired ones are left
/// out and purged; an unknown id is revoked until the time given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turn_sessions_are_revoked_by_scope_until_their_expiry_and_purged_after() {
    each_engine(|c| async move {
        let now = datetime!(2026-12-06 10:00:00.123456 UTC);
        let (user, other, login, appointment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let issue = |id: &str, user: Uuid, login: Uuid, appointment: Option<Uuid>, minutes: i64| IssuedTurnSession {
            id: id.into(),
            expires_at: now + Duration::minutes(minutes),
            user_id: user,
            login_session: login,
            appointment_id: appointment,
            issued_at: now,
        };
        for s in [
            issue("consultation0001", user, login, Some(appointment), 60),
            issue("plain00000000002", user, login, None, 10),
            issue("expired000000003", user, login, None, -1),
            issue("otherlogin000004", user, Uuid::new_v4(), None, 10),
            issue("otheruser0000005", other, Uuid::new_v4(), Some(appointment), 30),
        ] {
            c.store.record_turn_session(s, event("ice.credentials.issue", Some(user), now)).await?;
        }
        let revoke = |scope: TurnSessionScope| TurnRevocation { scope, by: Some(user), reason: "test".into(), now };
        let audited = |revoked: &[RevokedTurnSession]| {
            let mut e = event("ice.sessions.revoke", Some(user), now);
            e.target = Some(format!("turn-sessions:{}", revoked.len()));
            e
        };
        let ids = |revoked: Vec<RevokedTurnSession>| revoked.into_iter().map(|s| s.id).collect::<Vec<_>>();

        let mut by_appointment =
            ids(c.store.revoke_turn_sessions(&revoke(TurnSessionScope::Appointment(appointment)), &audited).await?);
        by_appointment.sort();
        ensure!(by_appointment == ["consultation0001", "otheruser0000005"], "{by_appointment:?}");
        let by_login = ids(c.store.revoke_turn_sessions(&revoke(TurnSessionScope::Login(login)), &audited).await?);
        ensure!(by_login.len() == 2 && !by_login.contains(&"expired000000003".to_string()), "{by_login:?}");
        let known = TurnSessionScope::Session { id: "otherlogin000004".into(), unknown_until: now };
        let one = c.store.revoke_turn_sessions(&revoke(known), &audited).await?;
        ensure!(
            one == [RevokedTurnSession { id: "otherlogin000004".into(), expires_at: now + Duration::minutes(10) }],
            "{one:?}"
        );
        let until = now + Duration::hours(5);
        let unknown = TurnSessionScope::Session { id: "neverissued00006".into(), unknown_until: until };
        let one = c.store.revoke_turn_sessions(&revoke(unknown), &audited).await?;
        ensure!(one == [RevokedTurnSession { id: "neverissued00006".into(), expires_at: until }], "{one:?}");
        let expired = TurnSessionScope::Session { id: "expired000000003".into(), unknown_until: until };
        ensure!(c.store.revoke_turn_sessions(&revoke(expired), &audited).await?.is_empty());
        ensure!(
            c.store.revoke_turn_sessions(&revoke(TurnSessionScope::User(Uuid::new_v4())), &audited).await?.is_empty()
        );

        let in_force = c.store.turn_revocations_in_force(now).await?;
        ensure!(in_force.len() == 5, "each session once, however often revoked: {in_force:?}");
        ensure!(in_force.iter().all(|s| s.expires_at > now));
        let targets: Vec<String> = c
            .store
            .list_audit(&AuditFilter { action: Some("ice.sessions.revoke".into()), limit: 10, ..Default::default() })
            .await?
            .into_iter()
            .filter_map(|e| e.target)
            .collect();
        ensure!(
            targets
                == [
                    "turn-sessions:0",
                    "turn-sessions:0",
                    "turn-sessions:1",
                    "turn-sessions:1",
                    "turn-sessions:2",
                    "turn-sessions:2"
                ],
            "{targets:?}"
        );

        // Forty minutes on: only the consultation (60) and the unknown id (5 h) are in force.
        let later = now + Duration::minutes(40);
        let left = ids(c.store.turn_revocations_in_force(later).await?);
        ensure!(left == ["consultation0001", "neverissued00006"], "{left:?}");
        let purged = c.store.purge_turn_sessions_expired_before(later).await?;
        ensure!(purged == 4 + 3, "4 issued sessions and 3 revocations expired: {purged}");
        ensure!(ids(c.store.turn_revocations_in_force(now).await?) == left);
        Ok(())
    })
    .await;
}
