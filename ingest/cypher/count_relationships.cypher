// count_relationships: every relationship of the database.
MATCH ()-[r]->() RETURN count(r) AS c
