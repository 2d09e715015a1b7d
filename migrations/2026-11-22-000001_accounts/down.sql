DROP TABLE sign_in_attempts;
DROP TABLE sessions;
DROP TABLE users;
DROP FUNCTION stagepass_set_updated_at();
