// count_nodes: every node of the database.
MATCH (n) RETURN count(n) AS c
