-- Anything that can change who may watch (grants, bans, the team) wakes every
-- app instance's enforcer, and so does someone joining a room (the enforcer
-- then sleeps until that viewer's grant ends): statement-level, no payload
-- (NOTIFY takes a global lock at commit; the enforcer re-reads what it needs).
CREATE FUNCTION stagepass_notify_access_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_access_changed', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER access_grants_notify AFTER INSERT OR UPDATE OR DELETE ON access_grants
    FOR EACH STATEMENT EXECUTE FUNCTION stagepass_notify_access_changed();
CREATE TRIGGER bans_notify AFTER INSERT OR UPDATE OR DELETE ON bans
    FOR EACH STATEMENT EXECUTE FUNCTION stagepass_notify_access_changed();
CREATE TRIGGER channel_members_notify AFTER INSERT OR UPDATE OR DELETE ON channel_members
    FOR EACH STATEMENT EXECUTE FUNCTION stagepass_notify_access_changed();
CREATE TRIGGER presence_notify AFTER INSERT ON presence
    FOR EACH STATEMENT EXECUTE FUNCTION stagepass_notify_access_changed();
