-- Clinical scheduling: practitioners, patients (identifying fields encrypted by the
-- application, equality lookups through keyed blind indexes), weekly availability and its
-- exceptions, and appointments with FHIR R4 statuses.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE practitioners (
    id           uuid PRIMARY KEY,
    user_id      uuid UNIQUE REFERENCES users (id),
    display_name text NOT NULL,
    specialty    text NOT NULL,
    time_zone    text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE patients (
    id                 uuid PRIMARY KEY,
    user_id            uuid UNIQUE REFERENCES users (id),
    display_name       text NOT NULL,
    birth_date         date,
    -- v1:<key id>:<base64url(nonce ‖ AES-256-GCM ciphertext)>, written by the application.
    national_id_enc    text,
    national_id_index  text,
    phone_enc          text,
    phone_index        text,
    email_enc          text,
    email_index        text,
    notes_enc          text,
    anonymized_at      timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX patients_by_national_id ON patients (national_id_index);
CREATE INDEX patients_by_phone ON patients (phone_index);
CREATE INDEX patients_by_email ON patients (email_index);

CREATE TABLE availability_rules (
    id              uuid PRIMARY KEY,
    practitioner_id uuid NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    weekday         smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7), -- ISO: 1 = Monday
    from_minute     integer NOT NULL CHECK (from_minute BETWEEN 0 AND 1439),
    to_minute       integer NOT NULL CHECK (to_minute BETWEEN 1 AND 1440),
    slot_minutes    integer NOT NULL CHECK (slot_minutes BETWEEN 5 AND 240),
    CHECK (from_minute < to_minute)
);

CREATE TABLE availability_exceptions (
    id              uuid PRIMARY KEY,
    practitioner_id uuid NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('unavailable', 'extra-hours')),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    slot_minutes    integer,
    CHECK (starts_at < ends_at)
);

CREATE TABLE appointments (
    id              uuid PRIMARY KEY,
    practitioner_id uuid NOT NULL REFERENCES practitioners (id),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('proposed', 'pending', 'booked', 'arrived', 'checked-in',
                                                    'fulfilled', 'cancelled', 'noshow', 'entered-in-error')),
    cancel_reason   text,
    created_by      uuid NOT NULL REFERENCES users (id),
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK (starts_at < ends_at),
    UNIQUE (created_by, idempotency_key),
    -- No double booking, ever, whatever the application does: two live appointments of one
    -- practitioner cannot overlap in time.
    CONSTRAINT appointments_no_double_booking EXCLUDE USING gist (
        practitioner_id WITH =,
        tstzrange(starts_at, ends_at, '[)') WITH &&
    ) WHERE (status IN ('pending', 'booked', 'arrived', 'checked-in'))
);
CREATE INDEX appointments_by_practitioner ON appointments (practitioner_id, starts_at);
CREATE INDEX appointments_by_patient ON appointments (patient_id, starts_at);
