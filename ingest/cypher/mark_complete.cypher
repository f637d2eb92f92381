// mark_complete: mark examples complete (the last statement of their batch's transaction).
UNWIND $uids AS uid MATCH (e:Example {uid: uid}) SET e.complete = true, e.completed_at = datetime()
