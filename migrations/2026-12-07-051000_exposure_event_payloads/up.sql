-- Webhook payloads stored before the allowlist (src/db/events.rs) kept
-- credentials: the room's TURN password, an ingress's stream key, the S3 keys
-- of an egress's request; and free-form metadata. Strip them from old rows
-- (new rows keep only allowlisted fields).
UPDATE livekit_events
SET payload = payload
    #- '{room,turnPassword}' #- '{room,metadata}' #- '{room,enabledCodecs}'
    #- '{participant,metadata}' #- '{participant,attributes}' #- '{participant,name}'
    #- '{ingressInfo,streamKey}' #- '{ingressInfo,url}'
    #- '{egressInfo,roomComposite}' #- '{egressInfo,web}' #- '{egressInfo,participant}'
    #- '{egressInfo,trackComposite}' #- '{egressInfo,track}'
    #- '{egressInfo,fileResults}' #- '{egressInfo,streamResults}'
    #- '{egressInfo,segmentResults}' #- '{egressInfo,imageResults}'
    #- '{egressInfo,file}' #- '{egressInfo,stream}' #- '{egressInfo,segments}'
WHERE payload ?| array['room', 'participant', 'ingressInfo', 'egressInfo'];
