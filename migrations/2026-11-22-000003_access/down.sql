DROP TABLE redemptions;
DROP TABLE redeem_codes;
DROP TABLE orders;
DROP TABLE access_grants;
DROP TABLE access_passes;
DROP FUNCTION stagepass_check_same_channel();
