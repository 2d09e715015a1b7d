DROP TRIGGER presence_notify ON presence;
DROP TRIGGER channel_members_notify ON channel_members;
DROP TRIGGER bans_notify ON bans;
DROP TRIGGER access_grants_notify ON access_grants;
DROP FUNCTION stagepass_notify_access_changed();
