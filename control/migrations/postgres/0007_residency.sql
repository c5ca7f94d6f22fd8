-- Issue 20, data residency (KVKK): where a patient's data and the media of their consultations
-- may go. Regions are short lowercase labels (`tr`, `eu-de`); NULL means the deployment's
-- region (control.toml `deployment-region`).
CREATE TABLE practices (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    data_region text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

ALTER TABLE practitioners ADD COLUMN practice_id uuid REFERENCES practices (id);
ALTER TABLE patients ADD COLUMN data_region text;

-- A documented legal basis for transferring one patient's data abroad (KVKK art. 9), recorded
-- by an admin. Each row is one version; withdrawal sets withdrawn_at and nothing else changes.
CREATE TABLE transfer_legal_bases (
    id           uuid PRIMARY KEY,
    patient_id   uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    reference    text NOT NULL,
    -- JSON array of region labels, or NULL for any destination.
    destinations text,
    expires_at   timestamptz,
    recorded_by  uuid NOT NULL,
    recorded_at  timestamptz NOT NULL,
    withdrawn_at timestamptz,
    withdrawn_by uuid
);
CREATE INDEX transfer_legal_bases_by_patient ON transfer_legal_bases (patient_id, recorded_at);
