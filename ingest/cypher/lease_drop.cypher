// lease_drop: drop Writer leases by uid.
MATCH (w:Writer) WHERE w.uid IN $uids DETACH DELETE w
