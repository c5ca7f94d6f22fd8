-- Most TURN sessions belong to no appointment (a user's own credentials, the device check):
-- their NULL appointment_id need not be kept in an index, one B-tree insert fewer for each
-- credential issued. Revocation by appointment (`WHERE appointment_id = $1`) still uses the
-- index: the equality implies IS NOT NULL, which both engines' planners prove.
DROP INDEX turn_sessions_by_appointment;
CREATE INDEX turn_sessions_by_appointment ON turn_sessions (appointment_id) WHERE appointment_id IS NOT NULL;
