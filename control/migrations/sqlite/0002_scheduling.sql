-- Clinical scheduling: practitioners, patients (identifying fields encrypted by the
-- application, equality lookups through keyed blind indexes), weekly availability and its
-- exceptions, and appointments with FHIR R4 statuses. Timestamps: Unix microseconds.
CREATE TABLE practitioners (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB UNIQUE REFERENCES users (id),
    display_name TEXT NOT NULL,
    specialty    TEXT NOT NULL,
    time_zone    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE patients (
    id                 BLOB PRIMARY KEY NOT NULL,
    user_id            BLOB UNIQUE REFERENCES users (id),
    display_name       TEXT NOT NULL,
    birth_date         TEXT,
    national_id_enc    TEXT,
    national_id_index  TEXT,
    phone_enc          TEXT,
    phone_index        TEXT,
    email_enc          TEXT,
    email_index        TEXT,
    notes_enc          TEXT,
    anonymized_at      INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX patients_by_national_id ON patients (national_id_index);
CREATE INDEX patients_by_phone ON patients (phone_index);
CREATE INDEX patients_by_email ON patients (email_index);

CREATE TABLE availability_rules (
    id              BLOB PRIMARY KEY NOT NULL,
    practitioner_id BLOB NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    weekday         INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    from_minute     INTEGER NOT NULL CHECK (from_minute BETWEEN 0 AND 1439),
    to_minute       INTEGER NOT NULL CHECK (to_minute BETWEEN 1 AND 1440),
    slot_minutes    INTEGER NOT NULL CHECK (slot_minutes BETWEEN 5 AND 240),
    CHECK (from_minute < to_minute)
);

CREATE TABLE availability_exceptions (
    id              BLOB PRIMARY KEY NOT NULL,
    practitioner_id BLOB NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('unavailable', 'extra-hours')),
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    slot_minutes    INTEGER,
    CHECK (starts_at < ends_at)
);

CREATE TABLE appointments (
    id              BLOB PRIMARY KEY NOT NULL,
    practitioner_id BLOB NOT NULL REFERENCES practitioners (id),
    patient_id      BLOB NOT NULL REFERENCES patients (id),
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('proposed', 'pending', 'booked', 'arrived', 'checked-in',
                                                    'fulfilled', 'cancelled', 'noshow', 'entered-in-error')),
    cancel_reason   TEXT,
    created_by      BLOB NOT NULL REFERENCES users (id),
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (starts_at < ends_at),
    UNIQUE (created_by, idempotency_key)
);
CREATE INDEX appointments_by_practitioner ON appointments (practitioner_id, starts_at);
CREATE INDEX appointments_by_patient ON appointments (patient_id, starts_at);

-- No double booking, in the schema: SQLite runs one writer at a time and these triggers run
-- inside the writing transaction, so the check and the write are atomic.
CREATE TRIGGER appointments_no_double_booking_insert BEFORE INSERT ON appointments
WHEN NEW.status IN ('pending', 'booked', 'arrived', 'checked-in')
BEGIN
    SELECT RAISE(ABORT, 'appointments_no_double_booking')
    WHERE EXISTS (
        SELECT 1 FROM appointments
        WHERE practitioner_id = NEW.practitioner_id
          AND status IN ('pending', 'booked', 'arrived', 'checked-in')
          AND starts_at < NEW.ends_at AND NEW.starts_at < ends_at
    );
END;
CREATE TRIGGER appointments_no_double_booking_update BEFORE UPDATE OF starts_at, ends_at, status, practitioner_id ON appointments
WHEN NEW.status IN ('pending', 'booked', 'arrived', 'checked-in')
BEGIN
    SELECT RAISE(ABORT, 'appointments_no_double_booking')
    WHERE EXISTS (
        SELECT 1 FROM appointments
        WHERE practitioner_id = NEW.practitioner_id
          AND id != NEW.id
          AND status IN ('pending', 'booked', 'arrived', 'checked-in')
          AND starts_at < NEW.ends_at AND NEW.starts_at < ends_at
    );
END;
