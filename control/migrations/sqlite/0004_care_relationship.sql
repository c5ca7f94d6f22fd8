-- Security issue 18, item 3: a practitioner may read a patient's record only through a care
-- relationship the patient chose (control/src/scheduling/access.rs). An appointment counts
-- once the patient booked it (or an admin did, on the patient's behalf) or the patient
-- confirmed one the practitioner made: this column records when.
ALTER TABLE appointments ADD COLUMN patient_confirmed_at INTEGER;
UPDATE appointments SET patient_confirmed_at = created_at
WHERE created_by IN (SELECT user_id FROM patients WHERE patients.id = appointments.patient_id AND user_id IS NOT NULL)
   OR created_by IN (SELECT id FROM users WHERE role = 'admin');
CREATE INDEX appointments_care ON appointments (practitioner_id, patient_id);
