-- Issue 20, data residency (KVKK): where a patient's data and the media of their consultations
-- may go. Regions are short lowercase labels (`tr`, `eu-de`); NULL means the deployment's
-- region (control.toml `deployment-region`). Timestamps: Unix microseconds.
CREATE TABLE practices (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    data_region TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

ALTER TABLE practitioners ADD COLUMN practice_id BLOB REFERENCES practices (id);
ALTER TABLE patients ADD COLUMN data_region TEXT;

-- A documented legal basis for transferring one patient's data abroad (KVKK art. 9), recorded
-- by an admin. Each row is one version; withdrawal sets withdrawn_at and nothing else changes.
CREATE TABLE transfer_legal_bases (
    id           BLOB PRIMARY KEY NOT NULL,
    patient_id   BLOB NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    reference    TEXT NOT NULL,
    -- JSON array of region labels, or NULL for any destination.
    destinations TEXT,
    expires_at   INTEGER,
    recorded_by  BLOB NOT NULL,
    recorded_at  INTEGER NOT NULL,
    withdrawn_at INTEGER,
    withdrawn_by BLOB
);
CREATE INDEX transfer_legal_bases_by_patient ON transfer_legal_bases (patient_id, recorded_at);
