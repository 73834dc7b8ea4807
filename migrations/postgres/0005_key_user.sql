-- gatehouse event store, schema 5: the user of the gateway key that authenticated a request,
-- beside the end user it recorded (the same unless the key trusts its clients' end-user ids).
ALTER TABLE requests ADD COLUMN key_user TEXT;
